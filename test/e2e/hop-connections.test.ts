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
// default what the master's open-file limit leaves with every one of them in a request, after what its workers (alive
// now), the admin port and the master keep. Unbounded, connections a client opened and held (silent ones live
// headTimeoutMs, 60 s) took every descriptor of the master: past them libuv reset connections without a line, and a
// crashed worker could not be forked again (`spawn EMFILE`). At the bound a new connection takes the place of the
// oldest with no request in hand (nginx's draining of reusable connections); when none has, a few more are answered 503
// (health paths 200), then Node closes new ones as it accepts them.

const REQUEST = 'GET /hello HTTP/1.1\r\nHost: gw\r\n\r\n';
/** A head being sent (its last line to come): a connection in it is never closed for another. */
const HALF_HEAD = 'GET /hello HTTP/1.1\r\nHost: gw\r\n';
const NO_PRLIMIT = 'needs util-linux prlimit, to start the master under a low file limit';
const OTHER_LOOPBACK = 'needs 127.0.0.2 and 127.0.0.3 as other clients (Linux: all of 127.0.0.0/8 is loopback)';

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

/** A connection with one request written, and its answer. */
async function served(t: Teardown, gw: Gateway, request = REQUEST): Promise<RawConnection> {
  const conn = await openRaw(gw.url);
  t.teardown(() => conn.socket.destroy());
  conn.write(request);
  await conn.waitFor(1);
  return conn;
}

/**
 * A request served on a new connection in the place of one within the bound, once one has been quiet long enough to be
 * closed for it (client-connections.ts MIN_QUIET_MS, 1 s): a connection before that is past the bound (503, or closed
 * as accepted), and the next is tried. Bounded.
 */
async function servedInPlace(t: Teardown, gw: Gateway, request = REQUEST): Promise<RawConnection> {
  for (let i = 0; i < 1000; i++) {
    const conn = await openRaw(gw.url);
    t.teardown(() => conn.socket.destroy());
    conn.write(request);
    const [response] = await conn.waitFor(1).catch(() => []);
    if (response?.status === 200) return conn;
    conn.socket.destroy();
    await pollPause();
  }
  throw new Error('no connection was ever served in the place of a quiet one');
}

