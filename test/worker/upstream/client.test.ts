import t from 'tap';
import { Pool, poolRequest } from '../../../worker/upstream/client.js';

// worker/upstream/client.ts loads undici's Pool and request() by path, not
// through the package index (issue 9 part 0: start-up time). They must be the
// very objects the index exports, or an undici upgrade has moved them.

t.test("the Pool and request() loaded by path are undici's own", async (t) => {
  const undici = await import('undici');
  t.equal(Pool, undici.Pool);
  // eslint-disable-next-line @typescript-eslint/unbound-method -- compared by identity, never called unbound
  t.equal(poolRequest, undici.Dispatcher.prototype.request);
});
