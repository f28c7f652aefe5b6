import t, { type Test } from 'tap';
import { Agent, request } from 'node:http';
import {
  admin,
  hangingBuild,
  requestGate,
  startGateway,
  TEST_WORKER_ENTRY,
  type Gateway,
  type Teardown,
} from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { untilOutput } from '../helpers/output.js';
import { isAlive, status, waitForStatus } from '../helpers/wait.js';

// Issue 4: swapping a version's build while traffic flows, with no failed request.

/**
 * The load's hard cap: the deploy, started at the 200th request, answers by the 500th–700th on 2 cores (the test's
 * comment says when). A deploy that has not answered by then fails the test there, instead of the load running until
 * tap's timeout.
 */
const MAX_SENT = 20_000;
/**
 * Requests the load sends after the deploy answered, the old workers gone by then (the test checks): ten a client, so
 * each connection the master keeps to a worker is used again after the swap. The load sent at least 2,000 before,
 * ~1,400 of them after the answer to the new workers alone (2.5–2.9 CPU s of the file's ~34, none of it the swap's).
 */
const SENT_AFTER_DEPLOY = 200;

/** Lines of the master's log saying v2 was forgotten (`version removed` alone: not its "…is kept" variants). */
const v2RemovedLines = (gw: Gateway): number =>
  gw
    .output()
    .split('\n')
    .filter((l) => /"version":"v2".*"msg":"version removed"/.test(l)).length;

/**
 * v1 and v2 on the test worker (LOG_LEVEL info); a request held on v2's build (`gate.release()` ends it); v2 deployed,
 * so that build drains it, and then removed: v2 is out of routing when this returns, its deploy and removal unanswered.
 */
async function removeWhileDraining(t: Teardown): Promise<{
  gw: Gateway;
  gate: { release(): void };
  long: Promise<{ status: number }>;
  deploy: Promise<{ status: number }>;
  removal: Promise<{ status: number }>;
}> {
  const gw = await startGateway(
    t,
    { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 }, v2: { entry: TEST_WORKER_ENTRY, weight: 1 } } },
    { env: { LOG_LEVEL: 'info' } },
  );
  const gate = requestGate(t);
  const long = httpRequest(`${gw.url}${gate.path}&version=v2`);
  await waitForStatus(gw, (v) => v.v2!.workers[0]!.inflight === 1, 'the long request on the old build');
  const deploy = admin(gw, 'POST', '/admin/versions/v2/deploy', {});
  await waitForStatus(gw, (v) => v.v2!.lastDeploy?.phase === 'draining', 'traffic moved, the old build drains');
  const removal = admin(gw, 'DELETE', '/admin/versions/v2');
  await waitForStatus(gw, (v) => v.v2 === undefined, 'v2 out of routing');
  return { gw, gate, long, deploy, removal };
}