t.test(
  'past limits.maxClientConnections: 503 too_many_connections, health answered, 5 s at most, then closed as accepted',
  async (t) => {
    const gw = await startGateway(t, {
      versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
      limits: { maxClientConnections: 3 },
    });
    // Three sending their heads: none of them can be closed for a new one.
    const held: RawConnection[] = [];
    for (let i = 0; i < 3; i++) {
      const conn = await openRaw(gw.url);
      t.teardown(() => conn.socket.destroy());
      conn.write(HALF_HEAD);
      held.push(conn);
    }
    t.same(
      await untilConnections(gw, (c) => c.open === 3, '3 open'),
      { open: 3, max: 3, pastBound: 0, dropped: 0, closedIdle: 0, refusedPerAddress: 0 },
      'in /admin/status',
    );

    const past = await served(t, gw);
    await past.closed;
    const [refusal] = past.responses;
    t.equal(refusal!.status, 503);
    t.equal(refusal!.headers['connection'], 'close');
    t.equal(refusal!.headers['retry-after'], '1');
    t.equal((JSON.parse(refusal!.body) as { error: { code: string } }).error.code, 'too_many_connections');
    const probe = await served(t, gw, 'GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n');
    t.equal(probe.responses[0]!.status, 200, 'a health probe past the bound is answered');
    t.equal(probe.responses[0]!.headers['connection'], 'close');
    await probe.closed;
    await untilOutputHas(gw, 'client connections at limits.maxClientConnections');
    // A review: a CORS refusal (403) or a preflight (204) was answered before the check and kept the connection alive
    // for keepAliveTimeoutMs; a preflight every 1.5 s held one for good.
    for (const head of [
      'GET /hello HTTP/1.1\r\nHost: gw\r\nOrigin: https://evil.example\r\n\r\n',
      'OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nOrigin: https://evil.example\r\n' +
        'Access-Control-Request-Method: POST\r\n\r\n',
    ]) {
      const conn = await served(t, gw, head);
      await conn.closed;
      t.match(conn.responses, [{ status: 503, headers: { connection: 'close' } }], head.slice(0, head.indexOf(' ')));
    }

    // Connections past the bound do not count against it (a review: three held ones shut every client out).
    const pastOne = await openRaw(gw.url);
    t.teardown(() => pastOne.socket.destroy());
    await untilConnections(gw, (c) => c.pastBound === 5, 'one more accepted past the bound');
    held[1]!.socket.destroy();
    await untilConnections(gw, (c) => c.open <= 3, 'a held one closed');
    const next = await served(t, gw, HALF_HEAD + '\r\n');
    t.equal(next.responses[0]!.status, 200, 'a closed one makes room, whatever is open past the bound');
    next.write(HALF_HEAD); // in a head again
    await connections(gw); // the master has read it: bytes sent before a later request are read by its answer

    // 32 are accepted past the bound: past them, one is closed as it is accepted.
    const burst = await Promise.all(Array.from({ length: 40 }, () => openRaw(gw.url)));
    for (const conn of burst) t.teardown(() => conn.socket.destroy());
    const after = await untilConnections(
      gw,
      (c) => c.dropped > 0 && c.pastBound + c.dropped === 5 + 40,
      'the burst accepted past the bound or closed',
    );
    t.equal(after.closedIdle, 0, 'none closed for another: each was in a head');
    t.ok(after.pastBound > 5, `accepted past the bound: ${after.pastBound}, each counted once`);
    for (const conn of burst) conn.socket.destroy();
    const metrics = await scrape(gw);
    t.equal(metrics.sum('graygate_client_connections_dropped_total'), after.dropped);
    t.equal(metrics.sum('graygate_client_connections_past_bound_total'), after.pastBound);
    t.ok(metrics.sum('graygate_client_connections') >= 3);
    held[0]!.write('\r\n');
    t.equal((await held[0]!.waitFor(1))[0]!.status, 200, 'and are served');

    // The admin port holds 64 (reserved beside the main port's): the 65th is closed as accepted, in order.
    const adminHeld: RawConnection[] = [];
    for (let i = 0; i < 64; i++) {
      const conn = await openRaw(gw.adminUrl);
      t.teardown(() => conn.socket.destroy());
      adminHeld.push(conn);
    }
    const adminPast = await openRaw(gw.adminUrl);
    t.teardown(() => adminPast.socket.destroy());
    adminPast.write('GET /admin/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    await adminPast.closed;
    t.same(adminPast.responses, [], 'the admin port’s 65th connection is closed');
    adminHeld[0]!.write('GET /admin/status HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n');
    t.equal((await adminHeld[0]!.waitFor(1))[0]!.status, 200, 'its 64 are served');

    // The silent one past the bound is closed by the master, 5 s after its accept whatever it sends.
    await pastOne.closed;
    t.same(pastOne.responses, [], 'a silent connection past the bound is closed with nothing');
  },
);

t.test(
  'at the bound a new connection takes the place of the one quiet longest: silent ones shut nobody out',
  async (t) => {
    // A file-limit probe: a few hundred connections that sent nothing, reopened as they closed, had every new client
    // reset, health probes included (past the bound and the 32 answered past it, Node closes as it accepts). nginx
    // closes its longest idle connections when short of them; so does the master, once they have been quiet a second.
    const gw = await startGateway(t, {
      versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
      limits: { maxClientConnections: 3 },
    });
    const idle = await served(t, gw); // answered, idle between requests: quiet since its answer
    await connections(gw);
    const silent = await openRaw(gw.url); // quiet since accepted, after the answer above
    t.teardown(() => silent.socket.destroy());
    const heading = await openRaw(gw.url);
    t.teardown(() => heading.socket.destroy());
    heading.write(HALF_HEAD);
    await untilConnections(gw, (c) => c.open === 3, '3 open');

    await servedInPlace(t, gw);
    await idle.closed;
    t.pass('in the place of the one quiet longest');
    await servedInPlace(t, gw);
    await silent.closed;
    t.pass('then of the next');

    // A flood of silent connections: a client and a health probe still get in.
    const flood = await Promise.all(Array.from({ length: 60 }, () => openRaw(gw.url).catch(() => undefined)));
    for (const conn of flood) t.teardown(() => conn?.socket.destroy());
    await servedInPlace(t, gw);
    t.pass('a client gets in');
    await servedInPlace(t, gw, 'GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n');
    t.pass('so does a health probe');
    heading.write('\r\n');
    t.equal((await heading.waitFor(1))[0]!.status, 200, 'the one sending its head was never closed for another');
    const after = await connections(gw);
    t.ok(after!.closedIdle >= 4, `closed for others: ${after!.closedIdle}`);
    t.equal((await scrape(gw)).sum('graygate_client_connections_closed_idle_total'), after!.closedIdle);
  },
);

t.test(
  'limits.maxClientConnectionsPerAddress: a client reopening silent connections faster than the bound a second ' +
    'shuts no other client out',
  { skip: process.platform === 'linux' ? false : OTHER_LOOPBACK },
  async (t) => {
    // Two reviewers: past the bound a quiet connection is closed for a new one only after a second, so one client
    // opening more than the bound a second held every place (HAProxy's src_conn_cur is the remedy; nginx's limit_conn
    // counts only connections in a request). On Linux every 127.x.y.z is loopback: 127.0.0.2 is another client.
    const gw = await startGateway(t, {
      versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
      limits: { maxClientConnections: 6, maxClientConnectionsPerAddress: 3 },
    });
    const silent = await Promise.all(Array.from({ length: 3 }, () => openRaw(gw.url)));
    for (const conn of silent) t.teardown(() => conn.socket.destroy());
    await untilConnections(gw, (c) => c.open === 3, '3 open');
    const flood = await Promise.all(Array.from({ length: 40 }, () => openRaw(gw.url)));
    for (const conn of flood) t.teardown(() => conn.socket.destroy());
    await Promise.all(flood.map((conn) => conn.closed));
    t.ok(
      flood.every((conn) => conn.responses.length === 0),
      'each past its share is closed as accepted, with nothing',
    );

    for (const [from, request] of [
      ['127.0.0.2', REQUEST],
      ['127.0.0.3', 'GET /healthz HTTP/1.1\r\nHost: gw\r\n\r\n'],
    ] as const) {
      const conn = await openRaw(gw.url, [], from);
      t.teardown(() => conn.socket.destroy());
      conn.write(request);
      t.equal((await conn.waitFor(1))[0]!.status, 200, `${from} is served at once, in a place of its own`);
    }
    const after = await connections(gw);
    t.match(after, { open: 5, refusedPerAddress: 40, closedIdle: 0, pastBound: 0, dropped: 0 });
    t.equal((await scrape(gw)).sum('graygate_client_connections_refused_per_address_total'), 40);
    await untilOutputHas(gw, '"refusedPerAddress":1,'); // the first refusal's line, at once (the rest's in 10 s)

    silent[0]!.socket.destroy();
    await untilConnections(gw, (c) => c.open === 4, 'one of its three closed');
    const next = await served(t, gw);
    t.equal(next.responses[0]!.status, 200, 'the client has its share again');
  },
);

t.test(
  'by default the bound is what the open-file limit leaves: a crashed worker starts again with every connection held',
  { skip: hasPrlimit() ? false : NO_PRLIMIT },
  async (t) => {
    // 300 descriptors, one worker: 300 − 64 − 4 − 64 admin − 32 past the bound = 136; 2C + min(64, C) ≤ 136 → 45.
    const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } }, { fileLimit: 300 });
    t.match(await connections(gw), { max: 45, open: 0 });
    // A client opens 300 connections: 43 with a request answered (their worker sockets kept idle), the rest silent.
    // Unbounded, they took every descriptor the master had; bounded, each past the 45th takes the place of one quiet
    // for a second or more, or is past the bound.
    const answered = await Promise.all(Array.from({ length: 43 }, () => served(t, gw)));
    t.ok(answered.every((c) => c.responses[0]!.status === 200));
    for (let i = 43; i < 300; i++) {
      const conn = await openRaw(gw.url);
      t.teardown(() => conn.socket.destroy());
    }
    const held = await untilConnections(
      gw,
      (c) => c.closedIdle + c.pastBound + c.dropped === 255,
      'each past the 45th in the place of a quiet one, past the bound, or closed',
    );
    t.ok(held.max === 45 && held.open >= 45, '45 within the bound held');

    const pid = (await status(gw)).v1!.workers[0]!.pid;
    process.kill(pid, 'SIGKILL');
    await waitForStatus(gw, (v) => v.v1!.workers.some((w) => w.pid !== pid && w.state === 'ready'), 'v1 restarted');
    t.pass('forked again with 45 connections held');
    t.notMatch(gw.output(), /EMFILE/, 'no descriptor ran out');
    await servedInPlace(t, gw);
    t.pass('and the new worker serves a new one, in the place of a quiet one');
  },
);

