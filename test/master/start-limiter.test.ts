import t from 'tap';
import { StartLimiter } from '../../master/start-limiter.js';
import { ByteBudget } from '../../shared/byte-budget.js';

t.test('StartLimiter: at most `slots` at once, FIFO, release idempotent', async (t) => {
  const limiter = new StartLimiter(2);
  const order: number[] = [];
  const a = await limiter.acquire();
  const b = await limiter.acquire();
  const c = limiter.acquire().then((release) => (order.push(3), release));
  const d = limiter.acquire().then((release) => (order.push(4), release));
  t.equal(limiter.waiting, 2);
  a();
  a(); // twice: frees one slot only
  const releaseC = await c;
  t.same(order, [3]);
  t.equal(limiter.waiting, 1);
  b();
  const releaseD = await d;
  t.same(order, [3, 4]);
  releaseC();
  releaseD();
  t.equal(limiter.waiting, 0);
});

t.test('ByteBudget: reserve within the limit, release', async (t) => {
  const budget = new ByteBudget(100);
  t.ok(budget.tryReserve(60));
  t.notOk(budget.tryReserve(50), 'over the limit: nothing taken');
  t.equal(budget.heldBytes, 60);
  t.ok(budget.tryReserve(40));
  budget.release(100);
  t.equal(budget.heldBytes, 0);
  budget.release(5);
  t.equal(budget.heldBytes, 0, 'never negative');
});

t.test('ByteBudget: the limit itself fits, one byte more does not', async (t) => {
  const budget = new ByteBudget(10);
  t.ok(budget.tryReserve(10), 'exactly the limit');
  t.notOk(budget.tryReserve(1), 'one byte over');
  t.equal(budget.heldBytes, 10);
});
