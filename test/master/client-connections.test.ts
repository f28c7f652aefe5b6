import t, { type Test } from 'tap';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { Writable } from 'node:stream';
import { ClientConnections, type HeldConnections } from '../../master/client-connections.js';
import { createLogger } from '../../shared/log.js';

// The main port's connection bound (master/client-connections.ts) on a real server: what is counted where, and the
// warn line of a burst of refusals, whose tail was written only at the next refusal (a review: hours later).

/**
 * A server answering 'ok' whose connections `connections` counts; `open(from?)` connects a client (from that local
 * address: on Linux every 127.x.y.z is loopback, 127.0.0.2 another client), `sockets` are the
 * clients', `accepted` the server's ends (to wait for their closes: the server's own 'close' comes before theirs).
 */
async function countedServer(
  t: Test,
  connections: ClientConnections,
  held?: HeldConnections,
): Promise<{ server: Server; accepted: Socket[]; sockets: Socket[]; open: (from?: string) => Promise<Socket> }> {
  const server = createServer((_req, res) => res.end('ok'));
  connections.watch(server, held);
  const accepted: Socket[] = [];
  server.on('connection', (socket: Socket) => accepted.push(socket));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const sockets: Socket[] = [];
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  const open = async (from?: string): Promise<Socket> => {
    const socket = connect({ port, host: '127.0.0.1', localAddress: from });
    sockets.push(socket);
    socket.on('error', () => undefined);
    await once(socket, 'connect');
    return socket;
  };
  return { server, accepted, sockets, open };
}

t.test('a burst of connections past the bound: one line at once, the rest when the interval ends', async (t) => {
  const lines: Array<Record<string, unknown>> = [];
  let onLine: (() => void) | undefined;
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      for (const line of chunk
        .toString('utf8')
        .split('\n')
        .filter((l) => l !== ''))
        lines.push(JSON.parse(line) as Record<string, unknown>);
      onLine?.();
      cb();
    },
  });
  const log = createLogger({ role: 'master', level: 'warn', destination: sink });
  const connections = new ClientConnections({
    configured: 1,
    fileLimit: undefined,
    maxIdleSocketsPerWorker: 0,
    log,
    logIntervalMs: 200,
  });
  const { open } = await countedServer(t, connections);
  const logged = (): number => lines.reduce((sum, l) => sum + (l['sinceLastLine'] as number), 0);
  const untilLogged = (n: number): Promise<void> =>
    new Promise((resolve) => {
      const check = (): void => {
        if (logged() >= n) resolve();
        else onLine = check;
      };
      check();
    });

  await open(); // within the bound of 1
  for (let i = 0; i < 3; i++) await open(); // past it
  await untilLogged(3);
  t.match(lines[0], { level: 40, sinceLastLine: 1, pastBound: 1, maxClientConnections: 1 }, 'the first at once');
  t.ok(lines.length >= 2, 'the rest of the burst in a line of its own when the interval ends, not at a next refusal');
  t.equal(logged(), 3, 'each refusal in one line');
  t.match(connections.status(), { open: 4, max: 1, pastBound: 3, dropped: 0 });
});

t.test('a bound lowered under the connections open: new ones are answered past it, not dropped', async (t) => {
  // An admin probe: a deploy's new workers lowered the bound from the file limit under the connections open, and Node,
  // capped under them, reset every fresh connection (health probes too) for the whole deploy.
  const log = createLogger({ role: 'master', level: 'silent' });
  // 232 descriptors: 36 connections with no worker, 2 with 17 (file-limit.ts clientConnectionsFor).
  const connections = new ClientConnections({ configured: undefined, fileLimit: 232, maxIdleSocketsPerWorker: 0, log });
  const { server, accepted, sockets, open } = await countedServer(t, connections);
  for (let i = 0; i < 36; i++) await open();
  while (accepted.length < 36) await once(server, 'connection');
  t.match(connections.status(), { open: 36, max: 36 });
  connections.setWorkers(17);
  t.equal(connections.status().max, 2, 'the bound is lowered under the 36 open');
  const fresh = await open();
  const answered = new Promise<string>((resolve) => {
    let text = '';
    fresh.setEncoding('utf8');
    fresh.on('data', (chunk: string) => (text += chunk));
    fresh.on('close', () => resolve(text));
  });
  fresh.end('GET / HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n');
  t.match(await answered, /^HTTP\/1\.1 200/, 'a fresh connection is accepted (past the bound) and answered');
  t.match(connections.status(), { pastBound: 1, dropped: 0 });
  // As the open ones close, Node's cap comes back down to the bound's.
  const closed = accepted.filter((s) => !s.destroyed).map((s) => once(s, 'close'));
  for (const s of sockets) s.destroy();
  await Promise.all(closed);
  t.equal(connections.status().open, 0);
  t.equal(server.maxConnections, 2 + 32, 'back to the bound and the 32 past it');
});

