import t from 'tap';
import {
  admin,
  hangingBuild,
  startGateway,
  TEST_WORKER_ENTRY,
  type Gateway,
  type Teardown,
} from '../helpers/gateway.js';
import { canaryOf, pollPause, status, waitForStatus } from '../helpers/wait.js';
import type { CanaryStatus } from '../../master/canary/controller.js';
import { drive } from '../helpers/load.js';
import { httpRequest } from '../helpers/http.js';
import { openRaw } from '../helpers/raw-http.js';
import { runCli } from '../helpers/cli.js';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { scrape } from '../helpers/metrics.js';

// SPEC §11 and the review of turn 2: what ends a canary, and what must not. A
// held canary still holds traffic, so it stays watched and can be aborted; a
// refused admin call changes nothing; a canary ends only once the deploy,
// rollback, removal or reload that ends it is certain, and every abort gives
// the baseline the pair's sum; a removed version's canary record goes too.

interface ErrorBody {
  error: { code: string; message: string };
}

const worker = (weight: number, env: Record<string, string> = {}) => ({ entry: TEST_WORKER_ENTRY, weight, env });

async function weights(gw: Gateway): Promise<Record<string, number>> {
  return Object.fromEntries(Object.entries(await status(gw)).map(([n, s]) => [n, s.weight]));
}

/** Polls the canary of `name` until it is in `state` (the admin API pushes nothing: this is the event). */
async function waitForCanary(gw: Gateway, name: string, state: string): Promise<CanaryStatus> {
  for (let i = 0; i < 3000; i++) {
    const c = await canaryOf(gw, name);
    if (c.state === state) return c;
    await pollPause();
  }
  throw new Error(`the canary of ${name} never became ${state}`);
}

/**
 * A relay to the admin API that counts the calls it has answered (the event a test waits for: `canary status --wait`
 * polls), and drops call number `dropCall` (0-based) as a restarting master would.
 */
async function adminRelay(
  t: Teardown,
  gw: Gateway,
  options: { dropCall?: number } = {},
): Promise<{ url: string; calls: () => number; untilCalls: (n: number) => Promise<void> }> {
  let calls = 0;
  let onCall = (): void => {};
  const untilCalls = (n: number): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => (calls >= n ? resolve() : void (onCall = check));
      check();
    });
  const relay = createServer((req, res) => {
    if (calls === options.dropCall) {
      calls++;
      req.socket.destroy();
      return onCall();
    }
    void fetch(gw.adminUrl + (req.url ?? '/'), { method: req.method }).then(async (answer) => {
      res.writeHead(answer.status, { 'content-type': 'application/json' }).end(await answer.text());
      calls++;
      onCall();
    });
  }).listen(0, '127.0.0.1');
  await once(relay, 'listening');
  t.teardown(() => relay.close());
  return { url: `http://127.0.0.1:${(relay.address() as AddressInfo).port}`, calls: () => calls, untilCalls };
}

