import t from 'tap';
import { LoopSlice } from '../../master/loop-slice.js';
import { watchShift } from '../helpers/array-shift.js';

// The per-turn slice of request starts (issue 10), with an injected clock.

t.test('runs at once within the slice; beyond it, defers to later turns, urgent ones first', async (t) => {
  let now = 0;
  const ran: string[] = [];
  const slice = new LoopSlice<string>({ sliceMs: 5, now: () => now }, (item) => {
    ran.push(item);
    now += 2; // each start costs 2 ms
  });
  slice.submit('a', false); // opens the slice at 0
  slice.submit('b', false); // 2 ms in: room
  slice.submit('c', false); // 4 ms in: room
  slice.submit('d', false); // 6 ms in: deferred
  slice.submit('e', false);
  slice.submit('first-of-a-new-connection', true);
  t.same(ran, ['a', 'b', 'c']);
  t.equal(slice.deferred, 3);
  await new Promise((r) => setImmediate(r));
  t.same(ran.slice(3), ['first-of-a-new-connection', 'd', 'e'].slice(0, ran.length - 3), 'urgent first, then in order');
  while (slice.deferred > 0) await new Promise((r) => setImmediate(r));
  t.same(ran, ['a', 'b', 'c', 'first-of-a-new-connection', 'd', 'e']);
});

t.test(
  'deferred work is taken by index: first requests of new connections in the order they came, no array copied',
  async (t) => {
    // A complexity probe: shift() and unshift() copied what waited at each start, ~3× the time per doubling past 20,000
    // deferred in one turn. Counted, not timed: the longest array shift() was called on.
    let now = 0;
    const ran: string[] = [];
    const slice = new LoopSlice<string>({ sliceMs: 5, now: () => now }, (item) => {
      ran.push(item);
      now += 1;
    });
    const shift = watchShift(t);
    const unshift = Array.prototype.unshift;
    let unshifts = 0;
    Array.prototype.unshift = function (this: unknown[], ...items: unknown[]): number {
      unshifts++;
      return unshift.apply(this, items);
    };
    t.teardown(() => void (Array.prototype.unshift = unshift));
    slice.submit('opens', false);
    now += 100; // this turn's slice is spent: everything below waits
    for (let i = 0; i < 20_000; i++) slice.submit(`r${i}`, false);
    slice.submit('new-1', true);
    slice.submit('new-2', true);
    for (let i = 20_000; i < 40_000; i++) slice.submit(`r${i}`, false);
    while (slice.deferred > 0) await new Promise((r) => setImmediate(r));
    t.ok(shift.stop() < 1000, 'no shift() on the queues (of 20,000 and more before)');
    Array.prototype.unshift = unshift;
    t.equal(unshifts, 0, 'nor unshift()');
    t.equal(ran.length, 40_003);
    t.same(ran.slice(0, 3), ['opens', 'new-1', 'new-2'], 'first requests first, in the order they came');
    t.same(ran.slice(-2), ['r39998', 'r39999'], 'the rest in order');
  },
);

t.test('nothing waits: a new turn opens a new slice', async (t) => {
  let now = 0;
  const ran: number[] = [];
  const slice = new LoopSlice<number>({ sliceMs: 5, now: () => now }, (n) => ran.push(n));
  slice.submit(1, false);
  now = 100; // same turn, over the slice
  slice.submit(2, false);
  t.same(ran, [1], 'deferred');
  await new Promise((r) => setImmediate(r));
  await new Promise((r) => setImmediate(r));
  t.same(ran, [1, 2]);
  slice.submit(3, false);
  t.same(ran, [1, 2, 3], 'a later turn has room again');
});
