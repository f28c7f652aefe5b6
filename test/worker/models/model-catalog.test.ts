import t from 'tap';
import { ModelCatalog } from '../../../worker/models/model-catalog.js';
import type { ModelEntry } from '../../../worker/models/model-list.js';
import { GraygateError } from '../../../shared/errors.js';

// SPEC §12: upstream.model wins; the upstream's list is cached, served stale
// while renewed, and a failure with nothing cached is the upstream's error.
// The clock and the fetch are injected: no timers, no network.

const entry = (id: string): ModelEntry => ({ id, object: 'model', created: 0, owned_by: 'o' });

interface Pending {
  resolve: (models: ModelEntry[]) => void;
  reject: (err: unknown) => void;
  signal: AbortSignal;
}

function setup(configuredModel?: string): {
  catalog: ModelCatalog;
  fetches: Pending[];
  clock: { ms: number };
  errors: unknown[];
} {
  const fetches: Pending[] = [];
  const errors: unknown[] = [];
  const clock = { ms: 0 };
  const catalog = new ModelCatalog({
    configuredModel,
    ownedBy: 'graygate/v1',
    fetch: (signal) => new Promise((resolve, reject) => fetches.push({ resolve, reject, signal })),
    ttlMs: 1000,
    failureTtlMs: 100,
    fetchTimeoutMs: 60_000,
    now: () => clock.ms,
    onFetchError: (err) => errors.push(err),
  });
  return { catalog, fetches, clock, errors };
}

const signal = new AbortController().signal;

t.test('the configured model wins and the upstream is never asked', async (t) => {
  const { catalog, fetches } = setup('pinned');
  t.same(await catalog.list({ signal }), [{ id: 'pinned', object: 'model', created: 0, owned_by: 'graygate/v1' }]);
  catalog.warm();
  t.same(
    catalog.peek()?.map((m) => m.id),
    ['pinned'],
  );
  t.equal(fetches.length, 0);
  t.equal(catalog.peek(), catalog.peek(), 'one list, so its JSON is made once (models-handler.ts keys it by the list)');
});

t.test('one fetch for every waiting caller; fresh, then stale while renewed', async (t) => {
  const { catalog, fetches, clock } = setup();
  t.equal(catalog.peek(), undefined, 'nothing known yet');
  const a = catalog.list({ signal });
  const b = catalog.list({ signal });
  t.equal(fetches.length, 1, 'shared');
  fetches[0]!.resolve([entry('m1')]);
  t.same(
    (await a).map((m) => m.id),
    ['m1'],
  );
  t.same(
    (await b).map((m) => m.id),
    ['m1'],
  );
  clock.ms = 999;
  await catalog.list({ signal });
  t.equal(fetches.length, 1, 'fresh: no new fetch');
  clock.ms = 1000;
  t.same(
    (await catalog.list({ signal })).map((m) => m.id),
    ['m1'],
    'stale: served at once',
  );
  t.equal(fetches.length, 2, 'and renewed in the background');
  await catalog.list({ signal });
  t.equal(fetches.length, 2, 'one renewal at a time');
  fetches[1]!.reject(new GraygateError('upstream_unreachable'));
  await new Promise((r) => setImmediate(r));
  t.same(
    (await catalog.list({ signal })).map((m) => m.id),
    ['m1'],
    'a failed renewal keeps the last good list',
  );
  fetches[2]!.resolve([entry('m2')]);
  await new Promise((r) => setImmediate(r));
  t.same(
    catalog.peek()?.map((m) => m.id),
    ['m2'],
  );
});

t.test('with nothing cached, a failure is the answer for failureTtlMs', async (t) => {
  const { catalog, fetches, clock, errors } = setup();
  const first = catalog.list({ signal });
  fetches[0]!.reject(new GraygateError('upstream_unreachable'));
  await t.rejects(first, { code: 'upstream_unreachable' });
  await t.rejects(catalog.list({ signal }), { code: 'upstream_unreachable' });
  t.equal(fetches.length, 1, 'no new attempt yet');
  t.equal(errors.length, 1, 'reported once');
  clock.ms = 100;
  const retry = catalog.list({ signal });
  t.equal(fetches.length, 2);
  fetches[1]!.resolve([entry('m')]);
  t.same(
    (await retry).map((m) => m.id),
    ['m'],
  );
});

t.test('a caller that leaves stops waiting; close() aborts the fetch', async (t) => {
  const { catalog, fetches } = setup();
  const caller = new AbortController();
  const waiting = catalog.list({ signal: caller.signal });
  caller.abort(new Error('left'));
  await t.rejects(waiting, { message: 'left' });
  t.equal(fetches[0]!.signal.aborted, false, 'the fetch goes on for the others');
  catalog.close();
  t.equal(fetches[0]!.signal.aborted, true);
  t.equal((fetches[0]!.signal.reason as GraygateError).code, 'shutting_down');
  fetches[0]!.reject(fetches[0]!.signal.reason);
  await t.rejects(catalog.list({ signal }), { code: 'shutting_down' });
});
