import t, { type Test } from 'tap';
import { admin, startGateway, TEST_WORKER_ENTRY, type Gateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { isAlive, pollPause, status, waitForStatus } from '../helpers/wait.js';
import { scrape } from '../helpers/metrics.js';
import { runCli } from '../helpers/cli.js';
import type { StatusBody, WorkerStatus } from '../../master/admin/status.js';
import { once } from 'node:events';
import { request, type IncomingMessage } from 'node:http';

t.test('admin token: 401 without it, 200 with it, /metrics included', async (t) => {
  const gw = await startGateway(
    t,
    { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } },
    { env: { GRAYGATE_ADMIN_TOKEN: 's3cret' } },
  );
  for (const path of ['/admin/status', '/metrics']) {
    const none = await admin<{ error: { code: string; type: string } }>(gw, 'GET', path);
    t.equal(none.status, 401, `${path} without token`);
    t.same(none.body.error, {
      message: 'missing or wrong bearer token',
      type: 'authentication_error',
      code: 'unauthorized',
    });
    t.equal(
      (await admin(gw, 'GET', path, undefined, { authorization: 'Bearer wrong' })).status,
      401,
      `${path} wrong token`,
    );
    t.equal(
      (await admin(gw, 'GET', path, undefined, { authorization: 'Bearer s3cret' })).status,
      200,
      `${path} right token`,
    );
  }
});

t.test('weights, add, remove', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 90 }, v2: { entry: TEST_WORKER_ENTRY, weight: 10 } },
  });

  const w = await admin<{ versions: Record<string, { weight: number }> }>(gw, 'PUT', '/admin/weights', {
    v2: 100,
    v1: 0,
  });
  t.equal(w.status, 200);
  t.same([w.body.versions.v1!.weight, w.body.versions.v2!.weight], [0, 100]);
  for (let i = 0; i < 5; i++)
    t.equal(
      (await httpRequest(`${gw.url}/stats`, { headers: { 'x-user-id': `u${i}` } })).headers['x-graygate-version'],
      'v2',
      'next request follows the new weights',
    );
  t.equal(
    (await admin<{ error: { code: string } }>(gw, 'PUT', '/admin/weights', { v9: 1 })).status,
    404,
    'unknown name',
  );
  // A computed key is an own property, as JSON.parse makes it: zod skipped it, and the call was a silent 200.
  const proto = await admin<{ error: { message: string } }>(gw, 'PUT', '/admin/weights', { ['__proto__']: -5 });
  t.equal(proto.status, 400, 'a weight for "__proto__" is refused');
  t.match(proto.body.error.message, /^__proto__: "__proto__" is not allowed as a key/);
  const zero = await admin<{ error: { code: string } }>(gw, 'PUT', '/admin/weights', { v2: 0 });
  t.equal(zero.status, 400, 'all zero refused');
  t.equal((await status(gw)).v2!.weight, 100, 'a refused change changes nothing');
  const bad = await admin<{ error: { code: string; message: string } }>(gw, 'PUT', '/admin/weights', { v1: -5 });
  t.equal(bad.status, 400);
  t.match(bad.body.error.message, /v1: must be ≥ 0/);

  const added = await admin<{ weight: number; workers: Array<{ state: string }> }>(gw, 'POST', '/admin/versions', {
    name: 'v3',
    entry: TEST_WORKER_ENTRY,
    weight: 0,
  });
  t.equal(added.status, 201);
  t.equal(added.body.workers[0]!.state, 'ready', 'answers once its workers are ready');
  t.equal(
    (await httpRequest(`${gw.url}/stats?version=v3`)).headers['x-graygate-version'],
    'v3',
    'reachable explicitly',
  );
  t.equal((await admin(gw, 'POST', '/admin/versions', { name: 'v3', entry: TEST_WORKER_ENTRY })).status, 409, 'exists');
  t.equal((await admin(gw, 'POST', '/admin/versions', { name: 'Bad Name', entry: TEST_WORKER_ENTRY })).status, 400);

  t.equal(
    (await admin<{ error: { message: string } }>(gw, 'DELETE', '/admin/versions/v1')).status,
    400,
    'the routing default cannot be removed',
  );
  t.equal(
    (await admin(gw, 'DELETE', '/admin/versions/v2')).status,
    400,
    'the last version with weight > 0 cannot be removed',
  );
  const v3pid = (await status(gw)).v3!.workers[0]!.pid;
  const removed = await admin(gw, 'DELETE', '/admin/versions/v3');
  t.equal(removed.status, 200);
  t.notOk(isAlive(v3pid), 'its worker stopped');
  const gone = await httpRequest(`${gw.url}/stats?version=v3`);
  t.equal(gone.status, 404);
  t.equal(json<{ error: { code: string } }>(gone).error.code, 'unknown_version');
  t.equal((await admin(gw, 'DELETE', '/admin/versions/v3')).status, 404);
});

