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

t.test(
  'client connections: two descriptors each, after what the workers, the admin port and the master keep',
  async (t) => {
    // Reserved: 64 of the master, 4 a worker, 64 admin connections, 32 answered past the bound; then idle sockets.
    // 1024 − 168 = 856; 856 − 2 × 64 idle = 728 → 364: each connection with a request in flight fits.
    t.equal(clientConnectionsFor(1024, 2, 64), 364);
    t.equal(clientConnectionsFor(20_000, 2, 64), 9852, 'the 20,000 of a big box: 9,000 streams on two workers fit');
    t.equal(clientConnectionsFor(1025, 1, 0), 430, 'rounded down');
    // An agent keeps no more idle sockets than the connections that opened them: 2C + 16C ≤ 800 → 44, not 1.
    t.equal(clientConnectionsFor(1024, 16, 64), 44, 'many workers: idle sockets bounded by the connections');
    t.equal(clientConnectionsFor(300, 1, 64), 45);
    t.equal(clientConnectionsFor(300, 2, 64), 33, 'a second worker lowers it');
    t.equal(clientConnectionsFor(100, 2, 64), 1, 'at least one');
  },
);

t.test('the start warns when the config and the limit disagree, and only then', async (t) => {
  const below = fileLimitWarning(1024, config([1, 1]));
  t.match(below?.message, /open-file limit below what the config admits/);
  t.same(below?.fields, { fileLimit: 1024, maxClientConnections: 364, admitted: 2048 });
  t.equal(fileLimitWarning(1_048_576, config([1, 1])), undefined, 'room for every request the workers admit');
  t.equal(
    fileLimitWarning(1024, config([1, 1], { maxClientConnections: 300 })),
    undefined,
    'a bound set below the limit is the operator’s choice',
  );
  const above = fileLimitWarning(1024, config([1, 1], { maxClientConnections: 500 }));
  t.match(above?.message, /limits\.maxClientConnections is more than the open-file limit leaves room for/);
  t.same(above?.fields, { fileLimit: 1024, maxClientConnections: 500, room: 364 });
});
