import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import type { Teardown } from '../../helpers/gateway.js';
import { Pool, UpstreamClient, poolRequest } from '../../../worker/upstream/client.js';

// worker/upstream/client.ts loads undici's Pool and request() by path, not
// through the package index (issue 9 part 0: start-up time). They must be the
// very objects the index exports, or an undici upgrade has moved them.

t.test("the Pool and request() loaded by path are undici's own", async (t) => {
  const undici = await import('undici');
  t.equal(Pool, undici.Pool);
  // eslint-disable-next-line @typescript-eslint/unbound-method -- compared by identity, never called unbound
  t.equal(poolRequest, undici.Dispatcher.prototype.request);
});

// Issue 10: undici keeps a Buffer body until the response has ended, a stream's whole life. A body
// goes as a one-shot iterable: it must still arrive framed by Content-Length, and nothing may hold
// it while the response streams. V8's gc(), exposed in this test process only, shows what is held.
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

interface Received {
  headers: IncomingMessage['headers'];
  body: Buffer;
  res: ServerResponse;
}

async function upstream(t: Teardown): Promise<{ url: string; received: AsyncIterator<Received> }> {
  const seen: Array<(r: Received) => void> = [];
  const queue: Received[] = [];
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      // Headers and a first event: the call has its response and the stream stays open.
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {}\n\n');
      const r = { headers: req.headers, body: Buffer.concat(parts), res };
      const waiter = seen.shift();
      if (waiter === undefined) queue.push(r);
      else waiter(r);
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const received: AsyncIterator<Received> = {
    next: () =>
      new Promise((resolve) => {
        const r = queue.shift();
        if (r !== undefined) resolve({ done: false, value: r });
        else seen.push((value) => resolve({ done: false, value }));
      }),
  };
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

for (const size of [0, 300, 64 * 1024, 2 * 1024 * 1024]) {
  t.test(`a ${size}-byte body arrives whole, framed by Content-Length`, async (t) => {
    const { url, received } = await upstream(t);
    const client = new UpstreamClient({ baseUrl: url, maxConnections: 4, connectMs: 5000, firstByteMs: 0, idleMs: 0 });
    t.teardown(() => client.destroy());
    const body = Buffer.alloc(size, 'a');
    const response = await client.request({
      path: '/chat',
      headers: { 'content-type': 'application/json' },
      body,
      signal: new AbortController().signal,
    });
    const got = (await received.next()).value as Received;
    t.equal(response.statusCode, 200);
    t.equal(got.headers['content-length'], String(size));
    t.equal(got.headers['transfer-encoding'], undefined, 'not chunked');
    t.ok(got.body.equals(body), 'the bytes sent');
    got.res.end();
    await response.body.dump();
  });
}

for (const size of [2048, 1024 * 1024]) {
  t.test(`while the response streams, a ${size}-byte body is no longer held`, async (t) => {
    const { url, received } = await upstream(t);
    const client = new UpstreamClient({ baseUrl: url, maxConnections: 4, connectMs: 5000, firstByteMs: 0, idleMs: 0 });
    t.teardown(() => client.destroy());
    let body: Buffer | undefined = Buffer.alloc(size, 'b');
    // The Buffer and its memory: a slice kept somewhere would keep the ArrayBuffer alone.
    const held = [new WeakRef(body), new WeakRef(body.buffer)];
    const response = await client.request({
      path: '/chat',
      headers: {},
      body,
      signal: new AbortController().signal,
    });
    body = undefined;
    const got = (await received.next()).value as Received;
    t.equal(got.body.length, size, 'the upstream has the body');
    // A WeakRef's target lives until the end of the job that made it: collect in a later one.
    await new Promise((resolve) => setImmediate(resolve));
    gc();
    t.same(
      held.map((ref) => ref.deref()),
      [undefined, undefined],
      'collected while the response is still open',
    );
    got.res.end();
    await response.body.dump();
  });
}
