import t, { type Test } from 'tap';
import { request, type IncomingMessage } from 'node:http';
import { startGateway, TEST_WORKER_ENTRY, type Gateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { pollPause, status, waitForStatus, type WorkerRow } from '../helpers/wait.js';
import { scrapeUntil } from '../helpers/metrics.js';

// One gateway for the tests of a group whose limits are the same (a master and its worker's start were most of such a
// test's CPU): each test kills v1's one worker, and the next begins once its replacement is ready (readyWorker).
t.test('one worker, the default limits', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } });
  // First: its counts (graygate_requests_total) are the gateway's whole.
  t.test("a worker dying in the middle of an event: the client's connection is cut, no error glued onto it", (t) =>
    middleOfAnEvent(t, gw),
  );
  t.test('SIGKILL of a worker: in-flight request gets 502 worker_error, the worker comes back', (t) =>
    killedInFlight(t, gw),
  );
  t.test('a POST the worker had when it died is 502, never sent again (with its body gone, it was a 400)', (t) =>
    postInFlight(t, gw),
  );
  t.test('a worker dying mid-stream ends the SSE stream with an error event', (t) => midStream(t, gw));
});

async function killedInFlight(t: Test, gw: Gateway): Promise<void> {
  const { restarts } = await readyWorker(gw);
  const since = gw.output().length;
  const inflight = httpRequest(`${gw.url}/hold`);
  // Read by the worker: one it had not read yet (in its socket's buffer) would be sent again to its replacement.
  await heldRequests(gw, 1, since);
  const pid = (await status(gw)).v1!.workers[0]!.pid;
  process.kill(pid, 'SIGKILL');
  const res = await inflight;
  t.equal(res.status, 502);
  t.same(json(res), {
    error: { message: 'the worker failed before answering', type: 'gateway_error', code: 'worker_error' },
  });
  const after = await waitForStatus(
    gw,
    (v) => v.v1!.workers[0]!.state === 'ready' && v.v1!.workers[0]!.pid !== pid,
    'worker restarted',
  );
  t.equal(after.v1!.workers[0]!.restarts, restarts + 1, 'restart counted');
  const again = await httpRequest(`${gw.url}/slow?ms=0`);
  t.equal(again.status, 200, 'requests succeed again');
  t.equal(json<{ pid: number }>(again).pid, after.v1!.workers[0]!.pid);
}

async function postInFlight(t: Test, gw: Gateway): Promise<void> {
  await readyWorker(gw);
  const since = gw.output().length;
  // The master's kept-alive socket to the worker, used once: the POST goes on it (a reset of a reused socket).
  t.equal((await httpRequest(`${gw.url}/slow?ms=0`)).status, 200);
  const inflight = httpRequest(`${gw.url}/slow?ms=60000`, { method: 'POST', body: '{"model":"m"}' });
  const before = await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 1, 'POST in flight');
  process.kill(before.v1!.workers[0]!.pid, 'SIGKILL');
  const res = await inflight;
  t.equal(res.status, 502);
  t.equal(json<{ error: { code: string } }>(res).error.code, 'worker_error');
  t.notMatch(gw.output().slice(since), /request tried again/, 'not tried again: it may have run');
}

t.test('a reused socket reset before the worker read its request: a GET goes again, a POST is 502', async (t) => {
  // nginx's proxy_next_upstream without non_idempotent: a POST a worker may have read must not run twice.
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { maxSocketsPerWorker: 2, maxIdleSocketsPerWorker: 1 },
  });
  for (const [method, expected] of [
    ['GET', 200],
    ['POST', 502],
  ] as const) {
    // The master's one idle socket to the worker is the one the worker stops reading: the next request goes on it.
    t.equal((await httpRequest(`${gw.url}/pause-next`)).status, 200);
    // No body: one sent whole is never sent again whatever the method (retry.ts); the method alone decides here.
    const unread = httpRequest(`${gw.url}/echo?${method}`, { method });
    await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 1, `${method} sent`);
    t.equal((await httpRequest(`${gw.url}/reset-paused`)).status, 200);
    const res = await unread;
    t.equal(res.status, expected, method);
    if (expected === 502) t.match(res.body, /"code":"worker_error"/);
    else t.match(gw.output(), /request tried again/, 'the GET went again, not out on a fresh socket at first');
  }
  const stats = json<{ seen: Array<{ method: string; url: string }> }>(await httpRequest(`${gw.url}/stats`));
  t.same(
    stats.seen.filter((s) => s.url.startsWith('/echo')).map((s) => s.method),
    ['GET'],
    'the GET read once, when tried again; the POST never',
  );
});

