import t from 'tap';
import { parseLoadtestArgs } from '../../../scripts/loadtest/args.js';

// A flag a scenario would ignore is refused, naming where it is taken: `capacity --graygate-root /work/before`
// measured this tree and said nothing (a read of docs/BENCHMARKS.md's commands against the code).

t.test('a flag a scenario would ignore is a usage error naming the scenarios that take it', async (t) => {
  const refused: Array<[string[], RegExp]> = [
    [['capacity', '--graygate-root', '/x'], /^--graygate-root: only with backlog, streams, compare --sse \(capacity/],
    [['swap', '--graygate-root', '/x'], /^--graygate-root: only with/],
    [['compare', '--baseline-root', '/x'], /^--baseline-root: only with backlog, compare --sse \(compare/],
    [['backlog', '--cpu-prof-dir', 'd'], /^--cpu-prof-dir: only with streams --hold, compare --sse \(backlog/],
    [['streams', '--node-flags=--max-semi-space-size=1'], /^--node-flags: only with streams --hold, compare --sse/],
    [['streams', '--hold', '--baseline-node-flags=--jitless'], /^--baseline-node-flags: only with compare --sse/],
    [['compare', '--instances', '2'], /^--instances: only with capacity, streams, compare --sse \(compare/],
    [['canary', '--workers', '2'], /^--workers: only with/],
  ];
  for (const [argv, message] of refused) t.throws(() => parseLoadtestArgs(argv), message, argv.join(' '));
});

t.test('where a flag is taken, it is read', async (t) => {
  t.equal(parseLoadtestArgs(['backlog', '--graygate-root', '/a', '--baseline-root', '/b']).baselineRoot, '/b');
  t.equal(parseLoadtestArgs(['streams', '--graygate-root', '/a']).graygateRoot, '/a');
  const hold = parseLoadtestArgs(['streams', '--hold', '--cpu-prof-dir', 'd', '--node-flags=--max-semi-space-size=1']);
  t.equal(hold.cpuProfDir, 'd');
  t.same(hold.nodeFlags, ['--max-semi-space-size=1']);
  const sse = parseLoadtestArgs([
    'compare',
    '--sse',
    '--graygate-root',
    '/a',
    '--baseline-root',
    '/b',
    '--cpu-prof-dir',
    'd',
    '--baseline-node-flags=--jitless',
    '--instances',
    '2',
  ]);
  t.match(sse, {
    graygateRoot: '/a',
    baselineRoot: '/b',
    cpuProfDir: 'd',
    baselineNodeFlags: ['--jitless'],
    instances: 2,
  });
  t.equal(parseLoadtestArgs(['capacity', '--workers', '3']).instances, 3);
});
