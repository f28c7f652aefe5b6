import type t from 'tap';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { flushChildCoverage } from './child-env.js';
import { ROOT } from './root.js';

// `npm test` runs the e2e files in three tap processes, the lanes (test/e2e-lane-1, -2 and -3), not one
// process each. tap loads @tapjs/processinfo into each test process, and its module hook costs the
// process ~1.1 s of CPU for tap's own modules and ours before the first test (measured: six e2e
// files under tap, one process each 23.8–25.0 s of CPU, the same six in one process 17.6–17.7 s),
// ×53 files on CI's 2 cores. Each lane takes the next file no lane has taken, the longest first
// (LONGEST_FIRST below), when it has finished the one before: the lanes end within one file of each
// other, a short one when the long ones are taken first. Three lanes beside all-units.test.ts on 2
// cores (package.json's tap `jobs` is 4: all four start at once): an e2e file spends much of its time
// waiting on what it tests (a timeout, a worker's start, a client's pause), and with two lanes, the
// second started when the unit tests ended, the 2 cores were idle a fifth of the run (358 s on CI's
// box); with three, under 5 % of it, and the run ended in 308–311 s. A file's tests are root tests of the
// lane's process, as in all-units.test.ts, with the same rules: a file leaves nothing behind (no
// server, no environment change, no promise left to reject; none does). What a file shares with the
// others in its lane is the process: an uncaught error ends the lane (the files it has not taken
// are the other lanes'), and a promise a file leaves to reject is reported against the next one.
// A file still runs alone as before (`npm test -- test/e2e/x.test.ts`), and `--grep` or `--only`
// need that: here they would match the lane's tests, not the files'.
//
// Time: each file gets tap's per-file timeout (package.json, 120 s) from when its lane has loaded it, or
// the `TIMEOUT_MS` it exports if it needs more (and sets alone with `t.setTimeout`). The lane times
// the file out itself, before tap's runner would: a runner's timeout ends the whole run and drops the
// other lanes' results.
//
// Which files are taken is shared through a directory per run under .tap/e2e-lanes/: taking a file is
// creating its entry there, which one process alone can do. The run is scripts/run-tap.mjs's (it
// gives the lanes an id in GRAYGATE_E2E_RUN, and before it removes the directory when tap ends, fails the run if a
// file has no entry there: one no lane ran, as when all stopped early) or, under a
// bare `npx tap`, the runner's, named by its pid and start time (those of runners that have ended are
// removed when a lane starts). A lane that no tap runner started (`node dist/test/e2e-lane-1.test.js`),
// or one under a bare `npx tap` where there is no /proc to read, runs every file.

type Root = typeof t;

/** A runner's directory name, `pid-<pid>-<start time>`; undefined when it is not running or there is no /proc. */
function runnerKey(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the command name, which is in parentheses and may hold spaces.
    return `pid-${pid}-${stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19]}`;
  } catch {
    return undefined;
  }
}

function claimsDir(): string | undefined {
  const lanes = join(ROOT, '.tap', 'e2e-lanes');
  const run = process.env['GRAYGATE_E2E_RUN'];
  if (run !== undefined && /^[\w-]+$/.test(run)) return join(lanes, `run-${run}`);
  if (process.env['TAP_CHILD_ID'] === undefined) return undefined;
  const key = runnerKey(process.ppid);
  if (key === undefined) return undefined;
  mkdirSync(lanes, { recursive: true });
  for (const entry of readdirSync(lanes)) {
    const pid = /^pid-(\d+)-/.exec(entry)?.[1];
    if (pid !== undefined && entry !== key && runnerKey(Number(pid)) !== entry) {
      rmSync(join(lanes, entry), { recursive: true, force: true });
    }
  }
  return join(lanes, key);
}

