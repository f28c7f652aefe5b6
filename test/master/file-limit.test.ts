import t from 'tap';
import { clientConnectionsFor, fileLimitWarning, openFileLimit } from '../../master/file-limit.js';
import type { Config } from '../../shared/config.js';

// The master's open-file limit (master/file-limit.ts): the client connections it leaves room for, and the start's
// warn line when the config and the limit disagree.

const LIMITS_TEXT = [
  'Limit                     Soft Limit           Hard Limit           Units',
  'Max processes             63704                63704                processes',
  'Max open files            1024                 524288               files',
].join('\n');

function config(instances: number[], limits: Partial<Config['limits']> = {}): Pick<Config, 'versions' | 'limits'> {
  const versions = Object.fromEntries(instances.map((n, i) => [`v${i + 1}`, { instances: n }]));
  return {
    versions: versions as unknown as Config['versions'],
    limits: { maxSocketsPerWorker: 1024, maxIdleSocketsPerWorker: 64, ...limits } as Config['limits'],
  };
}

t.test('the soft limit is read from /proc/self/limits', async (t) => {
  t.equal(openFileLimit(LIMITS_TEXT), 1024);
  t.equal(openFileLimit(LIMITS_TEXT.replace('1024 ', 'unlimited ')), undefined, 'unlimited: no bound to keep');
  t.equal(openFileLimit(''), undefined, 'nothing to read: none');
});

t.test('client connections: two descriptors each, after the idle worker sockets and 64 of the master', async (t) => {
  // 1024 − 64 − 2 × 64 = 832 → 416: each connection with a request in flight (client's + worker's) fits, with the
  // idle sockets kept to both workers and the master's own.
  t.equal(clientConnectionsFor(1024, config([1, 1])), 416);
  t.equal(clientConnectionsFor(20_000, config([1, 1])), 9904, 'the 20,000 of a big box: 9,000 streams fit');
  t.equal(clientConnectionsFor(1025, config([1], { maxIdleSocketsPerWorker: 0 })), 480, 'rounded down');
  t.equal(clientConnectionsFor(100, config([1, 1])), 1, 'at least one');
});

t.test('the start warns when the config and the limit disagree, and only then', async (t) => {
  const below = fileLimitWarning(1024, config([1, 1]));
  t.match(below?.message, /open-file limit below what the config admits/);
  t.same(below?.fields, { fileLimit: 1024, wanted: 2 * 1024 * 2 + 64, maxClientConnections: 416 });
  t.equal(fileLimitWarning(1_048_576, config([1, 1])), undefined, 'room for every request the workers admit');
  t.equal(
    fileLimitWarning(1024, config([1, 1], { maxClientConnections: 300 })),
    undefined,
    'a bound set below the limit is the operator’s choice',
  );
  const above = fileLimitWarning(1024, config([1, 1], { maxClientConnections: 500 }));
  t.match(above?.message, /limits\.maxClientConnections is more than the open-file limit leaves room for/);
  t.same(above?.fields, { fileLimit: 1024, maxClientConnections: 500, room: 416 });
});
