import t from 'tap';
import { VersionAdmission, type AdmissionTarget, type Lease } from '../../master/admission.js';
import { GraygateError } from '../../shared/errors.js';

class FakeWorker implements AdmissionTarget {
  isAccepting = true;
  constructor(readonly name: string) {}
}

/** The gateway's two steps in one: a slot or a refusal at once, else a bounded wait. */
function acquire<W extends AdmissionTarget>(adm: VersionAdmission<W>, signal: AbortSignal): Promise<Lease<W>> {
  if (signal.aborted) return Promise.reject(signal.reason);
  const now = adm.tryAcquire();
  if (now instanceof GraygateError) return Promise.reject(now);
  if (now !== undefined) return Promise.resolve(now);
  return adm.wait(signal);
}

function make(workers: FakeWorker[], maxQueue = 2, queueTimeoutMs = 60_000, maxSocketsPerWorker = 1) {
  return new VersionAdmission<FakeWorker>({ maxSocketsPerWorker, maxQueue, queueTimeoutMs, workers: () => workers });
}

t.test('least in-flight worker with a free slot', async (t) => {
  const a = new FakeWorker('a');
  const b = new FakeWorker('b');
  const adm = make([a, b], 0, 1000, 2);
  const l1 = await acquire(adm, new AbortController().signal);
  const l2 = await acquire(adm, new AbortController().signal);
  t.same([l1.worker.name, l2.worker.name], ['a', 'b'], 'spread');
  const l3 = await acquire(adm, new AbortController().signal);
  t.equal(l3.worker.name, 'a');
  l1.release();
  l1.release(); // idempotent
  t.equal(adm.inflight(a), 1);
});

t.test(
  'a preferred worker (the one holding the connection) wins within the slack, and only with a free slot',
  async (t) => {
    const a = new FakeWorker('a');
    const b = new FakeWorker('b');
    const adm = make([a, b], 0, 1000, 10);
    const preferB = (w: FakeWorker): boolean => w === b;
    const take = (prefer?: (w: FakeWorker) => boolean, from = adm): Lease<FakeWorker> => {
      const lease = from.tryAcquire(prefer);
      if (lease === undefined || lease instanceof GraygateError) throw new Error('no slot');
      return lease;
    };
    const preferA = (w: FakeWorker): boolean => w === a;
    const picks = (prefer: (w: FakeWorker) => boolean, n: number): string =>
      Array.from({ length: n }, () => take(prefer).worker.name).join('');
    // Both idle: b, preferred, though a comes first; at 1 more than a still (slack 1); at 2 more, a.
    t.equal(picks(preferB, 3), 'bba');
    t.same([adm.inflight(a), adm.inflight(b)], [1, 2]);
    t.equal(picks(preferA, 4), 'aaab', 'a kept up to 1 more than b (2): 3, then b');
    t.same([adm.inflight(a), adm.inflight(b)], [4, 3]);
    // The least loaded at 4: slack 1 + 4/4 = 2, so b is chosen up to 6 in flight.
    t.equal(picks(preferB, 5), 'bbbba');
    t.same([adm.inflight(a), adm.inflight(b)], [5, 7]);
    // No preference: the least loaded.
    t.equal(
      picks(() => false, 2),
      'aa',
    );
    // A preferred worker that is full or draining is passed over.
    b.isAccepting = false;
    t.equal(take(preferB).worker.name, 'a', 'draining: not preferred');
    b.isAccepting = true;
    const full = make([a, b], 0, 1000, 1);
    t.equal(take(preferA, full).worker.name, 'a');
    t.equal(take(preferA, full).worker.name, 'b', 'a is full');
  },
);

t.test('full queue rejects at once with queue_full and Retry-After', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2);
  const held = await acquire(adm, new AbortController().signal);
  const q1 = acquire(adm, new AbortController().signal);
  const q2 = acquire(adm, new AbortController().signal);
  t.equal(adm.queued, 2);
  await t.rejects(acquire(adm, new AbortController().signal), { code: 'queue_full', status: 503, retryAfterS: 1 });
  held.release();
  const l1 = await q1;
  t.equal(adm.queued, 1, 'FIFO: the first waiter got the slot');
  l1.release();
  (await q2).release();
  t.equal(adm.inflight(w), 0);
});

t.test('a waiter whose client left is dropped at once', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2);
  const held = await acquire(adm, new AbortController().signal);
  const ac = new AbortController();
  const waiting = acquire(adm, ac.signal);
  ac.abort(new Error('client left'));
  await t.rejects(waiting, { message: 'client left' });
  t.equal(adm.queued, 0);
  held.release();
  t.equal(adm.inflight(w), 0, 'the freed slot was not handed to the departed waiter');
});

t.test('queue timeout', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2, 1);
  await acquire(adm, new AbortController().signal);
  await t.rejects(acquire(adm, new AbortController().signal), { code: 'queue_timeout', status: 503 });
  t.equal(adm.queued, 0);
});

t.test('no accepting worker: no_ready_worker', async (t) => {
  const w = new FakeWorker('w');
  w.isAccepting = false;
  await t.rejects(acquire(make([w], 2), new AbortController().signal), { code: 'no_ready_worker' });
});

