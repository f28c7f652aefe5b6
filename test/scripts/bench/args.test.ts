import { execFile } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t from 'tap';
import { nodeLaunch } from '../../helpers/child-env.js';
import { ROOT, type Teardown } from '../../helpers/gateway.js';

// A benchmark script asked for --help lists its flags; a flag it does not know is a usage error (exit 64, one line
// and the list), not a stack trace (a new user's walk through the README hit one with every script).

const script = join(ROOT, 'dist/scripts/bench/per-call.js');

/**
 * Each run's bound: a script that hangs (a benchmark that started instead of refusing its arguments) is killed
 * (SIGKILL) and fails its test, instead of holding the unit tests' process until tap's timeout. A run here takes
 * well under a second.
 */
const RUN_TIMEOUT_MS = 30_000;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/**
 * `node <file> <args…>` to its end, whatever its exit code; rejects if it was killed at RUN_TIMEOUT_MS. Started as
 * every test's node child is (test/helpers/child-env.ts): without tap's processinfo hook, which cost each of these
 * ~40 runs more than the run itself (18 s of the unit tests' 79 on CI, 3 s without it).
 */
function run(t: Teardown, file: string, args: readonly string[]): Promise<Run> {
  const node = nodeLaunch();
  return new Promise((resolve, reject) => {
    const child = execFile(
      node.command,
      [...node.prefix, file, ...args],
      { env: node.env, timeout: RUN_TIMEOUT_MS, killSignal: 'SIGKILL' },
      (err, stdout, stderr) => {
        const failure = err as (Error & { code?: unknown; killed?: boolean }) | null;
        if (failure?.killed === true)
          return reject(new Error(`${[file, ...args].join(' ')}: no end in ${RUN_TIMEOUT_MS} ms, killed`));
        if (failure !== null && typeof failure.code !== 'number') return reject(failure); // not started, or a signal
        resolve({ code: failure === null ? 0 : (failure.code as number), stdout, stderr });
      },
    );
    // Ended at the test's end in any case (a test that failed or timed out before the run did).
    t.teardown(() => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
  });
}

t.test('--help lists the flags with their defaults', async (t) => {
  const { code, stdout } = await run(t, script, ['--help']);
  t.equal(code, 0);
  t.equal(stdout, 'usage: node dist/scripts/bench/per-call.js [--baseline-root VALUE] [--rounds 3] [--calls 100000]\n');
});

t.test('an unknown flag: exit 64, the message and the usage, no stack', async (t) => {
  const { code, stderr } = await run(t, script, ['--bogus']);
  t.equal(code, 64);
  t.match(stderr, /^Unknown option '--bogus'.*\nusage: node dist\/scripts\/bench\/per-call\.js /s);
  t.notMatch(stderr, /\n\s+at /, 'no stack trace');
});

t.test(
  'a script of positional counts: --help lists them with their defaults, a bad one is exit 64 naming it',
  async (t) => {
    const firstToken = join(ROOT, 'dist/scripts/bench/first-token.js');
    const help = await run(t, firstToken, ['--help']);
    t.equal(help.code, 0);
    t.equal(help.stdout, 'usage: node dist/scripts/bench/first-token.js [streams=1000] [concurrency=10] [rounds=3]\n');
    for (const [args, message] of [
      [['x'], /^streams: expected a number ≥ 1, got x\nusage: /],
      [['10', '0'], /^concurrency: expected a number ≥ 1, got 0\n/],
      [['1', '2', '3', '4'], /^at most 3 arguments, got 4\n/],
    ] as const) {
      const { code, stderr } = await run(t, firstToken, args);
      t.equal(code, 64, args.join(' '));
      t.match(stderr, message, args.join(' '));
    }
  },
);

t.test('every benchmark the README lists refuses a flag it does not know (exit 64), none starts', async (t) => {
  // The README: "Smaller benchmarks, after `npm run build` (a bad flag or count: exit 64)". parse.js read no
  // arguments and ran its whole benchmark with any (a new user's walk through the README).
  for (const name of [
    'parse',
    'first-token',
    'metrics-overhead',
    'hop-latency',
    'rest-cost',
    'per-call',
    'held-bodies',
    'body-burst',
    'canary-sim',
    'gc-per-request',
    'cold-worker',
    'body-scan',
    'pipelined-heads',
    'scrape-cost',
  ]) {
    const { code, stderr } = await run(t, join(ROOT, `dist/scripts/bench/${name}.js`), ['--bogus']);
    t.equal(code, 64, name);
    t.match(stderr, new RegExp(`\\nusage: node dist/scripts/bench/${name}\\.js\\b`), name);
  }
});

t.test(
  'hop-latency: --help names --tokens and --baseline-root; a bad --tokens is exit 64, before starting anything',
  async (t) => {
    const script = join(ROOT, 'dist/scripts/bench/hop-latency.js');
    const help = await run(t, script, ['--help']);
    t.equal(help.code, 0);
    t.match(help.stdout, /\[--tokens 20\]/);
    t.match(help.stdout, /--baseline-root VALUE/);
    const { code, stderr } = await run(t, script, ['--tokens', '0']);
    t.equal(code, 64);
    t.match(stderr, '--tokens: expected a number ≥ 1 and ≤ 3000, got 0');
  },
);

t.test('gc-per-request refuses a path it does not know (exit 64), before starting anything', async (t) => {
  const { code, stderr } = await run(t, join(ROOT, 'dist/scripts/bench/gc-per-request.js'), ['--paths', 'direct,nope']);
  t.equal(code, 64);
  t.match(stderr, '--paths: expected relayed and/or direct, got direct,nope');
});

t.test(
  'the profile and heap summaries: --help names their files; a bad flag, no file or a bad count is exit 64, a file they cannot read 66',
  async (t) => {
    // They exited 2 on a missing file and read any flag as a file (a review: every other usage error here is 64).
    const dir = mkdtempSync(join(tmpdir(), 'graygate-bench-args-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const notJson = join(dir, 'not.json');
    writeFileSync(notJson, 'not json');
    for (const [name, operand] of [
      ['cpuprofile-summary', 'FILE.cpuprofile…'],
      ['heap-summary', 'FILE.heapsnapshot…'],
    ] as const) {
      const file = join(ROOT, `dist/scripts/bench/${name}.js`);
      const help = await run(t, file, ['--help']);
      t.equal(help.code, 0, `${name} --help`);
      t.ok(help.stdout.startsWith(`usage: node dist/scripts/bench/${name}.js ${operand} [`), help.stdout);
      for (const args of [['--bogus', 'x'], [], ['--top', 'ten', 'x']]) {
        const { code, stderr } = await run(t, file, args);
        t.equal(code, 64, `${name} ${args.join(' ')}`);
        t.notMatch(stderr, /\n\s+at /, `${name} ${args.join(' ')}: no stack`);
        if (args.length === 0) t.match(stderr, `missing ${operand}\nusage: node dist/scripts/bench/${name}.js`);
      }
      // A file it cannot read, or that is not JSON: one line naming it, exit 66 (it exited 1 with node's stack).
      for (const input of [join(ROOT, 'no-such-file'), notJson]) {
        const { code, stderr } = await run(t, file, [input]);
        t.equal(code, 66, `${name} ${input}`);
        t.match(stderr, `cannot read ${input}: `, `${name} ${input}`);
        t.notMatch(stderr, /\n\s+at /, `${name} ${input}: no stack`);
      }
    }
  },
);

t.test('hop-latency refuses a count that would never end (exit 64), before it starts anything', async (t) => {
  // `--tokens 1e9` was accepted and the run never ended (the load-script probe).
  const file = join(ROOT, 'dist/scripts/bench/hop-latency.js');
  for (const [args, message] of [
    [['--tokens', '1e9'], /^--tokens: expected a number ≥ 1 and ≤ 3000, got 1000000000\n/],
    [['--concurrency', '1,1e9'], /^--concurrency\[1\]: expected a number ≥ 1 and ≤ 20000, got 1000000000\n/],
  ] as const) {
    const { code, stderr } = await run(t, file, args);
    t.equal(code, 64, args.join(' '));
    t.match(stderr, message, args.join(' '));
  }
});

t.test('scrape-cost runs both registries and prints their row (a small run)', async (t) => {
  // A benchmark no test runs breaks unseen: 20 connections, one round, ~0.3 s.
  const { code, stdout, stderr } = await run(t, join(ROOT, 'dist/scripts/bench/scrape-cost.js'), [
    '--connections',
    '20',
    '--rounds',
    '1',
  ]);
  t.equal(code, 0, stderr);
  t.match(stdout, /^20 connections, \d+ handles; medians of 1 rounds, alternating\n/);
  // Past what the open-file limit holds: a usage error before it opens anything, not EMFILE's stack.
  const tooMany = await run(t, join(ROOT, 'dist/scripts/bench/scrape-cost.js'), ['--connections', '1e9']);
  t.equal(tooMany.code, 64, tooMany.stderr);
  t.match(tooMany.stderr, /^--connections: expected a number ≥ 1 and ≤ \d+, got 1000000000\n/);
  for (const name of ['graygate', 'prom-client'])
    t.match(stdout, new RegExp(`\\n${name} +(\\d+\\.\\d\\d +){2}\\d+\\.\\d\\d\\n`), `${name}'s row`);
});