t.test(
  'the bound follows the workers alive: a version added lowers it, its idle sockets fit, removed it is back',
  { skip: hasPrlimit() ? false : NO_PRLIMIT },
  async (t) => {
    // A review's repro: the bound was computed once at start, and versions added later brought idle sockets nobody
    // reserved: 300 descriptors, two versions added, their pools filled, then 86 requests: 2 × 502 `connect EMFILE`,
    // 15 resets.
    const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } }, { fileLimit: 300 });
    t.match(await connections(gw), { max: 45 });
    const added = await admin(gw, 'POST', '/admin/versions', { name: 'v2', entry: TEST_WORKER_ENTRY, weight: 0 });
    t.equal(added.status, 201);
    t.match(await connections(gw), { max: 33 }, 'two workers: 2C + 2 × min(64, C) ≤ 132');

    // 33 connections whose requests ran on v2 at once (its agent keeps their sockets), then each one on v1.
    const conns = await Promise.all(
      Array.from({ length: 33 }, () => served(t, gw, 'GET /slow?ms=300&version=v2 HTTP/1.1\r\nHost: gw\r\n\r\n')),
    );
    t.ok(
      conns.every((c) => c.responses[0]!.status === 200),
      'v2 served 33 at once',
    );
    for (const c of conns) c.write('GET /slow?ms=300&version=v1 HTTP/1.1\r\nHost: gw\r\n\r\n');
    const second = await Promise.all(conns.map(async (c) => (await c.waitFor(2))[1]!.status));
    t.same(new Set(second), new Set([200]), 'v1 served 33 at once');
    await servedInPlace(t, gw);
    t.ok((await connections(gw))!.closedIdle >= 1, 'the 34th connection takes the place of a quiet one');
    t.notMatch(gw.output(), /EMFILE/, 'no descriptor ran out');

    t.equal((await admin(gw, 'DELETE', '/admin/versions/v2')).status, 200);
    await untilConnections(gw, (c) => c.max === 45, 'the bound back to one worker’s');
    t.pass('removed, the bound is back');

    // A review: workers of a failed deploy still waiting for a start slot never exited, and each such deploy lowered
    // the bound for good (886 → 784 → 682 under 2,000 descriptors).
    const failed = await admin(gw, 'POST', '/admin/versions/v1/deploy', {
      instances: 6,
      env: { TEST_WORKER_START: 'crash' },
    });
    t.equal(failed.status, 500, 'a build that crashes at start');
    await untilConnections(gw, (c) => c.max === 45, 'the bound back after a failed deploy of six');
    t.pass('a failed deploy leaves the bound as it was');
  },
);