// One gateway for three tests (a master and its worker's start were most of each one's CPU), in this order: the errors
// (nothing is added), two adds of one name, then the drain after SIGTERM, which ends it.
t.test('v1 alone, logging its requests', async (t) => {
  const gw = await startGateway(
    t,
    { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } },
    { env: { LOG_LEVEL: 'info' } },
  );
  t.test('admin errors keep the OpenAI shape', (t) => errorShapes(t, gw));
  t.test('two concurrent adds of one name: one wins, the other gets 409', (t) => concurrentAdds(t, gw));
  t.test('while the master drains after SIGTERM, the admin port answers reads and refuses changes', (t) =>
    adminWhileDraining(t, gw),
  );
});

async function errorShapes(t: Test, gw: Gateway): Promise<void> {
  const notFound = await admin<{ error: { type: string; code: string } }>(gw, 'GET', '/admin/nope');
  t.equal(notFound.status, 404);
  t.equal(notFound.body.error.code, 'not_found');
  const res = await fetch(`${gw.adminUrl}/admin/weights`, {
    method: 'PUT',
    body: '{not json',
    headers: { 'content-type': 'application/json' },
  });
  t.equal(res.status, 400);
  t.equal(((await res.json()) as { error: { code: string } }).error.code, 'invalid_request');
  t.equal((await admin(gw, 'GET', '/admin/weights')).status, 405);
  // `Allow` names HEAD where GET is answered, as the main port's does (a README walk: `allow: GET` on the admin port).
  const notAllowed = await fetch(`${gw.adminUrl}/admin/status`, {
    method: 'DELETE',
    headers: { 'content-type': 'application/json' },
  });
  t.same([notAllowed.status, notAllowed.headers.get('allow')], [405, 'GET, HEAD']);
  await notAllowed.arrayBuffer();
  const malformed = await admin<{ error: { code: string } }>(gw, 'DELETE', '/admin/versions/%E0%A4%A');
  t.equal(malformed.status, 400, 'a bad percent-escape is a 400, and the master lives on');
  t.equal(malformed.body.error.code, 'invalid_request');
  t.equal((await admin(gw, 'GET', '/admin/status')).status, 200);
  const big = await admin<{ error: { code: string } }>(gw, 'PUT', '/admin/weights', {
    v1: 1,
    pad: 'x'.repeat(70 * 1024),
  });
  t.equal(big.status, 413);
  t.equal(big.body.error.code, 'body_too_large');
  // A probe: an add or a deploy took what the file refuses, said it in other words, or failed later as a 500.
  const refusals: Array<[string, string, unknown, RegExp]> = [
    ['POST', '/admin/versions', { name: 'v5', env: { A: 'x\u0000y' } }, /^env\.A: must not hold a NUL character/],
    ['POST', '/admin/versions', { name: 'v5', env: { 'A=B': 'x' } }, /^env\.A=B: must be an environment variable name/],
    ['POST', '/admin/versions', { name: 'v5', entry: 'w\u0000.js' }, /^entry: must not hold a NUL character/],
    [
      'POST',
      '/admin/versions',
      { name: 'v5', upstream: { format: 'openai', url: 'mock:', maxConnections: 1 } },
      /^upstream\.maxConnections: must be ≥ limits\.maxSocketsPerWorker \(1024\)/,
    ],
    ['POST', '/admin/versions/v1/deploy', { instances: 65 }, /^instances: must be ≤ 64$/],
    ['POST', '/admin/versions/v1/deploy', { entry: '' }, /^entry: must not be empty$/],
    [
      'POST',
      '/admin/versions/v1/deploy',
      { upstream: { format: 'openai', url: 'mock:', maxConnections: 1 } },
      /^upstream\.maxConnections: must be ≥ limits\.maxSocketsPerWorker/,
    ],
    ['POST', '/admin/versions/v1/deploy', { constructor: 1 }, /^constructor: is not supported \(unknown key\)$/],
  ];
  for (const [method, path, body, message] of refusals) {
    const refused = await admin<{ error: { code: string; message: string } }>(gw, method, path, body);
    t.equal(refused.status, 400, `${path} ${JSON.stringify(body)}`);
    t.match(refused.body.error.message, message, `${path} ${JSON.stringify(body)}`);
  }
  t.same(Object.keys(await status(gw)), ['v1'], 'nothing was added');
}