t.test('at the bound the connection quiet longest, for a second at least, is closed for a new one', async (t) => {
  // A file-limit probe (silent connections shut every client out) and its review (closing any quiet one reset clients
  // whose request was not read yet, and keep-alive clients between two requests): the line of quiet connections.
  let nowMs = 10_000;
  const log = createLogger({ role: 'master', level: 'silent' });
  const connections = new ClientConnections({
    configured: 2,
    fileLimit: undefined,
    maxIdleSocketsPerWorker: 0,
    log,
    now: () => nowMs,
  });
  /** Sockets the test says are busy (in a request); the others are quiet since they joined the line. */
  const busy = new Set<Socket>();
  const closed: Socket[] = [];
  const {
    server,
    accepted,
    open: connectOne,
  } = await countedServer(t, connections, {
    isQuietSince: (socket) => !busy.has(socket),
    close: (socket) => {
      closed.push(socket);
      socket.destroy();
    },
  });
  /** A client's connection, and the server's end of it (the one the bound counts and closes). */
  const open = async (): Promise<Socket> => {
    const count = accepted.length;
    await connectOne();
    while (accepted.length === count) await once(server, 'connection');
    return accepted.at(-1)!;
  };

  const first = await open();
  nowMs += 10;
  const second = await open();
  nowMs += 500;
  await open();
  t.same(closed, [], 'none quiet for a second: the third is past the bound');
  t.match(connections.status(), { pastBound: 1, closedIdle: 0 });

  nowMs += 600; // first quiet 1,110 ms, second 1,100 ms
  busy.add(first); // …but first is in a request now
  const fourth = await open();
  t.same(closed, [second], 'the one quiet longest that is still quiet');
  connections.noteQuiet(first, nowMs); // first's answer ended: quiet from now, after fourth joined the line
  busy.delete(first);
  nowMs += 999;
  await open();
  t.same(closed, [second], 'fourth and first quiet for 999 ms only: past the bound');
  nowMs += 1;
  await open();
  t.same(closed, [second, fourth], 'then fourth, which joined the line first');
  await open();
  t.same(closed, [second, fourth, first], 'then first, its quiet since its answer');
  t.match(connections.status(), { closedIdle: 3, pastBound: 2 });
});

t.test(
  'limits.maxClientConnectionsPerAddress: a client past its share is closed as accepted, others are not',
  { skip: process.platform === 'linux' ? false : 'needs 127.0.0.2 as another client (Linux: 127.0.0.0/8 is loopback)' },
  async (t) => {
    // A flood of silent connections from one client reopened faster than the bound a second shut every other client
    // out (two reviewers; a quiet one is closed for a new one only after a second). HAProxy's src_conn_cur.
    const log = createLogger({ role: 'master', level: 'silent' });
    const connections = new ClientConnections({
      configured: undefined,
      perAddress: 2,
      fileLimit: undefined,
      maxIdleSocketsPerWorker: 0,
      log,
    });
    const counted = await countedServer(t, connections);
    /** A connection from `from`, and whether the server answers a request on it. */
    const open = async (from: string): Promise<{ client: Socket; answered: Promise<boolean> }> => {
      const client = await counted.open(from);
      const answered = new Promise<boolean>((resolve) => {
        client.once('data', () => resolve(true));
        client.once('close', () => resolve(false));
      });
      client.write('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
      return { client, answered };
    };

    const a1 = await open('127.0.0.1');
    const a2 = await open('127.0.0.1');
    t.ok((await a1.answered) && (await a2.answered), 'two from one client');
    const a3 = await open('127.0.0.1');
    t.notOk(await a3.answered, 'its third is closed');
    const b1 = await open('127.0.0.2');
    t.ok(await b1.answered, 'another client is served');
    t.match(connections.status(), { open: 3, refusedPerAddress: 1 });

    const closed = once(a1.client, 'close');
    a1.client.destroy();
    await closed;
    // The server's end closes after the client's: until it has, the client still holds two.
    while (connections.status().open !== 2) await new Promise(setImmediate);
    t.ok(await (await open('127.0.0.1')).answered, 'its share comes back as one closes');
    t.match(connections.status(), { open: 3, refusedPerAddress: 1 });
  },
);