t.test('paused by hand and resumed: held where it is, a pipeline’s --wait waits, then it steps on', async (t) => {
  // Argo Rollouts' `pause` and `promote` of a paused rollout; a held canary could only be promoted whole or aborted.
  const gw = await startGateway(t, {
    versions: { base: worker(100), idle: worker(0) },
    routing: { default: 'base' },
  });
  const flags = ['--steps', '25,50,100', '--pause-at', '50', '--step', '0s', '--min-requests', '1000'];
  const started = await runCli(t, ['canary', 'idle', ...flags, '--admin', gw.adminUrl]);
  t.equal(started.code, 0, started.stderr);
  t.match(started.stdout, /; steps 25\/50\/100 %, pausing at 50 %, at least 0 s and 1000 canary requests each\n/);
  t.same((await canaryOf(gw, 'idle')).pauseAt, [50], 'a gate at 50 % (pauseAt): not reached yet');
  const paused = await runCli(t, ['canary', 'pause', 'idle', '--admin', gw.adminUrl]);
  t.equal(paused.code, 0, paused.stderr);
  t.match(
    paused.stdout,
    /^canary idle \(baseline base\): paused \(until resumed\) at step 1\/3 \(25 %\), canary now at 25 % of the pair\n/,
  );
  t.match(paused.stdout, /\nwhy: paused by hand \(POST \/admin\/versions\/idle\/canary\/pause\) at step 1 \(25 %\)\n/);
  const held = await canaryOf(gw, 'idle');
  t.equal(held.state, 'held');
  t.equal(held.paused, true);
  t.same(await weights(gw), { base: 75, idle: 25 }, 'paused: the weights stay');
  const metrics = await scrape(gw);
  t.equal(metrics.sum('graygate_canary_paused', { version: 'idle' }), 1, 'waiting for its operator');
  t.equal(metrics.sum('graygate_canary_state', { version: 'idle', state: 'held' }), 1);
  const st = await runCli(t, ['status', '--admin', gw.adminUrl]);
  t.match(st.stdout, /\ncanary idle \(baseline base\): paused, step 1\/3, 25 % — graygate canary status idle\n/);
  // What an attacker sends the new verbs: a cross-site POST is refused as every change is (the admin guard), and a
  // body on them, with a request pipelined behind it, is read past and the request behind it answered.
  const port = new URL(gw.adminUrl).port;
  const crossSite = await httpRequest(`${gw.adminUrl}/admin/versions/idle/canary/resume`, {
    method: 'POST',
    headers: { host: `127.0.0.1:${port}`, origin: 'http://evil.example', 'content-type': 'text/plain' },
    body: '{}',
  });
  t.equal(crossSite.status, 403, 'a cross-site resume is refused');
  t.equal((await canaryOf(gw, 'idle')).paused, true, 'and changes nothing');
  const raw = await openRaw(gw.adminUrl, ['POST', 'GET']);
  t.teardown(() => raw.socket.destroy());
  const smuggled =
    'DELETE /admin/versions/idle/canary HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\r\n';
  raw.write(
    `POST /admin/versions/idle/canary/pause HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n` +
      `Content-Type: application/json\r\nContent-Length: ${smuggled.length}\r\n\r\n${smuggled}` +
      `GET /admin/versions/idle/canary HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\n\r\n`,
  );
  const [bodied, behind] = await raw.waitFor(2);
  t.equal(bodied!.status, 200, 'a pause with a body (itself a request) is one call');
  t.equal(behind!.status, 200, 'the request behind it is answered');
  // Had the body been read as a request, the second answer would be its abort.
  t.equal((JSON.parse(behind!.body) as CanaryStatus).state, 'held', 'the body was no request of its own');
  t.equal((await canaryOf(gw, 'idle')).paused, true, 'the canary was not aborted');
  const ofBaseline = await admin<ErrorBody>(gw, 'POST', '/admin/versions/base/canary/pause');
  t.equal(ofBaseline.status, 404, 'the baseline has no canary of its own');
  t.match(ofBaseline.body.error.message, /: it is the baseline of the canary of "idle", named so here$/);
  const again = await admin<CanaryStatus>(gw, 'POST', '/admin/versions/idle/canary/pause');
  t.equal(again.status, 200, 'a second pause changes nothing');
  t.equal(again.body.paused, true);
  t.match(again.body.reason, /^paused by hand \(POST \/admin\/versions\/idle\/canary\/pause\) at step 1 \(25 %\)/);

  // A pipeline's gate waits through a pause (Argo's `status --watch` does): three answers, all paused, and it waits on.
  const relay = await adminRelay(t, gw);
  const waiting = runCli(t, ['canary', 'status', 'idle', '--wait', '--interval', '0.05', '--admin', relay.url]);
  const first = await Promise.race([relay.untilCalls(3).then(() => 'polled'), waiting.then(() => 'exited')]);
  t.equal(first, 'polled', '--wait did not take a pause for a verdict');
  // A pipeline that bounds its gate (Argo's `status --timeout`): the paused canary, never ending by itself, is
  // printed as it is and the exit is 124, as timeout(1)'s; the canary goes on.
  const bounded = await runCli(t, [
    'canary',
    'status',
    'idle',
    '--wait',
    '--interval',
    '0.05',
    '--timeout',
    '100ms',
    '--admin',
    gw.adminUrl,
  ]);
  t.equal(bounded.code, 124, bounded.stderr);
  t.match(bounded.stdout, /^canary idle \(baseline base\): paused \(until resumed\) at step 1\/3 \(25 %\)/);
  t.match(
    bounded.stderr,
    /\ngraygate: canary idle is still paused at step 1\/3 after --timeout 100ms: not promoted yet\n$/,
  );
  t.equal((await canaryOf(gw, 'idle')).paused, true, 'the canary goes on, paused');

  const resumed = await runCli(t, ['canary', 'resume', 'idle', '--admin', gw.adminUrl]);
  t.equal(resumed.code, 0, resumed.stderr);
  t.match(resumed.stdout, /^canary idle \(baseline base\): running at step 1\/3 \(25 %\)/);
  const running = await canaryOf(gw, 'idle');
  t.equal(running.paused, false);
  t.match(
    running.reason,
    /^(resumed by hand \(POST \/admin\/versions\/idle\/canary\/resume\) at step 1 \(25 %\), paused before|step 1 \(25 %\): not yet)/,
  );
  const twice = await admin<CanaryStatus>(gw, 'POST', '/admin/versions/idle/canary/resume');
  t.equal(twice.body.state, 'running', 'a running canary resumed goes on as it was');
  t.equal((await admin(gw, 'POST', '/admin/versions/idle/canary/promote')).status, 200);
  const waited = await waiting;
  t.equal(waited.code, 0, `--wait ends with the promotion: ${waited.stderr}`);
  t.equal(
    waited.stderr,
    'graygate: canary idle is paused at step 1 (25 %); waiting until it is resumed, promoted or aborted\n',
    'the pause said once',
  );
  t.same(await weights(gw), { base: 0, idle: 100 });
  const ended = await admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/canary/resume');
  t.equal(ended.status, 404, 'an ended canary is not resumed');
  t.equal(ended.body.error.code, 'not_found');
  // It said only "no running or held canary", as if there had been none.
  t.match(ended.body.error.message, /its last one ended promoted at \d{4}-.*\(.*canary\/promote.*\)$/, 'how it ended');
  const none = await runCli(t, ['canary', 'pause', 'base', '--admin', gw.adminUrl]);
  t.equal(none.code, 1, 'a version with no canary: the API refuses');
  t.match(none.stderr, /has no running or held canary/);
});

