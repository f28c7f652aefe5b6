import t, { type Test } from 'tap';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCli } from '../helpers/cli.js';

// `canary status NAME --wait --timeout D` against an admin API that answers once and then no more: the bound is the
// pipeline's, whatever the admin API does. An admin port that took the connection and never answered (a master
// stopped, its event loop stuck) held `--timeout 1s` for ever; one that went away was reported at the deadline as
// "still running" from its last answer, seconds old.

// An e2e file (a lane runs it, test/helpers/e2e-lane.ts), not a unit one: its tests are the CLI's waits, ~77 s of
// idle timers (10 s a look, 60 s of retries, a 10.5 s answer) that held all-units.test.ts's one process for a third
// of its run; in a lane, the other lanes use the cores meanwhile. Its bound is more than tap's 120 s a file, for a
// busy box.
export const TIMEOUT_MS = 240_000; // test/helpers/e2e-lane.ts reads it
t.setTimeout(TIMEOUT_MS);

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

// What these tests wait for is the CLI's exit, not a time: before the fix it never exited, and the subtest's own bound
// (far above the 500 ms and 1 s timeouts and the last look's 2 s, on a loaded box) fails it, where the file's would
// hold its lane for 240 s.
const BOUND = { timeout: 60_000 };

/** `canary status v2 --wait` against `admin`, a look every 0.1 s, with `--timeout` when one is given. */
function waitArgs(admin: string, timeout?: string): string[] {
  const bound = timeout === undefined ? [] : ['--timeout', timeout];
  return ['canary', 'status', 'v2', '--wait', '--interval', '0.1', ...bound, '--admin', admin];
}

t.test('an admin API that stops answering does not outlast --timeout', BOUND, async (t) => {
  const admin = await answersOnce(t, 'hangs');
  const run = await runCli(t, waitArgs(admin, '500ms'));
  t.equal(run.code, 124, run.stderr);
  t.match(run.stdout, /^canary v2 \(baseline v1\): running at step 1\/2/);
  t.match(
    run.stderr,
    /graygate: canary v2 was last seen running at step 1\/2 [\d.]+ s ago \(the admin API has not answered since\) after --timeout 500ms: not promoted yet\n$/,
  );
});

t.test(
  'an admin API gone away at the deadline: the status printed is said to be the last one seen',
  BOUND,
  async (t) => {
    const admin = await answersOnce(t, 'closes');
    const run = await runCli(t, waitArgs(admin, '1s'));
    t.equal(run.code, 124, run.stderr);
    t.match(
      run.stderr,
      /ECONNREFUSED\); is graygate running\? \(address from --admin\); retrying until --timeout 1s\n/,
    );
    t.notMatch(run.stderr, /retrying for up to 60 s/, 'not a retry past the deadline');
    t.match(run.stderr, /graygate: canary v2 was last seen running at step 1\/2 [\d.]+ s ago/);
    t.notMatch(run.stderr, /is still running/);
  },
);

// Without --timeout the wait had no bound at all against the same admin API: each look is bounded (10 s), an
// unanswered one is an unreachable admin API, retried for 60 s and then exit 69, as a refused connection is. The
// retry is said once, not at every look. ~70 s of waiting (10 s a look, 60 s of retries), none of it CPU.
t.test(
  'an admin API that stops answering ends a --wait without --timeout: exit 69',
  { timeout: 180_000 },
  async (t) => {
    const admin = await answersOnce(t, 'hangs');
    const run = await runCli(t, waitArgs(admin));
    t.equal(run.code, 69, run.stderr);
    t.equal(run.stderr.match(/retrying/g)?.length, 1, 'the retry said once');
    t.match(
      run.stderr,
      /^graygate: admin API unreachable at .* \(no answer within 10000 ms\).*; retrying for up to 60 s\n/,
    );
    t.match(run.stderr, /\ngraygate: admin API unreachable at .* \(no answer within 10000 ms\)[^\n]*\n$/);
  },
);

// Without --wait, `canary status NAME` is one look, as `status` is: no bound of its own (a look of --wait is 10 s). A
// probe: a slow admin's answer after 10 s was "admin API unreachable", exit 69, for this command alone.
t.test(
  'canary status NAME without --wait waits for a slow answer, as every one-shot command does',
  BOUND,
  async (t) => {
    const server: Server = createServer((_req, res) => {
      // Past the 10 s a look of --wait gets: the slowness is what is tested, not a wait for something else.
      const timer = setTimeout(() => {
        res.setHeader('content-type', 'application/json');
        res.end(RUNNING);
      }, 10_500);
      res.on('close', () => clearTimeout(timer));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    t.teardown(() => {
      server.closeAllConnections();
      server.close();
    });
    const admin = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const run = await runCli(t, ['canary', 'status', 'v2', '--admin', admin]);
    t.equal(run.code, 0, run.stderr);
    t.match(run.stdout, /^canary v2 \(baseline v1\): running at step 1\/2/);
  },
);
