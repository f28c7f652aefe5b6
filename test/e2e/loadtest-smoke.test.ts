import t from 'tap';
import { RUN_BOUND_MS, runLoadtest, smoke } from '../helpers/loadtest-smoke.js';

// Smoke runs of the load-test scenarios (test/helpers/loadtest-smoke.ts); the streaming ones and swap
// are in loadtest-smoke-streaming.test.ts.
// Scenario runs one after another, each up to its bound on a busy box: more than tap's 120 s per file.
export const TIMEOUT_MS = 6 * RUN_BOUND_MS; // test/helpers/e2e-lane.ts reads it
t.setTimeout(TIMEOUT_MS);

t.test('capacity', async (t) => {
  await smoke(t, 'capacity', ['--duration', '1', '--connections', '10']);
});

t.test('backlog with the naive proxies side by side', async (t) => {
  const report = await smoke(t, 'backlog', [
    '--naive',
    '--duration',
    '2',
    '--connections',
    '10',
    '--worker-delay-ms',
    '100',
    '--recovery-limit-s',
    '4',
  ]);
  const kinds = (report.results as Array<{ kind: string }>).map((r) => r.kind);
  t.same(kinds, ['graygate', 'http-proxy-3', 'pipe'], 'all three proxies ran');
});

t.test('streams', async (t) => {
  await smoke(t, 'streams', ['--streams', '20', '--tokens', '5', '--token-interval-ms', '10']);
});

t.test('compare', async (t) => {
  const report = await smoke(t, 'compare', ['--duration', '1', '--connections', '5']);
  const paths = (report.results as { columns: Array<{ path: string }> }).columns.map((c) => c.path);
  t.same(paths.slice(0, 2), ['direct to the worker', 'through graygate']);
  // nginx is optional: without it the column is skipped and the report says so.
  if (paths.length === 2) t.match(report.notes.join('\n'), /nginx is not installed/);
  else t.equal(paths[2], 'through nginx');
});

t.test('bad usage exits 2 without starting anything', async (t) => {
  const run = await runLoadtest(t, ['no-such-scenario']);
  t.equal(run.code, 2);
  t.match(run.stderr, /expected one scenario/);
  const misplaced = await runLoadtest(t, ['compare', '--direct-streams']);
  t.equal(misplaced.code, 2, '--direct-streams is for streams --hold only');
  t.match(misplaced.stderr, /--direct-streams: only with streams --hold/);
});
