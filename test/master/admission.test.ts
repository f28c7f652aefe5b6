import t from 'tap';
import { VersionAdmission, type AdmissionTarget } from '../../master/admission.js';

class FakeWorker implements AdmissionTarget {
  inflight = 0;
  isAccepting = true;
  constructor(readonly name: string) {}
}

function make(workers: FakeWorker[], maxQueue = 2, queueTimeoutMs = 60_000, maxSocketsPerWorker = 1) {
  return new VersionAdmission<FakeWorker>({ maxSocketsPerWorker, maxQueue, queueTimeoutMs, workers: () => workers });
}

t.test('least in-flight worker with a free slot', async (t) => {
  const a = new FakeWorker('a');
  const b = new FakeWorker('b');
  const adm = make([a, b], 0, 1000, 2);
  const l1 = await adm.acquire(new AbortController().signal);
  const l2 = await adm.acquire(new AbortController().signal);
  t.same([l1.worker.name, l2.worker.name], ['a', 'b'], 'spread');
  const l3 = await adm.acquire(new AbortController().signal);
  t.equal(l3.worker.name, 'a');
  l1.release();
  l1.release(); // idempotent
  t.equal(a.inflight, 1);
});

t.test('full queue rejects at once with queue_full and Retry-After', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2);
  const held = await adm.acquire(new AbortController().signal);
  const q1 = adm.acquire(new AbortController().signal);
  const q2 = adm.acquire(new AbortController().signal);
  t.equal(adm.queued, 2);
  await t.rejects(adm.acquire(new AbortController().signal), { code: 'queue_full', status: 503, retryAfterS: 1 });
  held.release();
  const l1 = await q1;
  t.equal(adm.queued, 1, 'FIFO: the first waiter got the slot');
  l1.release();
  (await q2).release();
  t.equal(w.inflight, 0);
});

t.test('a waiter whose client left is dropped at once', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2);
  const held = await adm.acquire(new AbortController().signal);
  const ac = new AbortController();
  const waiting = adm.acquire(ac.signal);
  ac.abort(new Error('client left'));
  await t.rejects(waiting, { message: 'client left' });
  t.equal(adm.queued, 0);
  held.release();
  t.equal(w.inflight, 0, 'the freed slot was not handed to the departed waiter');
});

t.test('queue timeout', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2, 1);
  await adm.acquire(new AbortController().signal);
  await t.rejects(adm.acquire(new AbortController().signal), { code: 'queue_timeout', status: 503 });
  t.equal(adm.queued, 0);
});

t.test('no accepting worker: no_ready_worker', async (t) => {
  const w = new FakeWorker('w');
  w.isAccepting = false;
  await t.rejects(make([w], 2).acquire(new AbortController().signal), { code: 'no_ready_worker' });
});

t.test('a worker becoming ready is pumped to waiters; a draining one gets nothing new', async (t) => {
  const busy = new FakeWorker('busy');
  const fresh = new FakeWorker('fresh');
  fresh.isAccepting = false;
  const adm = make([busy, fresh], 2);
  const first = await adm.acquire(new AbortController().signal);
  t.equal(first.worker.name, 'busy');
  const waiting = adm.acquire(new AbortController().signal);
  t.equal(adm.queued, 1);
  fresh.isAccepting = true;
  adm.pump();
  t.equal((await waiting).worker.name, 'fresh');
  busy.isAccepting = false; // draining
  first.release();
  t.equal(busy.inflight, 0);
  await t.rejects(make([busy], 2).acquire(new AbortController().signal), { code: 'no_ready_worker' });
});

t.test('destroy rejects every waiter', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2);
  await adm.acquire(new AbortController().signal);
  const waiting = adm.acquire(new AbortController().signal);
  adm.destroy(Object.assign(new Error('removed'), { code: 'no_ready_worker' }));
  await t.rejects(waiting, { message: 'removed' });
  await t.rejects(adm.acquire(new AbortController().signal), { code: 'no_ready_worker' });
});