t.test('a held canary keeps its traffic: shown, still judged, abortable', async (t) => {
  const gw = await startGateway(t, {
    versions: { base: worker(100), idle: worker(0), bad: worker(0, { TEST_WORKER_ERROR_EVERY: '2' }) },
    routing: { default: 'base' },
  });
  const plan = { steps: [25, 100], stepMs: 0, maxStepMs: 100, minRequests: 1000 };
  t.equal((await admin(gw, 'POST', '/admin/versions/idle/canary', plan)).status, 202);
  const held = await waitForCanary(gw, 'idle', 'held');
  t.equal(held.canaryPercent, 25);
  t.equal(held.endedAt, null, 'held is not an end');
  t.match(held.reason, /^no verdict within maxStepMs/);
  t.same(await weights(gw), { base: 75, idle: 25, bad: 0 }, 'held: the weights stay');
  const st = await status(gw);
  t.equal(st.idle!.canary?.state, 'held', 'in /admin/status while it has traffic');
  t.equal(st.base!.canary?.version, 'idle', 'on its baseline too');
  const put = await admin<ErrorBody>(gw, 'PUT', '/admin/weights', { idle: 0 });
  t.equal(put.body.error.code, 'canary_in_progress', 'its weights are still the canary’s');
  const aborted = await admin<CanaryStatus>(gw, 'DELETE', '/admin/versions/idle/canary');
  t.equal(aborted.status, 200, 'a held canary can be aborted');
  t.equal(aborted.body.state, 'aborted');
  t.not(aborted.body.endedAt, null, 'the abort ends it');
  t.same(await weights(gw), { base: 100, idle: 0, bad: 0 }, 'the baseline gets the pair’s sum');
  const after = await status(gw);
  t.equal(after.idle!.canary?.state, 'aborted', 'in /admin/status as it ended (SPEC §11: the same state)');
  t.equal(after.base!.canary?.state, 'aborted', 'on its baseline too');
  t.equal((await scrape(gw)).sum('graygate_canary_state', { version: 'idle', state: 'aborted' }), 1);

  // Held with no traffic, then traffic comes and half of the canary's requests fail: rolled back.
  t.equal((await admin(gw, 'POST', '/admin/versions/bad/canary', plan)).status, 202);
  await waitForCanary(gw, 'bad', 'held');
  let final: CanaryStatus | undefined;
  await drive(gw.url, {
    path: () => '/slow?ms=0',
    concurrency: 4,
    maxRequests: 4000,
    isDone: async () => {
      const c = await canaryOf(gw, 'bad');
      if (c.state !== 'held') final = c;
      return final !== undefined;
    },
  });
  t.equal(final?.state, 'rolled_back', 'a held canary that fails is rolled back');
  t.same(await weights(gw), { base: 100, idle: 0, bad: 0 });
});