t.test('deploy while 20 concurrent clients send requests: every request succeeds', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1, instances: 2 } } });
  const oldPids = (await status(gw)).v1!.workers.map((w) => w.pid);
  const agent = new Agent({ keepAlive: true, maxSockets: 20 });
  t.teardown(() => agent.destroy());

  let sent = 0;
  let isDeployDone = false;
  let sentAtDeploy = 0;
  const failures: string[] = [];
  const pidsSeen = new Set<number>();
  let deploy: Promise<{ status: number; body: { lastDeploy: { newPids: number[]; phase: string } } }> | undefined;
  const client = async (): Promise<void> => {
    // From before the deploy to SENT_AFTER_DEPLOY requests after its answer, or until MAX_SENT were sent: a deploy that
    // never ends fails the test below, not load sent until tap's timeout.
    while ((!isDeployDone || sent < sentAtDeploy + SENT_AFTER_DEPLOY) && sent < MAX_SENT) {
      sent++;
      // Start the deploy once the load is under way, from inside the load.
      if (sent === 200) {
        deploy = admin(gw, 'POST', '/admin/versions/v1/deploy', {});
        const done = (): void => {
          isDeployDone = true;
          sentAtDeploy = sent;
        };
        deploy.then(done, done); // a rejection is the `await deploy` below's
      }
      const res = await httpRequest(`${gw.url}/slow?ms=1`, { agent }).catch((err: Error) => ({
        status: 0,
        body: err.message,
        headers: {},
      }));
      if (res.status !== 200) failures.push(`${res.status} ${res.body}`);
      else pidsSeen.add(json<{ pid: number }>(res).pid);
    }
  };
  await Promise.all(Array.from({ length: 20 }, client));
  if (!isDeployDone) {
    t.fail(`the deploy had not answered after ${sent} requests (${failures.length} failed)`, { failures });
    return; // the teardown ends the master, and the deploy call with it
  }
  const deployed = await deploy!;
  t.equal(deployed.status, 200, 'deploy answered 200 once complete');
  t.equal(deployed.body.lastDeploy.phase, 'done');
  t.same(failures, [], 'no request failed during the deploy');

  const newPids = (await status(gw)).v1!.workers.map((w) => w.pid);
  t.same(newPids.sort(), [...deployed.body.lastDeploy.newPids].sort());
  t.ok(
    oldPids.some((p) => pidsSeen.has(p)) && newPids.some((p) => pidsSeen.has(p)),
    'the load was served by old and new workers: the swap happened under it',
  );
  t.ok(sent >= sentAtDeploy + SENT_AFTER_DEPLOY, `${sent} requests sent, ${sent - sentAtDeploy} after the answer`);
  t.comment(`the deploy answered after ${sentAtDeploy} requests (the load's cap: ${MAX_SENT})`);
  for (const pid of oldPids) t.notOk(newPids.includes(pid), `old worker ${pid} replaced`);
  for (const pid of oldPids) t.notOk(isAlive(pid), `old worker ${pid} exited`);
  const after = await Promise.all(Array.from({ length: 10 }, () => httpRequest(`${gw.url}/slow?ms=0`)));
  for (const r of after) t.ok(newPids.includes(json<{ pid: number }>(r).pid), 'new pids serve afterwards');
});

// One gateway for the tests of a group (a master and its workers' start were most of such a test's CPU), each of which
// leaves its versions with one build of one instance serving, nothing in flight and no deploy under way.
t.test('v1 alone', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } });
  t.test('an SSE stream that started before a deploy finishes intact on the old worker, which then exits', (t) =>
    streamThroughDeploy(t, gw),
  );
  t.test('builds that crash at start or never become ready are abandoned; the old build keeps serving', (t) =>
    failedBuilds(t, gw),
  );
  t.test(
    'a second rollback during the first one’s drain goes one build further back; each answers with its own record',
    (t) => secondRollback(t, gw),
  );
  // Last: it leaves a second build (its env) to roll back to.
  t.test('a swap whose drain ends while the next one starts leaves that one its lock', (t) => lockHandedOn(t, gw));
});

t.test('v1 and v2', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 }, v2: { entry: TEST_WORKER_ENTRY, weight: 1 } },
  });
  t.test('rollback returns to the previous entry; no previous build is 409', (t) => rollbackToEntry(t, gw));
  t.test('a rollback while the old build drains a long request: taken at once; that request ends whole', (t) =>
    rollbackWhileDraining(t, gw),
  );
});

