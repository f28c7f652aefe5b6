import t, { type Test } from 'tap';
import { once } from 'node:events';
import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { DirectConnections, type ConnectionHolder } from '../../master/direct-connections.js';

// limits.directStreams: which worker processes hold a duplicate of a client connection (test/e2e/hop-direct.test.ts
// runs the whole path). Here, with fake worker handles, on real connections to a node:http server on 127.0.0.1.

class FakeHolder implements ConnectionHolder {
  readonly offers: number[] = [];
  readonly closes: number[] = [];
  #pending: Array<(isTaken: boolean) => void> = [];
  constructor(readonly pid: number) {}
  offerConnection(id: number, _socket: Socket, onSettled: (isTaken: boolean) => void): boolean {
    this.offers.push(id);
    this.#pending.push(onSettled);
    return true;
  }
  /** The worker process has the descriptor now (its IPC `conn-taken`). */
  take(): void {
    for (const onSettled of this.#pending.splice(0)) onSettled(true);
  }
  /** The descriptor never reached the worker process (its send failed, or node's NACK: the worker's file limit). */
  lose(): void {
    for (const onSettled of this.#pending.splice(0)) onSettled(false);
  }
  closeConnection(id: number): void {
    this.closes.push(id);
  }
}

/** A server whose every request is handed to `onRequest`, then answered 204; and a one-connection keep-alive agent. */
async function serve(
  t: Test,
  onRequest: (req: IncomingMessage) => void,
): Promise<{ get: () => Promise<void>; agent: Agent }> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    onRequest(req);
    res.writeHead(204).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });
  t.teardown(() => {
    agent.destroy();
    server.closeAllConnections();
    server.close();
  });
  const get = (): Promise<void> =>
    new Promise((resolve, reject) => {
      request({ host: '127.0.0.1', port, path: '/', agent }, (res) => res.resume().on('end', resolve))
        .on('error', reject)
        .end();
    });
  return { get, agent };
}

t.test('a worker that got a holder’s pid after it is not a holder: it is offered the connection', async (t) => {
  const connections = new DirectConnections();
  const first = new FakeHolder(4242);
  // A replacement worker: a new process (a new handle) that happens to have the pid of the first, gone, one.
  const second = new FakeHolder(4242);
  const seen: Array<{ step: string; value: unknown }> = [];
  let socket: Socket | undefined;
  const steps: Array<(req: IncomingMessage) => void> = [
    (req) => {
      socket = req.socket;
      seen.push({ step: 'first offer', value: connections.offer({ req }, first) });
    },
    (req) => {
      seen.push({ step: 'first, taken', value: connections.offer({ req }, first) });
      const isHolder = connections.holderTest(req.socket)!;
      seen.push({ step: 'holders', value: [isHolder(first), isHolder(second)] });
      seen.push({ step: 'second offer', value: connections.offer({ req }, second) });
      seen.push({ step: 'holders after', value: [isHolder(first), isHolder(second)] });
    },
  ];
  const { get, agent } = await serve(t, (req) => steps.shift()!(req));
  await get();
  first.take();
  await get();
  t.same(seen, [
    { step: 'first offer', value: { conn: 1, isTaken: false } },
    { step: 'first, taken', value: { conn: 1, isTaken: true } },
    { step: 'holders', value: [true, false] },
    { step: 'second offer', value: { conn: 1, isTaken: false } },
    { step: 'holders after', value: [true, true] },
  ]);
  t.same([first.offers, second.offers], [[1], [1]], 'each process is sent its own duplicate, once');
  // The client goes: every holder lets go of its duplicate.
  const closed = once(socket!, 'close');
  agent.destroy();
  await closed;
  t.same([first.closes, second.closes], [[1], [1]]);
});

t.test('a descriptor that never reached the worker is offered again with the next request', async (t) => {
  const connections = new DirectConnections();
  const holder = new FakeHolder(4242);
  const seen: Array<{ step: string; value: unknown }> = [];
  const steps: Array<(req: IncomingMessage) => void> = [
    (req) => seen.push({ step: 'offer', value: connections.offer({ req }, holder) }),
    (req) => {
      seen.push({ step: 'holder after the loss', value: connections.holderTest(req.socket)!(holder) });
      seen.push({ step: 'offered again', value: connections.offer({ req }, holder) });
    },
    (req) => seen.push({ step: 'taken', value: connections.offer({ req }, holder) }),
  ];
  const { get } = await serve(t, (req) => steps.shift()!(req));
  await get();
  holder.lose();
  await get();
  holder.take();
  await get();
  t.same(seen, [
    { step: 'offer', value: { conn: 1, isTaken: false } },
    { step: 'holder after the loss', value: false },
    { step: 'offered again', value: { conn: 1, isTaken: false } },
    { step: 'taken', value: { conn: 1, isTaken: true } },
  ]);
  t.same(holder.offers, [1, 1], 'sent twice: the lost duplicate, then the one that arrived');
});

t.test('a connection never offered has no holder test; one that is not HTTP/1.1 is never offered', async (t) => {
  const connections = new DirectConnections();
  const holder = new FakeHolder(7);
  const results: unknown[] = [];
  const { get } = await serve(t, (req) => {
    results.push(connections.holderTest(req.socket));
    req.httpVersion = '1.0';
    results.push(connections.offer({ req }, holder));
  });
  await get();
  t.same(results, [undefined, undefined]);
  t.same(holder.offers, []);
});