t.test('a refused or failed call leaves the running canary as it was', async (t) => {
  const gw = await startGateway(t, {
    versions: { base: worker(100), idle: worker(0) },
    routing: { default: 'base' },
  });
  t.equal((await admin(gw, 'POST', '/admin/versions/idle/canary', { steps: [30, 100], stepMs: 60_000 })).status, 202);
  const unchanged = async (what: string): Promise<void> => {
    const c = await canaryOf(gw, 'idle');
    t.equal(c.state, 'running', `${what}: the canary still runs`);
    t.same(await weights(gw), { base: 70, idle: 30 }, `${what}: the weights are the canary’s`);
  };

  t.equal((await admin(gw, 'DELETE', '/admin/versions/base')).status, 400, 'the routing default');
  await unchanged('refused removal');
  const rollback = await admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/rollback');
  t.equal(rollback.body.error.code, 'no_previous_build');
  await unchanged('refused rollback');

  // A deploy of the canary's version that never gets ready: the canary runs on through it.
  const build = hangingBuild(t);
  const hanging = admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/deploy', { env: build.env });
  await waitForStatus(gw, (v) => v.idle!.lastDeploy?.phase === 'starting', 'deploy running');
  const second = await admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/deploy', {});
  t.equal(second.body.error.code, 'deploy_in_progress');
  await unchanged('refused deploy');
  gw.writeConfig({
    versions: { base: worker(100), idle: worker(0, { X: '2' }) },
    routing: { default: 'base' },
  });
  const reload = await admin<ErrorBody>(gw, 'POST', '/admin/reload');
  t.equal(reload.body.error.code, 'deploy_in_progress', 'a reload that would redeploy the deploying version');
  t.match(reload.body.error.message, /config not reloaded, nothing changed/);
  await unchanged('refused reload');
  build.giveUp();
  t.equal((await hanging).body.error.code, 'deploy_failed');
  await unchanged('failed deploy');

  // A reload whose new build cannot start changes nothing, the canary included.
  gw.writeConfig({
    versions: { base: worker(100), idle: worker(0, { TEST_WORKER_START: 'crash' }), extra: worker(50) },
    routing: { default: 'base' },
  });
  const failed = await admin<ErrorBody>(gw, 'POST', '/admin/reload');
  t.equal(failed.body.error.code, 'deploy_failed');
  await unchanged('failed reload');
  t.equal((await status(gw)).extra, undefined, 'the version it would add is not there');

  // A deploy that completes ends it, and the baseline gets the pair's sum.
  const deployed = await admin<{ abortedCanary?: unknown }>(gw, 'POST', '/admin/versions/idle/deploy', {
    env: { X: '1' },
  });
  t.equal(deployed.status, 200);
  // A probe: `graygate deploy` said "deployed idle" alone; the answer names the canary it ended, and the CLI prints it.
  t.same(deployed.body.abortedCanary, { canary: 'idle', baseline: 'base' }, 'the answer names the canary it ended');
  const c = await canaryOf(gw, 'idle');
  t.equal(c.state, 'aborted');
  t.match(c.reason, /redeployed/);
  t.same(await weights(gw), { base: 100, idle: 0 });
});

