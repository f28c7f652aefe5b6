import t from 'tap';
import { SlotTable } from '../../master/slot-table.js';

// The table of IPC calls by id (worker-direct.ts): a slot reused gives a new id, and an old id names nothing.

interface Call {
  name: string;
}

t.test('ids name their entry; a freed slot is reused under a new id, and the old id finds nothing', async (t) => {
  const table = new SlotTable<Call>();
  const a = table.open();
  table.set(a, { name: 'a' });
  const b = table.open();
  table.set(b, { name: 'b' });
  t.not(a, b);
  t.same(table.get(a), { name: 'a' });
  t.same(table.get(b), { name: 'b' });
  t.equal(table.size, 2);

  table.delete(a);
  t.equal(table.get(a), undefined, 'gone at once');
  t.equal(table.size, 1);
  const c = table.open();
  t.not(c, a, 'the slot is reused, the id is not');
  table.set(c, { name: 'c' });
  t.equal(table.get(a), undefined, 'a report for the call that ended does not reach the one in its slot');
  t.same(table.get(c), { name: 'c' });
  table.set(a, { name: 'late' });
  t.same(table.get(c), { name: 'c' }, 'nor does a set');
  table.delete(a);
  t.same(table.get(c), { name: 'c' }, 'nor a delete');
  t.equal(table.size, 2);
});

t.test('an id held without a value yet finds nothing, and counts', async (t) => {
  const table = new SlotTable<Call>();
  const id = table.open();
  t.equal(table.get(id), undefined);
  t.equal(table.size, 1);
  table.set(id, { name: 'x' });
  t.same(table.get(id), { name: 'x' });
});

t.test('ids that were never given find nothing', async (t) => {
  const table = new SlotTable<Call>();
  table.set(table.open(), { name: 'x' });
  for (const id of [-1, 1, 0.5, Number.NaN, 2 ** 20, 2 ** 30, Number.MAX_SAFE_INTEGER + 2]) {
    t.equal(table.get(id), undefined, String(id));
    table.delete(id);
  }
  t.equal(table.size, 1, 'nothing deleted');
});

t.test('clear ends every entry and returns their values; the table is usable after', async (t) => {
  const table = new SlotTable<Call>();
  const ids = ['a', 'b', 'c'].map((name) => {
    const id = table.open();
    table.set(id, { name });
    return id;
  });
  table.delete(ids[1]!);
  table.open(); // held, no value
  t.same(
    table.clear().map((c) => c.name),
    ['a', 'c'],
  );
  t.equal(table.size, 0);
  for (const id of ids) t.equal(table.get(id), undefined);
  const next = table.open();
  table.set(next, { name: 'd' });
  t.same(table.get(next), { name: 'd' });
  t.equal(table.size, 1);
});

t.test("one slot used again and again (a worker's calls one at a time): every use works, ids stay small", async (t) => {
  // A review: each use added 2^22 to the slot's id, so the busiest slot (the last freed is reused first) would pass
  // Number.MAX_SAFE_INTEGER after ~2^31 calls, days of one worker's uptime, and that call would hear none of its
  // reports. Ids now cycle below 2^30.
  const table = new SlotTable<Call>();
  const ids = new Set<number>();
  let isEveryUseWorking = true;
  let largest = 0;
  let previous = -1;
  for (let i = 0; i < 3000; i++) {
    const id = table.open();
    table.set(id, { name: String(i) });
    if (table.get(id)?.name !== String(i) || id === previous) isEveryUseWorking = false;
    if (previous >= 0 && table.get(previous) !== undefined) isEveryUseWorking = false;
    ids.add(id);
    largest = Math.max(largest, id);
    table.delete(id);
    previous = id;
  }
  t.ok(isEveryUseWorking, 'each use gets its value, and the use before it finds nothing');
  t.equal(ids.size, 1024, 'a slot cycles through 1,024 ids');
  t.ok(largest < 2 ** 30, `ids stay below 2^30 (largest ${largest})`);
  t.equal(table.size, 0);
});

t.test('after clear, the ids that were in use find nothing, and new ones work', async (t) => {
  const table = new SlotTable<Call>();
  const old = [table.open(), table.open()];
  for (const id of old) table.set(id, { name: 'old' });
  table.clear();
  const fresh = [table.open(), table.open()];
  for (const id of fresh) table.set(id, { name: 'new' });
  for (const id of old) t.equal(table.get(id), undefined, `old ${id}`);
  for (const id of fresh) t.same(table.get(id), { name: 'new' }, `new ${id}`);
});

t.test('many entries coming and going: the storage grows to the most held at once', async (t) => {
  const table = new SlotTable<Call>();
  const live: number[] = [];
  const seen = new Set<number>();
  for (let i = 0; i < 10_000; i++) {
    const id = table.open();
    seen.add(id);
    table.set(id, { name: String(i) });
    live.push(id);
    if (live.length > 50) table.delete(live.shift()!);
  }
  t.equal(seen.size, 10_000, 'an id is never given twice');
  t.equal(table.size, 50);
  t.ok(
    live.every((id) => id % 2 ** 20 < 51),
    'ids name at most 51 slots',
  );
});