t.test(
  'SIGKILL of a worker: requests waiting for its slots are served by its replacement, not answered 502',
  async (t) => {
    // Its in-flight requests fail first and free their slots, before its exit is seen: the waiting requests were sent
    // to a socket nobody listened on any more (502 worker_error), though they never reached a worker.
    const gw = await startGateway(t, {
      versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
      limits: { maxSocketsPerWorker: 2, queueTimeoutMs: 60_000 },
    });
    const inflight = [httpRequest(`${gw.url}/hold`), httpRequest(`${gw.url}/hold`)];
    // Only once both hold the slots: sent together, an /echo could take a slot first, end, and leave one waiting. And
    // read by the worker: one it had not read would be sent again, to its replacement.
    await heldRequests(gw, 2);
    const queued = [httpRequest(`${gw.url}/echo`), httpRequest(`${gw.url}/echo`)];
    const before = await waitForStatus(gw, (v) => v.v1!.queued === 2, 'two waiting');
    const pid = before.v1!.workers[0]!.pid;
    process.kill(pid, 'SIGKILL');
    t.same(
      (await Promise.all(inflight)).map((r) => r.status),
      [502, 502],
      'the requests it had failed',
    );
    const served = await Promise.all(queued);
    t.same(
      served.map((r) => r.status),
      [200, 200],
      'the waiting ones were served',
    );
    t.ok(
      served.every((r) => json<{ pid: number }>(r).pid !== pid),
      'by the replacement',
    );
    t.same(
      served.map((r) => json<{ headers: Record<string, string> }>(r).headers['x-forwarded-for']),
      ['127.0.0.1', '127.0.0.1'],
      "with the client's headers, not the first try's",
    );
  },
);

t.test(
  'SIGKILL of a worker whose loop is stuck: a GET waiting in its accept queue is served by its replacement',
  async (t) => {
    // The kernel takes the connection while the worker's loop waits; the worker dies without having read it, and the
    // connection is reset on the master's read (a worker that had read its request closes cleanly: 502). On 445e6ee
    // the GET was answered 502 worker_error, as in CI's rare failures of the test above.
    const gw = await startGateway(t, {
      versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
      // The worker is killed by the test, not for the health probes it misses while stuck.
      limits: { maxSocketsPerWorker: 2, queueTimeoutMs: 60_000, healthIntervalMs: 60_000 },
    });
    // Its first line relayed: the worker's loop stops as it sent it.
    const stuck = await new Promise<IncomingMessage>((resolve, reject) => {
      request(`${gw.url}/block`, { agent: false }, resolve).on('error', reject).end();
    });
    const cut = new Promise<void>((resolve) => stuck.resume().on('close', resolve));
    const queued = httpRequest(`${gw.url}/echo`);
    const before = await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 2, 'the GET sent to the stuck worker');
    const pid = before.v1!.workers[0]!.pid;
    process.kill(pid, 'SIGKILL');
    const served = await queued;
    t.equal(served.status, 200, 'the GET was served');
    t.not(json<{ pid: number }>(served).pid, pid, 'by the replacement');
    await cut;
  },
);

t.test('one worker socket, health probes far apart', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    // The worker is killed by the test, not for the health probes it misses once stopped.
    limits: { maxSocketsPerWorker: 1, queueTimeoutMs: 60_000, healthIntervalMs: 60_000 },
  });
  for (const [where, path] of [
    ['before its answer', '/hold'],
    ['mid-answer', '/hold?head=1'],
  ] as const) {
    t.test(
      `a worker that hung up on a request ${where}: its slot waits for a sign of life, a waiting POST goes to its replacement`,
      async (t) => {
        // A killed worker's connections close before its listening socket, and the master sees them close before its
        // exit: on 445e6ee the POST waiting for the slot a closed request freed went to the dying worker's socket, was
        // never read, and was answered 502 (a POST cannot go twice; CI's rare failure of the GET test above was this).
        // Here the worker closes its request's connection and stops, as one being killed, and is killed once that
        // request is answered.
        await readyWorker(gw);
        const since = gw.output().length;
        const first = httpRequest(`${gw.url}${path}`);
        await heldRequests(gw, 1, since);
        const queued = httpRequest(`${gw.url}/echo`, { method: 'POST', body: '{"n":1}' });
        const before = await waitForStatus(gw, (v) => v.v1!.queued === 1, 'the POST waiting for the slot');
        const pid = before.v1!.workers[0]!.pid;
        process.kill(pid, 'SIGUSR2');
        const answered = await first;
        t.equal(answered.status, path === '/hold' ? 502 : 200, 'the request it hung up on was answered');
        if (path !== '/hold') t.match(answered.body, /worker_error/, 'its stream ended with an error event');
        process.kill(pid, 'SIGKILL');
        const served = await queued;
        t.equal(served.status, 200, 'the POST was served');
        t.not(json<{ pid: number }>(served).pid, pid, 'by the replacement');
        t.equal(json<{ body: string }>(served).body, '{"n":1}', 'with its body');
      },
    );
  }
});

