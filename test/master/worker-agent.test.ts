import t, { type Test } from 'tap';
import { mkdtempSync, rmSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, request, type ClientRequest, type IncomingMessage, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createProxyServer } from 'http-proxy-3';
import { createWorkerAgent } from '../../master/worker-agent.js';

// The master's agent is handed only a request's connection options (master/worker-agent.ts). What it must still do
// with them: reach the worker at its port or its unix socket, keep and reuse the connection, queue a request beyond
// maxSockets until one is free, and keep the connections of different workers apart. The request itself (method,
// path, headers, body) goes as the ClientRequest built it.

interface Seen {
  connections: number;
  requests: string[];
}

async function worker(t: Test, listen: (server: Server) => void): Promise<{ server: Server; seen: Seen }> {
  const seen: Seen = { connections: 0, requests: [] };
  const server = createServer({ keepAliveTimeout: 60_000 }, (req, res) => {
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      seen.requests.push(
        `${req.method} ${req.url} ${String(req.headers['x-probe'])} ${Buffer.concat(chunks).toString()}`,
      );
      res.end(String(seen.connections));
    });
  });
  server.on('connection', () => seen.connections++);
  listen(server);
  await once(server, 'listening');
  t.teardown(() => new Promise<void>((resolve) => server.close(() => resolve())));
  return { server, seen };
}

function read(req: ClientRequest, body = ''): Promise<{ req: ClientRequest; text: string }> {
  return new Promise((resolve, reject) => {
    req.on('error', reject);
    req.on('response', (res: IncomingMessage) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (text += c));
      res.on('end', () => resolve({ req, text }));
    });
    req.end(body);
  });
}

t.test('over TCP and over a unix socket: the request as built, one kept-alive connection', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-worker-agent-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const socketPath = join(dir, 'w1.sock');
  const tcp = await worker(t, (s) => s.listen(0, '127.0.0.1'));
  const unix = await worker(t, (s) => s.listen(socketPath));
  const port = (tcp.server.address() as AddressInfo).port;
  for (const [name, target, seen] of [
    ['tcp', { host: '127.0.0.1', port }, tcp.seen],
    ['unix', { socketPath }, unix.seen],
  ] as const) {
    const agent = createWorkerAgent({ maxSockets: 4, maxIdleSockets: 4 });
    t.teardown(() => agent.destroy());
    const send = (i: number): Promise<{ req: ClientRequest; text: string }> =>
      read(
        request({
          ...target,
          agent,
          method: 'POST',
          path: `/v1/chat/completions?i=${i}`,
          headers: { 'x-probe': name },
        }),
        `body ${i}`,
      );
    const first = await send(1);
    const second = await send(2);
    t.equal(first.text, '1', `${name}: one connection`);
    t.equal(second.text, '1', `${name}: the second request on the same connection`);
    t.ok(second.req.reusedSocket, `${name}: reused`);
    // Kept under the worker's own address (node's agent names a connection by host, port and path): without `host`
    // it would be kept as localhost's, which need not be 127.0.0.1.
    const kept = [...new Set([...Object.keys(agent.sockets), ...Object.keys(agent.freeSockets)])];
    t.same(
      kept,
      [name === 'tcp' ? `127.0.0.1:${port}:` : `localhost:80::${socketPath}`],
      `${name}: kept by its address`,
    );
    t.same(seen.requests, [
      `POST /v1/chat/completions?i=1 ${name} body 1`,
      `POST /v1/chat/completions?i=2 ${name} body 2`,
    ]);
  }
});

t.test('beyond maxSockets a request waits for a free connection, then runs on it', async (t) => {
  const { server, seen } = await worker(t, (s) => s.listen(0, '127.0.0.1'));
  const port = (server.address() as AddressInfo).port;
  const agent = createWorkerAgent({ maxSockets: 1, maxIdleSockets: 1 });
  t.teardown(() => agent.destroy());
  const answers = await Promise.all(
    [1, 2, 3].map((i) =>
      read(request({ host: '127.0.0.1', port, agent, path: `/q${i}`, headers: { 'x-probe': 'q' } })),
    ),
  );
  t.same(
    answers.map((a) => a.text),
    ['1', '1', '1'],
    'all three on the one connection',
  );
  t.same(seen.requests, ['GET /q1 q ', 'GET /q2 q ', 'GET /q3 q ']);
});

t.test("two workers' connections kept apart (by port), through http-proxy-3 as the master sends", async (t) => {
  const a = await worker(t, (s) => s.listen(0, '127.0.0.1'));
  const b = await worker(t, (s) => s.listen(0, '127.0.0.1'));
  const agent = createWorkerAgent({ maxSockets: 4, maxIdleSockets: 4 });
  t.teardown(() => agent.destroy());
  const proxy = createProxyServer({ xfwd: true, ws: false, toProxy: true });
  const front = createServer((req, res) => {
    const target = req.url?.startsWith('/a') ? a.server : b.server;
    proxy.web(req, res, { target: { host: '127.0.0.1', port: (target.address() as AddressInfo).port }, agent });
  });
  front.listen(0, '127.0.0.1');
  await once(front, 'listening');
  t.teardown(() => new Promise<void>((resolve) => front.close(() => resolve())));
  const port = (front.address() as AddressInfo).port;
  const plain = createWorkerAgent({ maxSockets: 1, maxIdleSockets: 1 });
  t.teardown(() => plain.destroy());
  for (const path of ['/a1', '/b1', '/a2', '/b2'])
    await read(request({ host: '127.0.0.1', port, path, agent: plain, headers: { 'x-probe': 'p' } }));
  t.same(a.seen.requests, ['GET /a1 p ', 'GET /a2 p ']);
  t.same(b.seen.requests, ['GET /b1 p ', 'GET /b2 p ']);
  t.equal(a.seen.connections, 1, 'a: one kept connection');
  t.equal(b.seen.connections, 1, 'b: one kept connection');
});