t.test('no canary starts while either version deploys', async (t) => {
  const gw = await startGateway(t, {
    versions: { base: worker(100), idle: worker(0), other: worker(0) },
    routing: { default: 'base' },
  });
  const build = hangingBuild(t);
  const hanging = admin(gw, 'POST', '/admin/versions/idle/deploy', { env: build.env });
  await waitForStatus(gw, (v) => v.idle!.lastDeploy?.phase === 'starting', 'deploy running');
  const asCanary = await admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/canary', {});
  t.equal(asCanary.status, 409);
  t.equal(asCanary.body.error.code, 'deploy_in_progress');
  const asBaseline = await admin<ErrorBody>(gw, 'POST', '/admin/versions/other/canary', { baseline: 'idle' });
  t.equal(asBaseline.body.error.code, 'deploy_in_progress', 'as baseline');
  t.same(await weights(gw), { base: 100, idle: 0, other: 0 }, 'nothing changed');
  t.same(await canaryList(gw), [], 'no canary started');
  build.giveUp();
  await hanging;
});

t.test('removing a canary’s version gives the baseline the pair’s sum and drops its record', async (t) => {
  const gw = await startGateway(t, {
    versions: { base: worker(90), idle: worker(0), other: worker(10), gone: worker(0) },
    routing: { default: 'base' },
  });
  t.equal((await admin(gw, 'POST', '/admin/versions/idle/canary', { steps: [50, 100], stepMs: 60_000 })).status, 202);
  t.same(await weights(gw), { base: 45, idle: 45, other: 10, gone: 0 });
  // A pipeline waiting on it (`canary status --wait`) learns it was not promoted (exit 3), not an API refusal (1): a
  // probe's exited 1 with `404 unknown_version`. Its calls go through a relay that says when each was answered, and
  // that drops the second as a restarting master would: a probe's --wait exited 69 at its first failed call, where
  // `graygate top` retries.
  const relay = await adminRelay(t, gw, { dropCall: 1 });
  const waiting = runCli(t, ['canary', 'status', 'idle', '--wait', '--interval', '0.05', '--admin', relay.url]);
  await relay.untilCalls(3); // answered, dropped, answered
  const removed = await runCli(t, ['remove', 'idle', '--admin', gw.adminUrl]);
  t.equal(removed.code, 0);
  t.equal(removed.stdout, 'removed idle\naborted the canary of idle (baseline base)\n', 'the removal says it ended it');
  const waited = await waiting;
  t.equal(waited.code, 3, 'canary status --wait: not promoted');
  t.match(
    waited.stderr,
    /^graygate: admin API unreachable at .*; retrying for up to 60 s\n/,
    'a dropped call is retried',
  );
  t.match(
    waited.stderr,
    /\ngraygate: canary idle ended unpromoted: the admin API no longer knows it \(404 unknown_version.*\); its version was removed, or the master restarted/,
  );
  t.same(await weights(gw), { base: 90, other: 10, gone: 0 }, 'as for any abort: the baseline has the whole sum');
  t.same(await canaryList(gw), [], 'its canary is gone from GET /admin/canaries');
  t.equal((await scrape(gw)).text.includes('version="idle"'), false, 'and from /metrics');
  t.equal((await status(gw)).base!.canary, undefined, "and from its baseline's /admin/status");

  // A reload that removes a version drops its canary record too.
  t.equal((await admin(gw, 'POST', '/admin/versions/gone/canary', { steps: [50, 100] })).status, 202);
  t.equal((await admin(gw, 'DELETE', '/admin/versions/gone/canary')).status, 200);
  gw.writeConfig({ versions: { base: worker(90), other: worker(10) }, routing: { default: 'base' } });
  const reloaded = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
  t.same(reloaded.body.applied, ['removed gone']);
  t.same(await canaryList(gw), []);
  t.equal((await status(gw)).base!.canary, undefined);
  // Its canary's series (its workers' may still be there: the reload answers as it commits, and they drain after).
  t.notMatch((await scrape(gw)).text, /^graygate_canary_\w+\{version="gone"/m);
});

t.test('/admin/status: a version’s last canary as it ended; none for a version added again', async (t) => {
  // A review: a baseline removed and added again showed its old self's canary, which the new version was never in.
  const gw = await startGateway(t, {
    versions: { base: worker(90), b: worker(10), c: worker(0) },
    routing: { default: 'base' },
  });
  t.equal((await admin(gw, 'POST', '/admin/versions/c/canary', { baseline: 'b', steps: [50, 100] })).status, 202);
  t.equal((await admin(gw, 'DELETE', '/admin/versions/c/canary')).status, 200);
  let st = await status(gw);
  t.equal(st.c!.canary?.state, 'aborted', 'the canary: its last canary, as it ended');
  t.equal(st.b!.canary?.state, 'aborted', 'the baseline: the same');
  t.equal(st.base!.canary, undefined, 'a version in none: none');
  const shown = await runCli(t, ['status', '--admin', gw.adminUrl]);
  t.match(shown.stdout, /\nlast canary c \(baseline b\): aborted at \d{4}-[^ ]+ — graygate canary status c\n/);
  t.notMatch(shown.stdout, / % — /, 'no percent for an ended canary: the weights may have changed since');
  t.equal((await admin(gw, 'DELETE', '/admin/versions/b')).status, 200);
  t.equal((await admin(gw, 'POST', '/admin/versions', { name: 'b', entry: TEST_WORKER_ENTRY, weight: 5 })).status, 201);
  st = await status(gw);
  t.equal(st.b!.canary, undefined, 'b added again has been in no canary');
  t.equal(st.c!.canary?.baseline, 'b', 'c keeps its last canary');
});

t.test('weights are bounded; the first step never lowers the canary’s share', async (t) => {
  const gw = await startGateway(t, { versions: { base: worker(90), idle: worker(10) }, routing: { default: 'base' } });
  const huge = await admin<ErrorBody>(gw, 'PUT', '/admin/weights', { base: 1e308, idle: 1e308 });
  t.equal(huge.status, 400);
  t.equal(huge.body.error.code, 'invalid_request');
  t.match(huge.body.error.message, /base: must be ≤ 1000000/);
  t.equal((await admin(gw, 'PUT', '/admin/weights', { base: 1_000_000 })).status, 200, 'the maximum itself');
  t.equal((await admin(gw, 'PUT', '/admin/weights', { base: 90 })).status, 200);

  const started = await admin<CanaryStatus>(gw, 'POST', '/admin/versions/idle/canary', { steps: [5, 25, 100] });
  t.equal(started.status, 202);
  t.match(started.body, { state: 'running', step: 1, canaryPercent: 25 });
  t.same(await weights(gw), { base: 75, idle: 25 }, '10 % already: it starts at 25 %, not 5 %');
  t.equal((await admin(gw, 'DELETE', '/admin/versions/idle/canary')).status, 200);

  // A baseline with weight 0: the canary would start at 100 % with nothing to judge it against, for ever.
  t.equal((await admin(gw, 'PUT', '/admin/weights', { base: 0, idle: 50 })).status, 200);
  const unjudgeable = await admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/canary', {});
  t.equal(unjudgeable.status, 400);
  t.match(unjudgeable.body.error.message, /base has weight 0/);
  // So would a canary whose share is above every step below 100, and a plan of one step.
  t.equal((await admin(gw, 'PUT', '/admin/weights', { base: 40, idle: 60 })).status, 200);
  const above = await admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/canary', {});
  t.equal(above.status, 400);
  t.match(above.body.error.message, /idle already has 60 % of the pair's weight, above every step below 100/);
  const oneStep = await admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/canary', { steps: [100] });
  t.equal(oneStep.status, 400);
  t.match(oneStep.body.error.message, /a canary needs a step below 100/);
  t.equal((await canaryOf(gw, 'idle')).state, 'aborted', 'nothing started: the last canary is the aborted one');
  t.same(await weights(gw), { base: 40, idle: 60 }, 'no weight changed');
});

async function canaryList(gw: Gateway): Promise<string[]> {
  return (await admin<{ canaries: CanaryStatus[] }>(gw, 'GET', '/admin/canaries')).body.canaries.map((c) => c.version);
}

t.test(
  'SIGTERM during a canary: its last line says it was left where it was; an abort names its version',
  async (t) => {
    // A probe: a log read after a restart showed a `canary step` and no end; an abort's reason named the route
    // pattern (`/admin/versions/:name/canary`), not the version.
    const gw = await startGateway(
      t,
      { versions: { base: worker(100), one: worker(0), two: worker(0) }, routing: { default: 'base' } },
      { env: { LOG_LEVEL: 'info' } },
    );
    const slow = { steps: [25, 100], stepMs: 600_000 };
    t.equal((await admin(gw, 'POST', '/admin/versions/one/canary', slow)).status, 202);
    const aborted = await admin<CanaryStatus>(gw, 'DELETE', '/admin/versions/one/canary');
    t.equal(aborted.body.reason, 'aborted by DELETE /admin/versions/one/canary');
    t.equal((await admin(gw, 'POST', '/admin/versions/two/canary', slow)).status, 202);
    process.kill(gw.pid, 'SIGTERM');
    t.equal(await gw.exited, 0);
    t.match(
      gw.output(),
      /"canary":"two","baseline":"base","state":"running","step":0,"canaryPercent":25,"msg":"canary left where it was: the master is stopping/,
    );
    t.notMatch(gw.output(), /"canary":"one"[^\n]*canary left where it was/, 'an ended canary has no such line');
  },
);

t.test(
  'after a reload a promoted canary routes as the file does: as an instance fresh from it (SPEC §3, §13)',
  async (t) => {
    // A probe as an operator of two instances: both reloaded one file (the same graygate_config_info hash), and the
    // one that had promoted a canary kept the pair, so ~35 % of sticky users got another version from it.
    const input = (v1: number, v2: number) => ({
      versions: { v1: worker(v1), v2: worker(v2), v3: worker(50) },
      routing: { default: 'v3' },
    });
    const ready = (v: Awaited<ReturnType<typeof status>>): boolean =>
      Object.values(v).every((s) => s.workers.every((w) => w.state === 'ready'));
    const gw = await startGateway(t, input(50, 0));
    await waitForStatus(gw, ready, 'ready');
    const plan = { baseline: 'v1', steps: [50, 100], stepMs: 600_000 };
    t.equal((await admin(gw, 'POST', '/admin/versions/v2/canary', plan)).status, 202);
    t.equal((await admin(gw, 'POST', '/admin/versions/v2/canary/promote')).status, 200);
    t.same(await weights(gw), { v1: 0, v2: 50, v3: 50 }, 'promoted: the canary has the pair’s weight');
    const fresh = await startGateway(t, input(0, 50));
    await waitForStatus(fresh, ready, 'the fresh instance ready');
    const users = Array.from({ length: 100 }, (_, i) => `user-${i}`);
    const versionsOf = async (g: Gateway): Promise<string[]> => {
      const out: string[] = [];
      for (const user of users) {
        const res = await httpRequest(`${g.url}/slow?ms=0`, { headers: { 'x-user-id': user } });
        out.push(String(res.headers['x-graygate-version']));
      }
      return out;
    };
    const differing = (a: string[], b: string[]): number => a.filter((v, i) => v !== b[i]).length;
    const expected = await versionsOf(fresh);
    t.ok(differing(await versionsOf(gw), expected) > 0, 'before the reload the pair keeps its users (README)');
    gw.writeConfig(input(0, 50));
    const reloaded = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
    t.equal(reloaded.status, 200);
    t.same(
      reloaded.body.applied,
      ["dissolved the canary pair v1+v2: routing is the file's alone"],
      'the answer says why users may move (the weights did not change)',
    );
    t.same(await weights(gw), { v1: 0, v2: 50, v3: 50 }, 'the file’s weights, the same as before');
    t.equal(differing(await versionsOf(gw), expected), 0, 'every user on the version the fresh instance gives');
  },
);
