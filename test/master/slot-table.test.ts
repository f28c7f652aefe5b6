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
  for (const id of [-1, 1, 0.5, Number.NaN, 2 ** 22, Number.MAX_SAFE_INTEGER + 2]) {
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
    live.every((id) => id % 2 ** 22 < 51),
    'ids name at most 51 slots',
  );
});