async function streamThroughDeploy(t: Test, gw: Gateway): Promise<void> {
  const oldPid = (await status(gw)).v1!.workers[0]!.pid;
  let deploy: ReturnType<typeof admin> | undefined;
  const body = await new Promise<string>((resolve, reject) => {
    const req = request(`${gw.url}/sse?events=60&ms=20`, { agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        // Deploy as soon as the stream is flowing.
        deploy ??= admin(gw, 'POST', '/admin/versions/v1/deploy', {});
      });
      res.on('end', () => resolve(text));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  const events = body.trim().split('\n\n');
  t.equal(events.length, 61, 'all 60 events and [DONE]');
  t.equal(events.at(-1), 'data: [DONE]');
  t.ok(
    events.slice(0, -1).every((e) => (JSON.parse(e.slice(6)) as { pid: number }).pid === oldPid),
    'served by the old worker throughout',
  );
  const deployed = await deploy!;
  t.equal(deployed.status, 200);
  t.notOk(isAlive(oldPid), 'the old worker exited after its stream');
}

async function failedBuilds(t: Test, gw: Gateway): Promise<void> {
  const oldPid = (await status(gw)).v1!.workers[0]!.pid;

  const crash = await admin<{ error: { code: string; message: string } }>(gw, 'POST', '/admin/versions/v1/deploy', {
    env: { TEST_WORKER_START: 'crash' },
  });
  t.equal(crash.status, 500);
  t.equal(crash.body.error.code, 'deploy_failed');
  t.match(crash.body.error.message, /exited with code 3/);
  t.match(crash.body.error.message, /crashing at start as asked/, 'the last stderr lines are in the reason');
  let st = await status(gw);
  t.equal(st.v1!.lastDeploy!.phase, 'failed', 'status records the failed attempt');
  t.match(st.v1!.lastDeploy!.error!.reason, /exited with code 3/);
  t.same(
    st.v1!.workers.map((w) => w.pid),
    [oldPid],
    'old build untouched',
  );

  // A deploy whose build hangs is in progress until the test gives it up, so the 409 is seen on any machine.
  const build = hangingBuild(t);
  const hanging = admin<{ error: { code: string; message: string } }>(gw, 'POST', '/admin/versions/v1/deploy', {
    env: build.env,
  });
  await waitForStatus(gw, (v) => v.v1!.lastDeploy?.phase === 'starting', 'deploy running');
  const second = await admin<{ error: { code: string } }>(gw, 'POST', '/admin/versions/v1/deploy', {});
  t.equal(second.status, 409);
  t.equal(second.body.error.code, 'deploy_in_progress');
  build.giveUp();
  const hung = await hanging;
  t.equal(hung.status, 500);
  t.match(hung.body.error.message, /exited with code 4/);
  t.match(hung.body.error.message, /hanging at start as asked/);
  st = await status(gw);
  t.same(
    st.v1!.workers.map((w) => w.pid),
    [oldPid],
  );
  const res = await httpRequest(`${gw.url}/slow?ms=0`);
  t.equal(json<{ pid: number }>(res).pid, oldPid, 'the old build still serves');
  // Node prints a stack, `code`, `requireStack` and its version after the error: the error's line is named too.
  const missing = await admin<{ error: { code: string; message: string } }>(gw, 'POST', '/admin/versions/v1/deploy', {
    entry: 'dist/worker/no-such-entry.js',
  });
  t.equal(missing.body.error.code, 'deploy_failed');
  t.match(missing.body.error.message, /last stderr: Error[^|]*: Cannot find module '[^']*no-such-entry\.js' \| … \|/);
}

async function rollbackToEntry(t: Test, gw: Gateway): Promise<void> {
  const none = await admin<{ error: { code: string } }>(gw, 'POST', '/admin/versions/v2/rollback');
  t.equal(none.status, 409);
  t.equal(none.body.error.code, 'no_previous_build');

  const { WORKER_ENTRY } = await import('../helpers/gateway.js');
  const deployed = await admin<{ entry: string; builds: Array<{ entry: string; current: boolean }> }>(
    gw,
    'POST',
    '/admin/versions/v2/deploy',
    { entry: WORKER_ENTRY },
  );
  t.equal(deployed.status, 200);
  t.equal(deployed.body.entry, WORKER_ENTRY);
  t.same(deployed.body.builds, [
    { entry: TEST_WORKER_ENTRY, current: false },
    { entry: WORKER_ENTRY, current: true },
  ]);
  const models = await httpRequest(`${gw.url}/v1/models?version=v2`);
  t.equal(models.status, 200, 'the real worker serves /v1/models');

  const rolled = await admin<{ entry: string; lastDeploy: { kind: string } }>(
    gw,
    'POST',
    '/admin/versions/v2/rollback',
  );
  t.equal(rolled.status, 200);
  t.equal(rolled.body.entry, TEST_WORKER_ENTRY);
  t.equal(rolled.body.lastDeploy.kind, 'rollback');
  t.equal((await httpRequest(`${gw.url}/stats?version=v2`)).status, 200, 'the test build serves again');
  t.equal((await admin(gw, 'POST', '/admin/versions/v2/rollback')).status, 409, 'nothing further back');
}

// SPEC §6: no request is cut by a swap. An old build drained for shutdownTimeoutMs (30 s) and its longer streams were
// cut (an LLM answer can run for minutes); it drains for limits.drainTimeoutMs now (10 min), and the version's lock is
// released once traffic has moved, so that a rollback of a bad build need not wait for the good one's long streams.

async function rollbackWhileDraining(t: Test, gw: Gateway): Promise<void> {
  const oldPid = (await status(gw)).v2!.workers[0]!.pid;
  const gate = requestGate(t);
  const long = httpRequest(`${gw.url}${gate.path}&version=v2`);
  await waitForStatus(gw, (v) => v.v2!.workers[0]!.inflight === 1, 'the long request on the old build');
  // Another build (a deploy of the running one again leaves no build to roll back to).
  const deploy = admin(gw, 'POST', '/admin/versions/v2/deploy', { env: { BUILD: 'b2' } });
  await waitForStatus(gw, (v) => v.v2!.lastDeploy?.phase === 'draining', 'traffic moved, the old build drains');
  const rolled = await admin<{ lastDeploy?: { kind: string } }>(gw, 'POST', '/admin/versions/v2/rollback');
  t.same([rolled.status, rolled.body.lastDeploy?.kind], [200, 'rollback'], 'not 409 deploy_in_progress');
  const canary = await admin<{ error: { code: string } }>(gw, 'POST', '/admin/versions/v2/canary', {});
  t.same([canary.status, canary.body.error.code], [409, 'deploy_in_progress'], 'a canary waits for the drain');
  t.ok(isAlive(oldPid), 'the old build still serves its request');
  gate.release();
  const answer = await long;
  t.same([answer.status, json<{ pid: number }>(answer).pid], [200, oldPid], 'answered whole by the old build');
  t.equal((await deploy).status, 200, 'the deploy answers once its old build is gone');
  t.notOk(isAlive(oldPid));
}

t.test('a removal while an old build drains: forgotten once that build is gone too', async (t) => {
  const { gw, gate, long, deploy, removal } = await removeWhileDraining(t);
  gate.release();
  t.equal((await long).status, 200, 'the long request ends whole');
  t.equal((await removal).status, 200);
  t.equal((await deploy).status, 200);
  // One process writes both lines, in the order things happened: the version is forgotten after its old build's
  // last request, not as soon as its current build stopped.
  const isRemovedLine = (l: string): boolean => /"version":"v2".*"msg":"version removed"/.test(l);
  await untilOutput(gw, () => (v2RemovedLines(gw) > 0 ? true : undefined));
  const lines = gw.output().split('\n');
  const longLine = lines.findIndex((l) => l.includes('"msg":"request"') && l.includes('/gate'));
  t.ok(longLine >= 0 && longLine < lines.findIndex(isRemovedLine), 'the long request logged before v2 is forgotten');
});

t.test('an old build is stopped at limits.drainTimeoutMs, not shutdownTimeoutMs', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { drainTimeoutMs: 200, shutdownTimeoutMs: 600_000 },
  });
  const oldPid = (await status(gw)).v1!.workers[0]!.pid;
  const gate = requestGate(t); // never released
  const long = httpRequest(gw.url + gate.path).then(
    (r) => `${r.status}`,
    () => 'cut',
  );
  await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 1, 'the long request on the old build');
  t.equal((await admin(gw, 'POST', '/admin/versions/v1/deploy', {})).status, 200, 'answered at the drain deadline');
  t.notOk(isAlive(oldPid), 'the old build stopped');
  t.match(await long, /^(502|cut)$/, 'its request cut, as documented');
});

