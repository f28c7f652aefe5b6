import t from 'tap';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLogger } from '../../shared/log.js';
import { createRetries } from '../../master/retry.js';
import { RequestContext } from '../../master/request-context.js';
import type { VersionView } from '../../master/version.js';
import type { WorkerHandle } from '../../master/worker-handle.js';

// master/retry.ts: a request whose worker died before it got it goes again, at most as many times as its version has
// instances (two at least), whichever way its worker was found dead; then the caller answers it (502).

function context(instances: number): RequestContext {
  const ctx = new RequestContext(
    { socket: { bytesWritten: 0 } } as unknown as IncomingMessage,
    {} as ServerResponse,
    0,
  );
  ctx.group = { build: { instances } } as unknown as VersionView;
  ctx.body = Buffer.from('{}');
  ctx.budgetBytes = 2;
  return ctx;
}

/** A worker whose socket refused the request: taken out (markUnreachable). */
/** Retries whose admitAgain counts its calls. */
function counted(): { retries: ReturnType<typeof createRetries>; admitted: () => number } {
  let admitted = 0;
  const retries = createRetries({
    log: createLogger({ role: 'master', level: 'silent' }),
    admitAgain: () => void admitted++,
  });
  return { retries, admitted: () => admitted };
}

const refusing = { pid: 1, markUnreachable: () => {} } as unknown as WorkerHandle;

const cases = [
  { instances: 1, tries: 2 },
  { instances: 2, tries: 2 },
  { instances: 5, tries: 5 },
];

for (const { instances, tries } of cases) {
  t.test(`${instances} instance(s): ${tries} tries again, each way, then none`, async (t) => {
    const { retries, admitted } = counted();
    const unread = context(instances);
    const outcomes = Array.from({ length: tries + 1 }, () => retries.retryUnreadCall(unread));
    t.same(outcomes, [...Array<boolean>(tries).fill(true), false], 'IPC calls never read');
    const refused = context(instances);
    const refusals = Array.from({ length: tries + 1 }, () => retries.retryUnreached(refused, refusing, true));
    t.same(refusals, [...Array<boolean>(tries).fill(true), false], 'requests refused by dead workers');
    t.equal(admitted(), 2 * tries, 'each try admitted again');
  });
}

t.test('one bound for both ways: a call retried once, then refused, counts both', async (t) => {
  const retries = createRetries({ log: createLogger({ role: 'master', level: 'silent' }), admitAgain: () => {} });
  const ctx = context(1);
  t.ok(retries.retryUnreadCall(ctx));
  t.ok(retries.retryUnreached(ctx, refusing, true));
  t.notOk(retries.retryUnreached(ctx, refusing, true));
});

/** A worker whose socket reset the request: alive, as far as the master knows (afterSignOfLife runs at once). */
const resetting = {
  pid: 2,
  markUnreachable: () => {},
  afterSignOfLife: (run: () => void) => run(),
} as unknown as WorkerHandle;

t.test('a reset goes again once, however many instances its version has', async (t) => {
  const { retries, admitted } = counted();
  const ctx = context(5);
  t.ok(retries.retryUnreached(ctx, resetting, false), 'the first reset');
  t.notOk(retries.retryUnreached(ctx, resetting, false), 'the second');
  t.equal(admitted(), 1);
});

t.test('a request whose body went out (dropped) goes no more, refused or reset', async (t) => {
  const { retries, admitted } = counted();
  const ctx = context(5);
  ctx.body = Buffer.alloc(0);
  t.notOk(retries.retryUnreached(ctx, resetting, false), 'reset');
  t.notOk(retries.retryUnreached(ctx, refusing, true), 'refused');
  t.equal(admitted(), 0, 'nothing admitted again');
});
