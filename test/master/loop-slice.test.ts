import t from 'tap';
import { LoopSlice } from '../../master/loop-slice.js';

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
