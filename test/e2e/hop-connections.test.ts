import t from 'tap';
import { admin, startGateway, TEST_WORKER_ENTRY, type Gateway, type Teardown } from '../helpers/gateway.js';
import { openRaw, type RawConnection } from '../helpers/raw-http.js';
import { untilOutputHas } from '../helpers/output.js';
import { scrape } from '../helpers/metrics.js';
import { pollPause, status, waitForStatus } from '../helpers/wait.js';
import { hasPrlimit } from '../helpers/file-limit.js';
import type { StatusBody } from '../../master/admin/status.js';
import type { ClientConnectionsStatus } from '../../master/client-connections.js';

// limits.maxClientConnections (nginx worker_connections): the main port holds a bounded number of connections, by
// default what the master's open-file limit leaves with every one of them in a request. Unbounded, connections a
// client opened and held (silent ones live headTimeoutMs, 60 s) took every descriptor of the master: past them libuv
// reset connections without a line, and a crashed worker could not be forked again (`spawn EMFILE`).

const REQUEST = 'GET /hello HTTP/1.1\r\nHost: gw\r\n\r\n';

async function connections(gw: Gateway): Promise<ClientConnectionsStatus | undefined> {
  return (await admin<StatusBody>(gw, 'GET', '/admin/status')).body.clientConnections;
}

/** Polls /admin/status until the main port's connections are as `condition` wants them. */
async function untilConnections(
  gw: Gateway,
  condition: (c: ClientConnectionsStatus) => boolean,
  what: string,
): Promise<ClientConnectionsStatus> {
  for (let i = 0; i < 3000; i++) {
    const now = await connections(gw);
    if (now !== undefined && condition(now)) return now;
    await pollPause();
  }
  throw new Error(`${what}: never so`);
}

const untilOpen = (gw: Gateway, open: number): Promise<ClientConnectionsStatus> =>
  untilConnections(gw, (c) => c.open === open, `${open} connections open`);

/** A connection with one request answered: accepted and counted by the master. */
async function served(t: Teardown, gw: Gateway): Promise<RawConnection> {
  const conn = await openRaw(gw.url);
  t.teardown(() => conn.socket.destroy());
  conn.write(REQUEST);
  await conn.waitFor(1);
  return conn;
}

t.test('connections past limits.maxClientConnections are closed as they come; the held ones are served', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { maxClientConnections: 3 },
  });
  const held = [await served(t, gw), await served(t, gw)];
  const silent = await openRaw(gw.url); // sends nothing: it counts as well
  t.teardown(() => silent.socket.destroy());
  t.same(await untilOpen(gw, 3), { open: 3, max: 3, dropped: 0 }, 'in /admin/status');

  const past = await openRaw(gw.url);
  t.teardown(() => past.socket.destroy());
  past.write(REQUEST);
  await past.closed;
  t.same(past.responses, [], 'closed as it was accepted, nothing read');
  await untilOutputHas(gw, 'client connections at limits.maxClientConnections');
  t.match(await connections(gw), { open: 3, max: 3, dropped: 1 });
  const metrics = await scrape(gw);
  t.equal(metrics.sum('graygate_client_connections_dropped_total'), 1);
  t.equal(metrics.sum('graygate_client_connections'), 3);

  held[0]!.write(REQUEST);
  t.equal((await held[0]!.waitFor(2))[1]!.status, 200, 'a held connection is served');
  t.equal(Object.keys(await status(gw)).length, 1, 'and the admin port');

  held[1]!.socket.destroy();
  await untilOpen(gw, 2);
  const next = await served(t, gw);
  t.equal(next.responses[0]!.status, 200, 'a closed one makes room');
});

t.test(
  'by default the bound is what the open-file limit leaves: a crashed worker starts again with every connection held',
  { skip: hasPrlimit() ? false : 'needs util-linux prlimit, to start the master under a low file limit' },
  async (t) => {
    // 300 descriptors, one worker keeping up to 64 idle sockets: (300 − 64 − 64) ÷ 2 = 86 connections.
    const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } }, { fileLimit: 300 });
    t.match(await connections(gw), { max: 86, open: 0 });
    // A client opens 300 connections: 43 with a request answered (their worker sockets kept idle), the rest silent,
    // as a slowloris holds them. Unbounded, they took every descriptor the master had.
    const answered = await Promise.all(Array.from({ length: 43 }, () => served(t, gw)));
    t.ok(answered.every((c) => c.responses[0]!.status === 200));
    for (let i = 43; i < 300; i++) {
      const conn = await openRaw(gw.url);
      t.teardown(() => conn.socket.destroy());
    }
    const held = await untilConnections(gw, (c) => c.open + c.dropped === 300, 'all 300 accepted or closed');
    t.same(held, { open: 86, max: 86, dropped: 214 }, 'the 86 it has room for held, the rest closed');
    const before = await status(gw);
    const pid = before.v1!.workers[0]!.pid;
    process.kill(pid, 'SIGKILL');
    const after = await waitForStatus(
      gw,
      (v) => v.v1!.workers.some((w) => w.pid !== pid && w.state === 'ready'),
      'v1 restarted',
    );
    t.ok(
      after.v1!.workers.some((w) => w.state === 'ready'),
      'forked again with 86 connections held',
    );
    t.notMatch(gw.output(), /EMFILE/, 'no descriptor ran out');
    answered[0]!.write(REQUEST);
    t.equal((await answered[0]!.waitFor(2))[1]!.status, 200, 'and the new worker serves them');
  },
);
