import t from 'tap';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { once } from 'node:events';
import { ConnectionQueue } from '../../master/connection-queue.js';
import { pollPause, pollUntil } from '../helpers/wait.js';

// SPEC §4a, an attacker probe: full-size heads (16 KiB) pipelined behind a request in flight fit four to a read, so a
// count of 32 waiting let one connection hold ~36 of them, ~1 MB of the master's heap (1,000 connections, 1 GB).
// Waiting heads are counted in bytes too: 32 KiB of them stop the reading.

t.test('pipelined heads stop the reading at 32 KiB waiting, not only at a count', async (t) => {
  let parsed = 0;
  const held: ServerResponse[] = [];
  const queue = new ConnectionQueue({
    serve: (req: IncomingMessage, res: ServerResponse) => {
      req.resume();
      if (req.url === '/first') held.push(res);
      else res.end('ok');
    },
    onDropped: (_req, res) => res.destroy(),
    maxPipelined: () => 32,
  });
  const server = createServer({ maxHeaderSize: 16 * 1024 }, (req, res) => {
    parsed++;
    queue.enqueue(req, res);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const serverSockets: Socket[] = [];
  server.on('connection', (s: Socket) => serverSockets.push(s));

  const pad = Array.from({ length: 30 }, (_, i) => `x-pad-${i}: ${'p'.repeat(480)}\r\n`).join(''); // ~15 KB a head
  const heads = Array.from({ length: 12 }, (_, i) => `GET /next${i} HTTP/1.1\r\nHost: q\r\n${pad}\r\n`).join('');
  const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
  t.teardown(() => {
    client.destroy();
    for (const s of serverSockets) s.destroy();
    server.close();
  });
  let answers = '';
  client.on('data', (c: Buffer) => (answers += c.toString('latin1')));
  await once(client, 'connect');
  client.write(`GET /first HTTP/1.1\r\nHost: q\r\n\r\n${heads}`);

  while (serverSockets[0]?.isPaused() !== true && parsed < 13) await pollPause();
  // What the read in hand held past the pause is parsed too (at most 64 KiB: four more heads), no more.
  t.ok(parsed - 1 <= 3 + 5, `${parsed - 1} of 12 waiting heads parsed when the reading stopped (all 12 before)`);

  held[0]!.end('first');
  while ((answers.match(/HTTP\/1\.1 200/g) ?? []).length < 13) await pollPause();
  t.equal(parsed, 13, 'then read again as the line shortened: every request answered, in order');
  t.match(answers, /first[\s\S]*ok/);
});

t.test('a flood: 128 waiting (4 × maxPipelined, at least 128) are kept, one more closes the connection', async (t) => {
  for (const waiting of [128, 129]) {
    let parsed = 0;
    const floods: number[] = [];
    const held: ServerResponse[] = [];
    const queue = new ConnectionQueue({
      serve: (req, res) => {
        req.resume();
        if (req.url === '/first') held.push(res);
        else res.end('ok');
      },
      onDropped: (_req, res) => res.destroy(),
      maxPipelined: () => 1,
      onFlood: (_socket, count) => floods.push(count),
    });
    const server = createServer((req, res) => {
      parsed++;
      queue.enqueue(req, res);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    t.teardown(() => {
      client.destroy();
      server.closeAllConnections();
      server.close();
    });
    let answers = '';
    client.on('data', (c: Buffer) => (answers += c.toString('latin1')));
    await once(client, 'connect');
    // One write of ~4 KB, parsed from one read: every head waits behind /first, though the reading stopped at one.
    const heads = 'GET /next HTTP/1.1\r\nHost: q\r\n\r\n'.repeat(waiting);
    client.write(`GET /first HTTP/1.1\r\nHost: q\r\n\r\n${heads}`);
    await pollUntil(
      async () => parsed,
      (n) => n === 1 + waiting,
      `${1 + waiting} heads parsed`,
    );
    const isFlood = waiting > 128;
    if (!t.same(floods, isFlood ? [waiting] : [], isFlood ? 'closed' : 'no flood')) continue;
    if (isFlood) {
      if (!client.closed) await once(client, 'close');
      continue;
    }
    held[0]!.end('first');
    await pollUntil(
      async () => (answers.match(/HTTP\/1\.1 200/g) ?? []).length,
      (n) => n === 1 + waiting,
      'every answer',
    );
    t.pass('every request answered');
  }
});

t.test(
  'heads waiting on every connection together are bounded: past it, a connection holding a share of them closes',
  async (t) => {
    // A probe: 1,000 connections, each pipelining ~34 heads of 1.9 KB behind a slow stream, held 124–182 MB of the
    // master's heap, each under the one-connection bounds. Here the bound is 81,920 bytes, so a share is 40 bytes; a
    // head counts its target, 16, and each header's name and value with 2 (`GET /next` with Host: q is 30 bytes).
    const bound = 81_920;
    let parsed = 0;
    const floods: Array<[number, string]> = [];
    const held = new Map<Socket, ServerResponse>();
    const queue = new ConnectionQueue({
      serve: (req, res) => {
        req.resume();
        if (req.url === '/first') held.set(req.socket, res);
        else res.end('ok');
      },
      onDropped: (_req, res) => res.destroy(),
      maxPipelined: () => 32,
      onFlood: (_socket, count, cause) => floods.push([count, cause]),
      maxWaitingHeadBytesTotal: bound,
    });
    const server = createServer({ maxHeaderSize: 32 * 1024 }, (req, res) => {
      parsed++;
      queue.enqueue(req, res);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const port = (server.address() as AddressInfo).port;
    const clients: Socket[] = [];
    t.teardown(() => {
      for (const c of clients) c.destroy();
      server.closeAllConnections();
      server.close();
    });
    const head = (pad: number): string =>
      pad === 0
        ? 'GET /next HTTP/1.1\r\nHost: q\r\n\r\n'
        : `GET /next HTTP/1.1\r\nHost: q\r\nx-pad: ${'p'.repeat(pad)}\r\n\r\n`;
    /** A connection sending /first and then `pads` heads (0: a 30-byte head; else 39 + pad bytes). */
    const send = async (pads: number[]): Promise<{ socket: Socket; answers: () => number }> => {
      const socket = connect(port, '127.0.0.1');
      clients.push(socket);
      let text = '';
      socket.on('data', (c: Buffer) => (text += c.toString('latin1')));
      socket.on('error', () => undefined);
      await once(socket, 'connect');
      const before = parsed;
      socket.write(`GET /first HTTP/1.1\r\nHost: q\r\n\r\n${pads.map(head).join('')}`);
      await pollUntil(
        async () => parsed,
        (n) => n === before + 1 + pads.length,
        `${1 + pads.length} heads parsed`,
      );
      return { socket, answers: () => (text.match(/HTTP\/1\.1 200/g) ?? []).length };
    };
    // Three connections hold 81,910 bytes of heads, each under its own bounds (27 KB, below the 32 KiB that pauses).
    for (const pads of [
      [13_600, 13_600],
      [13_600, 13_600],
      [13_600, 13_676],
    ])
      await send(pads);
    t.same(floods, [], 'at the bound: nothing closed');
    const innocent = await send([0]);
    t.same(floods, [], 'past it by one 30-byte head: that connection holds less than a share, and stays');
    const heavy = await send([0, 0]);
    if (!t.same(floods, [[2, 'total']], 'one holding a share (60 bytes) is closed')) return;
    if (!heavy.socket.closed) await once(heavy.socket, 'close');
    held.get([...held.keys()].find((s) => s.remotePort === innocent.socket.localPort)!)!.end('first');
    await pollUntil(
      async () => innocent.answers(),
      (n) => n === 2,
      'the innocent connection: both answers',
    );
    t.pass('the connection that held less than a share was answered');
  },
);