t.test('a worker becoming ready is pumped to waiters; a draining one gets nothing new', async (t) => {
  const busy = new FakeWorker('busy');
  const fresh = new FakeWorker('fresh');
  fresh.isAccepting = false;
  const adm = make([busy, fresh], 2);
  const first = await acquire(adm, new AbortController().signal);
  t.equal(first.worker.name, 'busy');
  const waiting = acquire(adm, new AbortController().signal);
  t.equal(adm.queued, 1);
  fresh.isAccepting = true;
  adm.pump();
  t.equal((await waiting).worker.name, 'fresh');
  busy.isAccepting = false; // draining
  first.release();
  t.equal(adm.inflight(busy), 0);
  await t.rejects(acquire(make([busy], 2), new AbortController().signal), { code: 'no_ready_worker' });
});

t.test('a worker becoming ready with several free slots serves as many waiters at once', async (t) => {
  const busy = new FakeWorker('busy');
  const fresh = new FakeWorker('fresh');
  fresh.isAccepting = false;
  const adm = make([busy, fresh], 3, 60_000, 2);
  const held = [await acquire(adm, new AbortController().signal), await acquire(adm, new AbortController().signal)];
  const waiting = [acquire(adm, new AbortController().signal), acquire(adm, new AbortController().signal)];
  t.equal(adm.queued, 2);
  fresh.isAccepting = true;
  adm.pump();
  t.equal(adm.queued, 0, 'both waiters got a slot of the new worker');
  adm.refuseWaiting(new Error('left waiting')); // one the pump left behind fails here, at once
  const got = await Promise.allSettled(waiting);
  t.same(
    got.map((r) => (r.status === 'fulfilled' ? r.value.worker.name : String(r.reason))),
    ['fresh', 'fresh'],
  );
  t.equal(adm.inflight(fresh), 2);
  for (const l of held) l.release();
});

t.test('whenQueueEmpty waits for the last waiter, not the first to leave', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2);
  const held = await acquire(adm, new AbortController().signal);
  const first = acquire(adm, new AbortController().signal);
  const second = acquire(adm, new AbortController().signal);
  let isEmpty = false;
  const empty = adm.whenQueueEmpty().then(() => (isEmpty = true));
  held.release();
  const lease = await first;
  await new Promise((r) => setImmediate(r));
  t.equal(adm.queued, 1);
  t.notOk(isEmpty, 'one still waits');
  lease.release();
  (await second).release();
  await empty;
  t.equal(adm.queued, 0);
});

t.test('close refuses new requests and serves the waiting ones; whenQueueEmpty says when none waits', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2);
  const held = await acquire(adm, new AbortController().signal);
  const waiting = acquire(adm, new AbortController().signal);
  adm.close(new GraygateError('no_ready_worker', 'removed'));
  await t.rejects(acquire(adm, new AbortController().signal), { code: 'no_ready_worker', message: 'removed' });
  let isEmpty = false;
  const empty = adm.whenQueueEmpty().then(() => (isEmpty = true));
  await Promise.resolve();
  t.notOk(isEmpty, 'one still waits');
  held.release();
  t.equal((await waiting).worker, w, 'the waiting request got the slot');
  await empty;
  await adm.whenQueueEmpty();
});

t.test('whenIdle resolves when the last lease of a worker is released, or at its deadline', async (t) => {
  const w = new FakeWorker('w');
  const adm = make([w], 2, 60_000, 2);
  t.equal(await adm.whenIdle(w, 60_000), undefined, 'idle at once');
  const a = await acquire(adm, new AbortController().signal);
  const b = await acquire(adm, new AbortController().signal);
  let isIdle = false;
  const idle = adm.whenIdle(w, 60_000).then(() => (isIdle = true));
  a.release();
  await new Promise((r) => setImmediate(r));
  t.equal(isIdle, false, 'one lease still out');
  b.release();
  await idle;
  t.equal(adm.inflight(w), 0);
  const held = await acquire(adm, new AbortController().signal);
  await adm.whenIdle(w, 1); // the deadline, with the lease still out
  t.equal(adm.inflight(w), 1);
  held.release();
});

t.test(
  'whenIdle of an idle worker resolves at once, not at its deadline; with one lease out, at its release',
  async (t) => {
    // A drain waits on it: an idle worker waiting out the drain's deadline held every reload and removal that long.
    const w = new FakeWorker('w');
    const adm = make([w], 2, 60_000, 2);
    let isIdle = false;
    const idle = adm.whenIdle(w, 60_000).then(() => (isIdle = true));
    await new Promise((r) => setImmediate(r));
    t.equal(isIdle, true, 'nothing in flight: idle before the next turn');
    void idle; // resolved already (else it would wait out its deadline)
    const lease = await acquire(adm, new AbortController().signal);
    isIdle = false;
    const last = adm.whenIdle(w, 60_000).then(() => (isIdle = true));
    await new Promise((r) => setImmediate(r));
    t.equal(isIdle, false, 'one lease out: not idle');
    lease.release();
    await last;
    t.equal(adm.inflight(w), 0);
  },
);

t.test(
  'a request that never reached its worker waits first in line, past the bound, with no worker ready',
  async (t) => {
    const a = new FakeWorker('a');
    const adm = make([a], 1);
    const held = await acquire(adm, new AbortController().signal);
    const order: string[] = [];
    const waiting = acquire(adm, new AbortController().signal).then((l) => (order.push('waiting'), l));
    a.isAccepting = false; // its worker died: nothing accepts, the queue is full
    t.type(adm.tryAcquire(), GraygateError);
    const again = adm.wait(new AbortController().signal, true).then((l) => (order.push('again'), l));
    t.equal(adm.queued, 2);
    a.isAccepting = true; // the version's next worker
    held.release();
    (await again).release();
    await waiting;
    t.same(order, ['again', 'waiting']);
  },
);