t.test(
  'past limits.maxClientConnections, an allowed origin gets its CORS headers on the 503, its preflight a 204',
  async (t) => {
    // A browser probe: without Access-Control-Allow-Origin the page's script saw no 503 and no Retry-After, only
    // "TypeError: Failed to fetch" (its preflight cached from an earlier call), exactly when it should back off.
    const gw = await startGateway(t, {
      versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
      limits: { maxClientConnections: 1 },
      cors: { origins: ['https://app.example'] },
    });
    const held = await openRaw(gw.url);
    t.teardown(() => held.socket.destroy());
    held.write(HALF_HEAD);
    await untilConnections(gw, (c) => c.open === 1, '1 open');
    const allowed = await served(t, gw, 'POST /echo HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example\r\n\r\n');
    await allowed.closed;
    t.match(allowed.responses, [{ status: 503, headers: { 'retry-after': '1', vary: 'Origin' } }]);
    t.equal(allowed.responses[0]!.headers['access-control-allow-origin'], 'https://app.example');
    t.match(String(allowed.responses[0]!.headers['access-control-expose-headers']), /retry-after/);
    // Its preflight, not cached yet: answered, and closed as every connection past the bound is. Refused, the browser
    // read it as a network error and never sent the call whose 503 says to back off.
    const preflight = await served(
      t,
      gw,
      'OPTIONS /echo HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example\r\n' +
        'Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: content-type\r\n\r\n' +
        // Pipelined behind it: never served on a connection past the bound.
        'POST /echo HTTP/1.1\r\nHost: gw\r\nOrigin: https://app.example\r\nContent-Length: 2\r\n\r\n{}',
    );
    await preflight.closed;
    t.equal(preflight.responses.length, 1, 'the preflight answered, nothing pipelined behind it');
    t.match(preflight.responses, [{ status: 204, headers: { connection: 'close', vary: 'Origin' } }]);
    t.equal(preflight.responses[0]!.headers['access-control-allow-origin'], 'https://app.example');
    t.match(String(preflight.responses[0]!.headers['access-control-allow-methods']), /POST/);
    const other = await served(t, gw, 'POST /echo HTTP/1.1\r\nHost: gw\r\nOrigin: https://evil.example\r\n\r\n');
    await other.closed;
    t.match(other.responses, [{ status: 503, headers: { vary: 'Origin' } }]);
    t.notOk(other.responses[0]!.headers['access-control-allow-origin'], 'none for an origin not allowed');
  },
);

t.test("a ping interval of ~12 days: a stream's silences are not a stall", async (t) => {
  // Past MAX_TIMER_MS node fires a timer after 1 ms: with a ping interval of ~12 days or more (the master's idle timer
  // is twice it and 5 s), every stream was cut after its first event as silent. The config accepted it.
  const gw = await startGateway(t, {
    versions: { v1: { weight: 1, upstream: { format: 'openai', url: 'mock:', pingIntervalMs: 1_500_000_000 } } },
  });
  const res = await fetch(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({
      model: 'm',
      stream: true,
      messages: [{ role: 'user', content: 'hi [mock tokens=3 interval-ms=30]' }],
    }),
  });
  const text = await res.text();
  t.notMatch(text, /worker_timeout/, 'no stall seen in 30 ms of silence');
  t.match(text, /data: \[DONE\]/, 'the stream whole');
});