async function concurrentAdds(t: Test, gw: Gateway): Promise<void> {
  const [a, b] = await Promise.all([
    admin(gw, 'POST', '/admin/versions', { name: 'v3', entry: TEST_WORKER_ENTRY }),
    admin(gw, 'POST', '/admin/versions', { name: 'v3', entry: TEST_WORKER_ENTRY }),
  ]);
  t.same([a.status, b.status].sort(), [201, 409]);
  t.equal((await status(gw)).v3!.workers.length, 1, 'one group, one worker');
}

t.test('removing a version serves the requests already waiting for it, then drains (SPEC §6)', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 }, v2: { entry: TEST_WORKER_ENTRY, weight: 0 } },
    limits: { maxSocketsPerWorker: 1, queueTimeoutMs: 60_000 },
  });
  // The slot holder: a stream the client ends once the removal has begun.
  const holder = request(`${gw.url}/sse?events=100000&ms=50&version=v2`, { agent: false });
  holder.on('error', () => undefined);
  holder.end();
  await waitForStatus(gw, (v) => v.v2!.workers[0]!.inflight === 1, 'the stream holds the slot');
  // The waiting request: a stream too, held until the test has seen the removed version drain it.
  const waiting = request(`${gw.url}/sse?events=100000&ms=50&version=v2`, { agent: false });
  waiting.on('error', () => undefined);
  waiting.end();
  await waitForStatus(gw, (v) => v.v2!.queued === 1, 'a request waits');
  const removed = admin(gw, 'DELETE', '/admin/versions/v2');
  await waitForStatus(gw, (v) => v.v2 === undefined, 'v2 is out of routing');
  t.equal((await httpRequest(`${gw.url}/slow?ms=0&version=v2`)).status, 404, 'new requests find no v2');
  // A churn probe: a removed version's workers, serving for up to drainTimeoutMs, were in no status row and no series.
  const serving = await admin<StatusBody>(gw, 'GET', '/admin/status');
  t.match(serving.body.removing, { v2: { workers: [{ state: 'ready', inflight: 1 }] } }, 'in status under `removing`');
  holder.destroy();
  const [answer] = (await once(waiting, 'response')) as [IncomingMessage];
  t.equal(answer.statusCode, 200, 'the waiting request was served, not refused');
  t.equal(answer.headers['x-graygate-version'], 'v2');
  // Its queue empty, the worker drains its last stream: one row (a review: listed twice, in `workers` and `draining`).
  const draining = await untilRemoving(gw, (workers) => workers[0]?.state === 'draining');
  t.match(draining, [{ state: 'draining', inflight: 1 }]);
  t.equal(draining.length, 1, 'the worker once');
  const metrics = await scrape(gw);
  t.equal(metrics.sum('graygate_workers', { version: 'v2' }), 1, 'in graygate_workers, once');
  t.equal(metrics.sum('graygate_workers', { version: 'v2', state: 'draining' }), 1);
  t.match(
    (await runCli(t, ['status', '--admin', gw.adminUrl])).stdout,
    /\nremoved v2, finishing: pid \d+ draining \(1 in flight\)\n/,
  );
  answer.destroy();
  t.equal((await removed).status, 200);
  t.equal((await admin<StatusBody>(gw, 'GET', '/admin/status')).body.removing, undefined, 'gone once stopped');
  t.equal((await scrape(gw)).sum('graygate_workers', { version: 'v2' }), 0);
});