async function secondRollback(t: Test, gw: Gateway): Promise<void> {
  // A review: the rollback took its build off the list only once its drain was over, so a second one, taken during
  // it now that the lock ends as traffic moves, redeployed the same build and lost the one before from the list; and
  // a swap's answer, given after its drain, described the later swap (its record, its pids).
  for (const instances of [2, 3]) {
    t.equal(
      (await admin(gw, 'POST', '/admin/versions/v1/deploy', { instances })).status,
      200,
      `${instances} instances`,
    );
  }
  const gate = requestGate(t);
  const long = httpRequest(gw.url + gate.path);
  await waitForStatus(gw, (v) => v.v1!.workers.some((w) => w.inflight === 1), 'a long request on the third build');
  const first = admin<{ instances: number; lastDeploy: { kind: string; newPids: number[] } }>(
    gw,
    'POST',
    '/admin/versions/v1/rollback',
  );
  await waitForStatus(
    gw,
    (v) => v.v1!.lastDeploy?.kind === 'rollback' && v.v1!.lastDeploy.phase === 'draining',
    'the first rollback drains the third build',
  );
  const second = await admin<{ instances: number; lastDeploy: { newPids: number[] } }>(
    gw,
    'POST',
    '/admin/versions/v1/rollback',
  );
  t.same([second.status, second.body.instances], [200, 1], 'back to the first build');
  t.equal(second.body.lastDeploy.newPids.length, 1);
  gate.release();
  t.equal((await long).status, 200, 'the long request ends whole');
  const answered = await first;
  t.same([answered.status, answered.body.lastDeploy.newPids.length], [200, 2], 'its own record: the second build');
}