t.test('a version keeps serving on its other instance while one restarts', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1, instances: 2 } } });
  const before = await waitForStatus(gw, (v) => v.v1!.workers.every((w) => w.state === 'ready'), 'both ready');
  const [victim, survivor] = before.v1!.workers;
  process.kill(victim!.pid, 'SIGKILL');
  await waitForStatus(
    gw,
    (v) =>
      v.v1!.workers.some((w) => w.pid !== victim!.pid && w.instance === victim!.instance) ||
      v.v1!.workers[victim!.instance]!.state !== 'ready',
    'crash seen',
  );
  const results = await Promise.all(Array.from({ length: 10 }, () => httpRequest(`${gw.url}/slow?ms=0`)));
  t.same(
    results.map((r) => r.status),
    Array(10).fill(200),
    'no request failed',
  );
  t.ok(
    results.some((r) => json<{ pid: number }>(r).pid === survivor!.pid),
    'the survivor served',
  );
});

async function midStream(t: Test, gw: Gateway): Promise<void> {
  await readyWorker(gw);
  const body = await new Promise<string>((resolve, reject) => {
    const req = request(`${gw.url}/sse?events=100000&ms=5`, { agent: false }, (res) => {
      t.equal(res.headers['content-type'], 'text/event-stream');
      let text = '';
      let isKilled = false;
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
        if (!isKilled) {
          isKilled = true;
          process.kill((JSON.parse(/data: (\{.*?\})\n/.exec(text)![1]!) as { pid: number }).pid, 'SIGKILL');
        }
      });
      res.on('end', () => resolve(text));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  const events = body.trim().split('\n\n');
  t.match(events.at(-1), /^data: \{"error":\{"message":"[^"]+","type":"gateway_error","code":"worker_error"\}\}$/);
  t.notOk(body.includes('[DONE]'), 'no [DONE] after the error');
}

async function middleOfAnEvent(t: Test, gw: Gateway): Promise<void> {
  // An error event written after half an event is read as the rest of that event's data: the OpenAI SDK throws a
  // JSON SyntaxError and never sees the error. SPEC §4 allows a reset; the master gives one (request-end.ts).
  await readyWorker(gw);
  const { text, isComplete } = await new Promise<{ text: string; isComplete: boolean }>((resolve, reject) => {
    const req = request(`${gw.url}/sse?events=2&ms=5&cut=mid`, { agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (text += chunk));
      res.on('error', () => {}); // "aborted": the cut, read below
      res.on('close', () => resolve({ text, isComplete: res.complete }));
    });
    req.on('error', reject);
    req.end();
  });
  t.equal(text.split('\n\n').length, 3, 'the two whole events, then the half one');
  t.ok(text.endsWith('"content":"half'), 'the half event is the last thing the client got');
  t.notOk(isComplete, 'the answer was cut, not ended');
  t.notMatch(text, /"error"/, 'no error event glued onto the half event');
  const after = await scrapeUntil(gw, (s) => s.sum('graygate_requests_total', { version: 'v1' }) === 1, 'counted');
  t.equal(after.sum('graygate_request_errors_total', { version: 'v1', kind: 'stream_failed' }), 1, 'a failed stream');
}

/**
 * Resolves once the worker has logged `n` requests held (test-worker's /hold) after `since` (the output's length
 * then): it has read them.
 */
async function heldRequests(gw: Gateway, n: number, since = 0): Promise<void> {
  while (gw.output().slice(since).split('holding a request').length - 1 < n) await pollPause();
}

/** v1's one worker once it is ready: a shared gateway's test begins so (the test before killed the worker). */
async function readyWorker(gw: Gateway): Promise<WorkerRow> {
  const ready = await waitForStatus(gw, (v) => v.v1!.workers[0]?.state === 'ready', 'v1’s worker ready');
  return ready.v1!.workers[0]!;
}
