import t from 'tap';
import { mkdtempSync, readdirSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseLoadtestArgs } from '../../../scripts/loadtest/args.js';
import { makeReportDir } from '../../../scripts/loadtest/report.js';
import { ROOT } from '../../helpers/root.js';

// Trees with a build (this one) for the --*-root flags, which must have one.
const A = ROOT;
const B = join(ROOT, '.');

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
    // Tuning flags too: each of these ran as if it had not been given.
    [['streams', '--duration', '60'], /^--duration: only with capacity, backlog, swap, compare, canary \(streams/],
    [['compare', '--rounds', '5'], /^--rounds: only with compare --sse \(compare/],
    [['streams', '--ramp-s', '10'], /^--ramp-s: only with streams --hold/],
    [['capacity', '--naive'], /^--naive: only with backlog \(capacity/],
    [['canary', '--steps', '10,50'], /^--steps: only with capacity \(canary/],
    [['backlog', '--tokens', '5'], /^--tokens: only with streams, compare --sse, canary \(backlog/],
    [['swap', '--rate', '10'], /^--rate: only with canary \(swap/],
    [['canary', '--connections', '5'], /^--connections: only with capacity, backlog, swap, compare \(canary/],
    [['streams', '--heap-snapshot'], /^--heap-snapshot: only with streams --hold/],
  ];
  for (const [argv, message] of refused) t.throws(() => parseLoadtestArgs(argv), message, argv.join(' '));
});

t.test('where a flag is taken, it is read', async (t) => {
  t.equal(parseLoadtestArgs(['backlog', '--graygate-root', A, '--baseline-root', B]).baselineRoot, B);
  t.equal(parseLoadtestArgs(['streams', '--graygate-root', A]).graygateRoot, A);
  const hold = parseLoadtestArgs(['streams', '--hold', '--cpu-prof-dir', 'd', '--node-flags=--max-semi-space-size=1']);
  t.equal(hold.cpuProfDir, 'd');
  t.same(hold.nodeFlags, ['--max-semi-space-size=1']);
  const sse = parseLoadtestArgs([
    'compare',
    '--sse',
    '--graygate-root',
    A,
    '--baseline-root',
    B,
    '--cpu-prof-dir',
    'd',
    '--baseline-node-flags=--jitless',
    '--instances',
    '2',
  ]);
  t.match(sse, {
    graygateRoot: A,
    baselineRoot: B,
    cpuProfDir: 'd',
    baselineNodeFlags: ['--jitless'],
    instances: 2,
  });
  t.equal(parseLoadtestArgs(['capacity', '--workers', '3']).instances, 3);
  t.match(parseLoadtestArgs(['canary', '--duration', '5', '--rate', '50', '--tokens', '3', '--cases', 'equal']), {
    durationS: 5,
    rate: 50,
    tokens: 3,
    cases: ['equal'],
  });
  t.match(parseLoadtestArgs(['streams', '--hold', '--ramp-s', '2', '--hold-s', '3', '--max-sockets', '50']), {
    rampS: 2,
    holdS: 3,
    maxSockets: 50,
  });
  t.match(parseLoadtestArgs(['compare', '--sse', '--rounds', '1', '--warm-s', '2', '--streams', '10']), {
    rounds: 1,
    warmS: 2,
    streams: 10,
  });
});

t.test('values a run cannot honour are usage errors before it starts (a probe as a new operator)', async (t) => {
  const refused: Array<[string[], RegExp]> = [
    // A timer waits at most 2^31 − 1 ms: longer fired after 1 ms, and the run reported success.
    [['capacity', '--duration', '1e99'], /^--duration: must be a whole number from 1 to 2147483/],
    [['capacity', '--duration', '0'], /^--duration: must be a whole number from 1/],
    // The config's bound: it failed only once graygate refused its config, with a stack.
    [['capacity', '--instances', '65'], /^--instances: must be a whole number from 1 to 64/],
    [['capacity', '--instances', '0'], /^--instances: must be a whole number from 1 to 64/],
    [['canary', '--rate', '0'], /^--rate: must be from 1 to 100000/],
    // A missing tree failed at its first spawn with an unhandled 'error' (spawn node ENOENT).
    [['streams', '--graygate-root', '/nonexistent'], /^--graygate-root: \/nonexistent has no dist\/master\/main\.js/],
  ];
  for (const [argv, message] of refused) t.throws(() => parseLoadtestArgs(argv), message, argv.join(' '));
});

t.test('the report directory is made before the run, level by level; a file there is refused', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-report-dir-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  makeReportDir(join(dir, 'a', 'b'));
  t.ok(statSync(join(dir, 'a', 'b')).isDirectory(), 'nested directories made');
  makeReportDir(join(dir, 'a', 'b'));
  t.pass('an existing directory is fine');
  writeFileSync(join(dir, 'file'), '');
  t.throws(() => makeReportDir(join(dir, 'file')), /not a directory/);
  t.throws(() => makeReportDir(join(dir, 'file', 'sub')), { code: 'ENOTDIR' });
  // node 20's recursive mkdirSync spun for ever here.
  t.throws(() => makeReportDir('/proc/graygate-nope/reports'), { code: 'ENOENT' });
  t.same(readdirSync(dir).sort(), ['a', 'file']);
});

t.test(
  'counts this machine cannot run are usage errors, not a locked or crashed run (the load-script probe)',
  async (t) => {
    const refused: Array<[string[], RegExp]> = [
      // 100 % CPU for 6+ min, SIGTERM unheard: the pacing loop started every due request at once.
      [['canary', '--rate', '1e9'], /^--rate: must be from 1 to 100000, got "1e9"/],
      // autocannon opened every connection synchronously: out of memory after 145 s.
      [['capacity', '--connections', '1e9'], /^--connections: must be a whole number from 1 to 20000/],
      [
        ['capacity', '--steps', '10,1e9'],
        /^--steps: a comma-separated list of whole connection counts from 1 to 20000/,
      ],
      [['streams', '--streams', '1e12'], /^--streams: must be a whole number from 1 to 20000/],
      [['streams', '--tokens', '1e9'], /^--tokens: must be a whole number from 1 to 1000000/],
    ];
    for (const [argv, message] of refused) t.throws(() => parseLoadtestArgs(argv), message, argv.join(' '));
    t.equal(parseLoadtestArgs(['canary', '--rate', '100000']).rate, 100_000, 'the bound itself runs');
    t.equal(parseLoadtestArgs(['capacity', '--connections', '20000']).connections, 20_000);
  },
);

t.test('values that failed only once processes had started (exit 3) are usage errors (exit 2)', async (t) => {
  const refused: Array<[string[], RegExp]> = [
    [['capacity', '--log-level', 'banana'], /^--log-level: one of fatal, error, warn, info, debug, trace, silent/],
    [['backlog', '--max-queue', '1.5'], /^--max-queue: must be a whole number from 0/],
    [['backlog', '--queue-timeout-ms', '0.5'], /^--queue-timeout-ms: must be a whole number from 1/],
  ];
  for (const [argv, message] of refused) t.throws(() => parseLoadtestArgs(argv), message, argv.join(' '));
  t.equal(parseLoadtestArgs(['capacity', '--log-level', 'silent']).logLevel, 'silent');
  t.equal(parseLoadtestArgs(['backlog', '--max-queue', '0']).maxQueue, 0);
});

t.test('counts and seconds are whole: a fraction was run as another number and reported as given', async (t) => {
  const refused: Array<[string[], RegExp]> = [
    // autocannon opened 2 connections, the report said 1.5.
    [['capacity', '--connections', '1.5'], /^--connections: must be a whole number/],
    [['capacity', '--steps', '10,2.5'], /^--steps: a comma-separated list of whole/],
    // autocannon ends a run at its once-a-second check: 1e-9 ran ~1 s and was reported as 1e-9.
    [['capacity', '--duration', '1e-9'], /^--duration: must be a whole number from 1/],
    [['swap', '--duration', '2.5'], /^--duration: must be a whole number/],
    // --rounds 0 and 2.5 ran 1 and 2.5 rounds' worth without a word.
    [['compare', '--sse', '--rounds', '0'], /^--rounds: must be a whole number from 1 to 100/],
    [['compare', '--sse', '--rounds', '2.5'], /^--rounds: must be a whole number from 1 to 100/],
    [['streams', '--hold', '--max-sockets', '1.5'], /^--max-sockets: must be a whole number/],
  ];
  for (const [argv, message] of refused) t.throws(() => parseLoadtestArgs(argv), message, argv.join(' '));
});

t.test('compare --sse runs the responses workload only when named', async (t) => {
  t.same(parseLoadtestArgs(['compare', '--sse']).workloads, ['loaded', 'rest', 'small'], 'the default: not it');
  t.same(parseLoadtestArgs(['compare', '--sse', '--workloads', 'responses,loaded']).workloads, ['responses', 'loaded']);
});