/** Runs e2e files, one after another, until no file is left that another lane has not taken. */
export async function runLane(root: Root, laneUrl: string): Promise<void> {
  if (process.env['TAP_GREP'] !== undefined || process.env['TAP_ONLY'] === '1') {
    root.fail('--grep and --only filter the lane, not the e2e files: run the file itself (npm test -- test/e2e/…)');
    return;
  }
  const self = fileURLToPath(laneUrl);
  const ext = extname(self);
  const lane = basename(self, `.test${ext}`);
  const e2e = join(dirname(self), 'e2e');
  const found = readdirSync(e2e, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith(`.test${ext}`))
    .sort();
  const files = inTakingOrder(found, ext);
  const gone = LONGEST_FIRST.filter((name) => !found.includes(`${name}.test${ext}`));
  if (gone.length > 0)
    root.fail(`LONGEST_FIRST (test/helpers/e2e-lane.ts) names e2e files that are gone: ${gone.join(', ')}`);
  const dir = claimsDir();
  if (dir !== undefined) mkdirSync(dir, { recursive: true });
  // Taking a file: creating its entry, named without its extension (a lane run from test/, .ts, and one
  // from dist/test/, .js, take the same file). With no directory, the lane takes every file.
  const take = (file: string): boolean => {
    if (dir === undefined) return true;
    try {
      mkdirSync(join(dir, encodeURIComponent(file.slice(0, -`.test${ext}`.length))));
      return true;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
      throw err;
    }
  };
  let next = 0;
  const claim = (): string | undefined => {
    while (next < files.length) {
      const file = files[next++]!;
      if (take(file)) return file;
    }
    return undefined;
  };
  const defaultTimeoutMs = Number(process.env['TAP_TIMEOUT'] ?? '30') * 1000;
  let timer: NodeJS.Timeout | undefined;
  let timedOut = false;
  let loaded = 0;
  // One subtest per file, awaited, as all-units.test.ts does: its body runs once the file before has
  // ended (so the file is taken then, not earlier), and the root is never idle between files.
  for (;;) {
    let file: string | undefined;
    await root.test(`${lane}: the next e2e file`, async (t) => {
      clearTimeout(timer);
      // The file before has ended, and with it every process it started: their coverage to tap's (child-env.ts).
      flushChildCoverage();
      // A lane whose file timed out takes no more: their tests would never run.
      file = timedOut ? undefined : claim();
      if (file === undefined) {
        t.comment(`no file left; this lane loaded ${loaded}`);
        return;
      }
      const taken = file;
      const module = (await import(pathToFileURL(join(e2e, taken)).href)) as { TIMEOUT_MS?: unknown };
      loaded++;
      const timeoutMs = typeof module.TIMEOUT_MS === 'number' ? module.TIMEOUT_MS : defaultTimeoutMs;
      if (timeoutMs > 0) {
        // The runner's bound (root.setTimeout tells it) a little after the lane's own.
        root.setTimeout(timeoutMs + RUNNER_GRACE_MS);
        timer = setTimeout(() => {
          timedOut = true;
          root.timeout({ expired: `e2e/${taken}` });
        }, timeoutMs);
        timer.unref();
      }
      t.comment(`e2e/${taken}`);
    });
    if (file === undefined) return;
  }
}

const RUNNER_GRACE_MS = 20_000;

/**
 * Every e2e file, longest first (names without `.test.<ext>`, relative to test/e2e/): the order the lanes take them.
 * Taken in path order, long files came late (worker-crash last), and one lane ended over a minute after the other
 * (lane 1 at ~300 s, lane 2 at ~215 s); longest first, the last files taken are the shortest, and the lanes end
 * within one short file of each other. The order is the sum of each file's tests' `# time=` in two `npm test` runs
 * with three lanes (their TAP output; hop-direct alone ~100 s of a lane's ~290 s); it need not be exact, only keep
 * the long files ahead of the short ones. A file not listed (a new one, its cost not known yet) is taken before
 * these; a name listed that is gone fails the lane.
 */
const LONGEST_FIRST: readonly string[] = [
  'hop-direct',
  'cli-canary-wait-timeout',
  'loadtest-smoke-streaming',
  'canary-ends',
  'canary-criteria',
  'canary',
  'loadtest-smoke',
  'deploy',
  'cli',
  'hop-connections',
  'reload',
  'shutdown',
  'hop-worker-health',
  'admin',
  'streaming-upstream-shapes',
  'worker-crash',
  'streaming-adapters',
  'hop-head-timeout',
  'config-invalid',
  'config-watch',
  'loadtest-stops',
  'worker-answer-budget',
  'metrics-errors',
  'openai-tools',
  'streaming-backpressure',
  'streaming-faults',
  'openai-endpoints',
  'worker-bodies',
  'metrics-retired',
  'routing',
  'loadtest-backlog-targets',
  'hop-smuggling',
  'hop-bodies',
  'admin-security',
  'loadtest-nginx-broken',
  'upstream-proxy',
  'loadtest-short-hold',
  'backlog',
  'streaming-framing',
  'metrics',
  'cli-top',
  'hop-client-errors',
  'metrics-stuck-worker',
  'admin-status-queue',
  'log-pipes',
  'upstream-mtls',
  'hop-pipelining',
  'streaming-upstream-dialects',
  'metrics-stream-logs',
  'upstream-key-echo',
  'upstream-http2',
  'cors-sticky',
  'metrics-top',
  'responses-worker-death',
  'cli-hostile-admin',
];

/** `files` (found, in path order) in the order the lanes take them: those not listed, then LONGEST_FIRST's. */
function inTakingOrder(files: readonly string[], ext: string): string[] {
  const rank = new Map(LONGEST_FIRST.map((name, i) => [`${name}.test${ext}`, i]));
  const listed = files.filter((file) => rank.has(file)).sort((a, b) => rank.get(a)! - rank.get(b)!);
  return [...files.filter((file) => !rank.has(file)), ...listed];
}