/** Polls /admin/status until the removed version v2's finishing workers are as `condition` wants them. */
async function untilRemoving(gw: Gateway, condition: (workers: WorkerStatus[]) => boolean): Promise<WorkerStatus[]> {
  for (let i = 0; i < 3000; i++) {
    const workers = (await admin<StatusBody>(gw, 'GET', '/admin/status')).body.removing?.['v2']?.workers ?? [];
    if (condition(workers)) return workers;
    await pollPause();
  }
  throw new Error('the removed version never got so');
}

t.test('a request whose version is removed while its body comes is routed again, not refused', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 50 }, v2: { entry: TEST_WORKER_ENTRY, weight: 50 } },
  });
  // A user the sticky hash sends to v2 (one of the first few: the split is even).
  let user = '';
  for (let i = 0; user === '' && i < 64; i++)
    if (
      (await httpRequest(`${gw.url}/stats`, { headers: { 'x-user-id': `u${i}` } })).headers['x-graygate-version'] ===
      'v2'
    )
      user = `u${i}`;
  t.not(user, '', 'a user routed to v2');
  const body = JSON.stringify({ hello: 'world' });
  // Its head is routed (to v2) when the master asks for the body: 100 Continue.
  const answer = new Promise<{ status: number; version: unknown; text: string }>((resolve, reject) => {
    const req = request(`${gw.url}/echo`, {
      method: 'POST',
      agent: false,
      headers: {
        'x-user-id': user,
        'content-type': 'application/json',
        'content-length': body.length,
        expect: '100-continue',
      },
    });
    req.on('continue', () => {
      void admin(gw, 'DELETE', '/admin/versions/v2').then((removed) => {
        t.equal(removed.status, 200, 'v2 removed while the body is unsent');
        req.end(body);
      }, reject);
    });
    req.on('response', (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, version: res.headers['x-graygate-version'], text }));
    });
    req.on('error', reject);
    req.flushHeaders();
  });
  const served = await answer;
  t.equal(served.status, 200, 'served, not 503 "version was removed"');
  t.equal(served.version, 'v1', 'by the version routing has now');
  t.match(served.text, /world/, 'with its body');
});

async function adminWhileDraining(t: Test, gw: Gateway): Promise<void> {
  // An admin probe: the admin port closed with the main one, so status and /metrics, what an operator watches a drain
  // with, were refused on new connections for the whole drain (Envoy keeps its admin interface up).
  const stream = request(`${gw.url}/sse?events=100000&ms=50`, { agent: false });
  stream.on('error', () => undefined);
  stream.on('response', (res) => res.resume());
  stream.end();
  t.teardown(() => stream.destroy());
  await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 1, 'a stream keeps the drain going');
  process.kill(gw.pid, 'SIGTERM');
  while (!gw.output().includes('"msg":"shutting down"')) await once(gw.child.stdout!, 'data');
  const read = await admin<{ versions: Record<string, unknown> }>(gw, 'GET', '/admin/status');
  t.equal(read.status, 200, 'status on a new connection');
  t.ok(read.body.versions['v1'], 'with the versions');
  const change = await admin<{ error: { code: string } }>(gw, 'PUT', '/admin/weights', { v1: 2 });
  t.equal(change.status, 503);
  t.equal(change.body.error.code, 'shutting_down');
  stream.destroy();
  t.equal(await gw.exited, 0);
}
