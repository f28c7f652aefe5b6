import t, { type Test } from 'tap';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { performance } from 'node:perf_hooks';
import { runCli } from '../../helpers/cli.js';
import type { NodeRun } from '../../helpers/child-env.js';

// `canary status NAME --wait --timeout D` against an admin API that answers once and then no more: the bound is the
// pipeline's, whatever the admin API does. An admin port that took the connection and never answered (a master
// stopped, its event loop stuck) held `--timeout 1s` for ever; one that went away was reported at the deadline as
// "still running" from its last answer, seconds old.

const RUNNING = JSON.stringify({
  version: 'v2',
  baseline: 'v1',
  state: 'running',
  step: 0,
  steps: [5, 100],
  canaryPercent: 5,
  stepMs: 60_000,
  minRequests: 200,
  startedAt: '2026-12-01T12:00:00.000Z',
  endedAt: null,
  reason: 'step 1 (5 %): not yet',
  paused: false,
  observed: { baseline: { requests: 0, errors: 0 }, canary: { requests: 0, errors: 0 } },
  decisions: [],
});

/** An admin API on loopback that answers its first call with a running canary; after it, `after` says what it does. */
async function answersOnce(t: Test, after: 'hangs' | 'closes'): Promise<string> {
  let calls = 0;
  const server: Server = createServer((_req, res) => {
    calls++;
    if (calls > 1) return; // 'hangs': the connection stays, no answer
    res.setHeader('content-type', 'application/json');
    res.end(RUNNING);
    if (after === 'closes') {
      server.close();
      server.closeAllConnections();
    }
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** The CLI's run, or undefined if it was still running after `ms`. */
async function within(run: Promise<NodeRun>, ms: number): Promise<NodeRun | undefined> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<undefined>((resolve) => (timer = setTimeout(() => resolve(undefined), ms)));
  try {
    return await Promise.race([run, late]);
  } finally {
    clearTimeout(timer);
  }
}

t.test('an admin API that stops answering does not outlast --timeout', async (t) => {
  const admin = await answersOnce(t, 'hangs');
  const started = performance.now();
  const run = await within(
    runCli(t, ['canary', 'status', 'v2', '--wait', '--interval', '0.1', '--timeout', '500ms', '--admin', admin]),
    10_000,
  );
  if (run === undefined) return t.fail('still waiting 10 s after --timeout 500ms');
  t.equal(run.code, 124, run.stderr);
  t.ok(performance.now() - started < 8000, 'ended near its deadline (the last look has 2 s)');
  t.match(run.stdout, /^canary v2 \(baseline v1\): running at step 1\/2/);
  t.match(
    run.stderr,
    /graygate: canary v2 was last seen running at step 1\/2 [\d.]+ s ago \(the admin API has not answered since\) after --timeout 500ms: not promoted yet\n$/,
  );
});

t.test('an admin API gone away at the deadline: the status printed is said to be the last one seen', async (t) => {
  const admin = await answersOnce(t, 'closes');
  const run = await within(
    runCli(t, ['canary', 'status', 'v2', '--wait', '--interval', '0.1', '--timeout', '1s', '--admin', admin]),
    10_000,
  );
  if (run === undefined) return t.fail('still waiting 10 s after --timeout 1s');
  t.equal(run.code, 124, run.stderr);
  t.match(run.stderr, /ECONNREFUSED\); is graygate running\? \(address from --admin\); retrying until --timeout 1s\n/);
  t.notMatch(run.stderr, /retrying for up to 60 s/, 'not a retry past the deadline');
  t.match(run.stderr, /graygate: canary v2 was last seen running at step 1\/2 [\d.]+ s ago/);
  t.notMatch(run.stderr, /is still running/);
});
