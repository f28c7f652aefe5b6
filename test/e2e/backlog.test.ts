import t from 'tap';
import { startGateway, TEST_WORKER_ENTRY, admin, requestGate } from '../helpers/gateway.js';
import { pollPause, waitForStatus } from '../helpers/wait.js';
import { httpRequest, json } from '../helpers/http.js';

// The keep-alive-agent backlog incident (issue 2): one socket to a worker
// that answers only once every client is in, a queue of 8, 60 concurrent clients.
// At most 1 + 8 requests may be with or queued for the worker; the rest get 503
// queue_full at once; afterwards the gateway serves normally.

t.test('60 concurrent clients against a 1-socket, 8-queue version', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { maxSocketsPerWorker: 1, maxQueuePerVersion: 8, queueTimeoutMs: 60_000 },
  });
  // Nothing is served until all 60 are admitted or refused: a client arriving late finds no room another left.
  const gate = requestGate(t);

  // Watch the master's own counters while the flood runs: in-flight + queued ≤ 9.
  let peakHeld = 0;
  let isWatching = true;
  const watcher = (async () => {
    while (isWatching) {
      const { body } = await admin<{ versions: { v1: { queued: number; workers: Array<{ inflight: number }> } } }>(
        gw,
        'GET',
        '/admin/status',
      );
      const v1 = body.versions.v1;
      peakHeld = Math.max(peakHeld, v1.queued + v1.workers.reduce((n, w) => n + w.inflight, 0));
      await pollPause();
    }
  })();

  let refused = 0;
  const requests = Array.from({ length: 60 }, () =>
    httpRequest(gw.url + gate.path).then((r) => {
      if (r.status === 503) refused++;
      return r;
    }),
  );
  await waitForStatus(
    gw,
    (v) => refused + v.v1!.queued + v.v1!.workers.reduce((n, w) => n + w.inflight, 0) === 60,
    'every client admitted or refused',
  );
  gate.release();
  const results = await Promise.all(requests);
  isWatching = false;
  await watcher;

  const ok = results.filter((r) => r.status === 200);
  const full = results.filter((r) => r.status === 503);
  t.equal(ok.length + full.length, 60, 'every client got an answer');
  t.equal(ok.length, 9, '1 in flight + 8 queued were served');
  t.equal(full.length, 51, 'the rest were refused');
  for (const r of full) {
    t.same(json(r), {
      error: {
        message: 'the version is at capacity and its queue is full',
        type: 'overloaded_error',
        code: 'queue_full',
      },
    });
    t.equal(r.headers['retry-after'], '1');
  }
  t.ok(peakHeld <= 9, `master held at most ${peakHeld} requests for the worker`);

  const stats = json<{ peakActive: number; total: number }>(await httpRequest(`${gw.url}/stats`));
  t.equal(stats.peakActive, 1, 'the worker never saw more than one request at a time');
  t.equal(stats.total, 9, 'the worker saw only the admitted requests');

  const after = await httpRequest(`${gw.url}/slow?ms=0`);
  t.equal(after.status, 200, 'a new request succeeds once the flood is over');
});

t.test('a request queued past queueTimeoutMs is answered 503 queue_timeout and never reaches the worker', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { maxSocketsPerWorker: 1, maxQueuePerVersion: 4, queueTimeoutMs: 200 },
  });
  // The only slot, held until the test lets it go: however slow the machine, the queued request times out.
  const gate = requestGate(t);
  const holder = httpRequest(gw.url + gate.path);
  await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 1, 'the slot is held');
  const timedOut = await httpRequest(`${gw.url}/slow?ms=0`);
  t.equal(timedOut.status, 503);
  t.equal(json<{ error: { code: string } }>(timedOut).error.code, 'queue_timeout');
  t.equal(timedOut.headers['retry-after'], '1');
  gate.release();
  t.equal((await holder).status, 200);
  // The slot free again: /stats is not queued behind it (and timed out).
  await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 0, 'the holder ended');
  const stats = json<{ total: number }>(await httpRequest(`${gw.url}/stats`));
  t.equal(stats.total, 1, 'only the holder reached the worker');
});

t.test('a queued client that leaves is dropped from the queue at once and never reaches the worker', async (t) => {
  // A queue timeout far longer than the test: only the client's leaving ends its wait.
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { maxSocketsPerWorker: 1, maxQueuePerVersion: 4, queueTimeoutMs: 600_000 },
  });
  const gate = requestGate(t);
  const holder = httpRequest(gw.url + gate.path);
  await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 1, 'the slot is held');
  const controller = new AbortController();
  const leaving = fetch(`${gw.url}/slow?ms=0&leaver=1`, { signal: controller.signal }).catch(() => 'aborted');
  await waitForStatus(gw, (v) => v.v1!.queued === 1, 'the leaver is queued');
  controller.abort();
  t.equal(await leaving, 'aborted');
  await waitForStatus(gw, (v) => v.v1!.queued === 0, 'the leaver left the queue');
  gate.release();
  t.equal((await holder).status, 200);
  await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 0, 'the holder ended');
  const stats = json<{ total: number }>(await httpRequest(`${gw.url}/stats`));
  t.equal(stats.total, 1, 'only the holder reached the worker; the departed request did not');
});