async function lockHandedOn(t: Test, gw: Gateway): Promise<void> {
  const gate = requestGate(t);
  const long = httpRequest(gw.url + gate.path);
  await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 1, 'a long request on the old build');
  const first = admin(gw, 'POST', '/admin/versions/v1/deploy', {});
  await waitForStatus(gw, (v) => v.v1!.lastDeploy?.phase === 'draining', 'the first deploy drains');
  const ready = requestGate(t); // the second build reports ready once this is released
  const readyFile = decodeURIComponent(ready.path.slice('/gate?file='.length));
  const second = admin(gw, 'POST', '/admin/versions/v1/deploy', { env: { TEST_WORKER_READY_FILE: readyFile } });
  await waitForStatus(gw, (v) => v.v1!.lastDeploy?.phase === 'starting', 'the second deploy starts');
  gate.release();
  t.equal((await long).status, 200);
  t.equal((await first).status, 200, 'the first deploy ends with its drain');
  const third = await admin<{ error?: { code: string } }>(gw, 'POST', '/admin/versions/v1/deploy', {});
  t.same([third.status, third.body.error?.code], [409, 'deploy_in_progress'], 'the second one still holds the lock');
  ready.release();
  t.equal((await second).status, 200);
}

t.test(
  'a version removed, added again and removed while the first one drains keeps its name till both are gone',
  async (t) => {
    // A review: the second removal forgot the name (its metrics, its retired totals) while the first one's old build
    // still served a request, and the first one's end forgot it again.
    const { gw, gate, long, deploy, removal: firstRemoval } = await removeWhileDraining(t);
    const removedLines = (): number => v2RemovedLines(gw);
    const added = await admin(gw, 'POST', '/admin/versions', { name: 'v2', entry: TEST_WORKER_ENTRY, weight: 0 });
    t.equal(added.status, 201);
    t.equal((await admin(gw, 'DELETE', '/admin/versions/v2')).status, 200, 'the second v2 removed');
    // The master's line for that removal is written before its answer: read once the pipe has brought it.
    const kept = 'another of its name still drains, the name is kept';
    await untilOutput(gw, () => (gw.output().includes(kept) || removedLines() > 0 ? true : undefined));
    t.match(gw.output(), kept);
    t.equal(removedLines(), 0, 'the name kept while the first v2 serves');
    gate.release();
    t.equal((await long).status, 200);
    t.equal((await firstRemoval).status, 200);
    t.equal((await deploy).status, 200);
    await untilOutput(gw, () => (removedLines() > 0 ? true : undefined));
    t.equal(removedLines(), 1, 'forgotten once, when the last of its name is gone');
  },
);
