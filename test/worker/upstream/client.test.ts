import { once, setMaxListeners } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type AddressInfo } from 'node:net';
import t from 'tap';
import type { Teardown } from '../../helpers/gateway.js';
import { isCollected, watch } from '../../helpers/gc.js';
import { MAX_LINGERING_BODIES, Pool, toUpstreamError, type UpstreamClient } from '../../../worker/upstream/client.js';
import { testUpstreamClient } from '../fixtures/upstream-client.js';

// worker/upstream/client.ts loads undici's Pool by path, not through the
// package index (issue 9 part 0: start-up time). It must be the very object
// the index exports, or an undici upgrade has moved it.

t.test("the Pool loaded by path is undici's own", async (t) => {
  const undici = await import('undici');
  t.equal(Pool, undici.Pool);
});

// Issue 10: undici keeps a Buffer body until the response has ended, a stream's whole life. A body
// goes as a one-shot iterable: it must still arrive framed by Content-Length, and nothing may hold
// it while the response streams.

interface Received {
  headers: IncomingMessage['headers'];
  body: Buffer;
  res: ServerResponse;
}

/** An upstream for one request: answers with headers and a first event, and keeps the stream open. */
async function upstream(t: Teardown): Promise<{ url: string; received: Promise<Received> }> {
  let onRequest: (r: Received) => void = () => undefined;
  const received = new Promise<Received>((resolve) => (onRequest = resolve));
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {}\n\n');
      onRequest({ headers: req.headers, body: Buffer.concat(parts), res });
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, received };
}

const client = (t: Teardown, url: string): UpstreamClient => testUpstreamClient(t, url);

/** What one call to url fails with (undefined if it succeeds). */
const requestError = (t: Teardown, url: string): Promise<unknown> =>
  client(t, url)
    .request({ path: '/x', headers: {}, body: Buffer.from('{}'), signal: new AbortController().signal })
    .then(
      () => undefined,
      (e: unknown) => e,
    );

for (const size of [0, 300, 64 * 1024, 2 * 1024 * 1024]) {
  t.test(`a ${size}-byte body arrives whole, framed by Content-Length`, async (t) => {
    const { url, received } = await upstream(t);
    const body = Buffer.alloc(size, 'a');
    const response = await client(t, url).request({
      path: '/chat',
      // An adapter's framing header in another case is replaced, not sent twice (undici refuses that).
      headers: { 'content-type': 'application/json', 'Content-Length': '1' },
      body,
      signal: new AbortController().signal,
    });
    const got = await received;
    t.equal(response.statusCode, 200);
    t.equal(got.headers['content-length'], String(size));
    t.equal(got.headers['transfer-encoding'], undefined, 'not chunked');
    t.ok(got.body.equals(body), 'the bytes sent');
    got.res.end();
    await response.body.readAll(Infinity);
  });
}

for (const size of [2048, 1024 * 1024]) {
  t.test(`while the response streams, a ${size}-byte body is no longer held`, async (t) => {
    const { url, received } = await upstream(t);
    let body: Buffer | undefined = Buffer.alloc(size, 'b');
    const refs = watch(body);
    const response = await client(t, url).request({
      path: '/chat',
      headers: {},
      body,
      signal: new AbortController().signal,
    });
    body = undefined;
    const got = await received;
    t.equal(got.body.length, size, 'the upstream has the body');
    t.ok(await isCollected(refs), 'collected while the response is still open');
    got.res.end();
    await response.body.readAll(Infinity);
  });
}

// A body its answer no longer reads (ended at [DONE]) may stay open up to 1 s to keep its connection (pipeline.ts):
// the pool has MAX_LINGERING_BODIES connections beyond the admitted concurrency for them, so a request admitted
// while they linger gets a connection of its own and never waits inside undici.

t.test('lingering bodies are bounded, and the pool has a connection for each beyond maxConnections', async (t) => {
  const held = new Set<ServerResponse>();
  let onArrived: () => void = () => undefined;
  const server = createServer((req, res) => {
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write('data: {}\n\n');
      held.add(res);
      onArrived();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const c = testUpstreamClient(t, `http://127.0.0.1:${(server.address() as AddressInfo).port}`, { maxConnections: 1 });

  for (let i = 0; i < MAX_LINGERING_BODIES; i++) t.ok(c.lingerStart(), `lingering body ${i + 1}`);
  t.notOk(c.lingerStart(), 'one more is refused: it is aborted at once');
  c.lingerEnd();
  t.ok(c.lingerStart(), 'room again once one closed');

  // maxConnections 1 plus one connection per lingering body: all of these are on the wire at once.
  const count = 1 + MAX_LINGERING_BODIES;
  const all = new Promise<void>((resolve) => (onArrived = () => held.size === count && resolve()));
  const signal = new AbortController();
  setMaxListeners(count, signal.signal); // one signal for all of them
  const responses = Array.from({ length: count }, () =>
    c.request({ path: '/x', headers: {}, body: Buffer.from('{}'), signal: signal.signal }).catch(() => undefined),
  );
  await all;
  t.equal(held.size, count, `${count} requests reached the upstream together`);
  signal.abort();
  await Promise.all(responses);
});

t.test('a response head past undici’s limit is a malformed answer, not an unreachable upstream', async (t) => {
  const server = createServer((req, res) => {
    req.resume();
    res.writeHead(200, { 'x-huge': 'h'.repeat(200 * 1024) }).end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const err = await requestError(t, url);
  t.match(toUpstreamError(err, { hasResponse: false, connectMs: 1, firstByteMs: 1, idleMs: 1 }), {
    code: 'upstream_protocol_error',
    message: /malformed HTTP response \(UND_ERR_HEADERS_OVERFLOW\)/,
  });
});

t.test(
  'a response whose Content-Length disagrees with itself is a malformed answer, not an unreachable upstream',
  async (t) => {
    // Two Content-Length values (a broken upstream or a middlebox): undici refuses the answer with
    // UND_ERR_RES_CONTENT_LENGTH_MISMATCH, which was told as "could not connect to the upstream".
    const body = '{"object":"chat.completion"}';
    const server = createNetServer((socket) => {
      socket.once('data', () =>
        socket.write(
          'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n' +
            `content-length: ${body.length}\r\ncontent-length: ${body.length + 5}\r\n\r\n${body}`,
        ),
      );
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.teardown(() => server.close());
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    const err = await requestError(t, url);
    t.match(err, { code: 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' }, 'undici’s own code');
    t.match(toUpstreamError(err, { hasResponse: false, connectMs: 1, firstByteMs: 1, idleMs: 1 }), {
      code: 'upstream_protocol_error',
      message: /malformed HTTP response \(UND_ERR_RES_CONTENT_LENGTH_MISMATCH\)/,
    });
  },
);

t.test('ETIMEDOUT: unreachable on connect, a reset on a connection that carried the request', async (t) => {
  // The kernel's error when retransmissions or keepalive probes go unanswered; a silent network is not reproducible
  // on loopback without a firewall, so the classification is checked on the errors node raises (code and syscall).
  const timedOut = (syscall: string): Error =>
    Object.assign(new Error(`${syscall} ETIMEDOUT`), { code: 'ETIMEDOUT', errno: -110, syscall });
  const options = { hasResponse: false, connectMs: 1, firstByteMs: 1, idleMs: 1 };
  t.match(toUpstreamError(timedOut('connect'), options), {
    code: 'upstream_unreachable',
    message: 'could not connect to the upstream (ETIMEDOUT)',
  });
  for (const syscall of ['read', 'write'])
    t.match(toUpstreamError(timedOut(syscall), options), {
      code: 'upstream_reset',
      message: 'the upstream connection timed out (ETIMEDOUT)',
    });
});

t.test('a refused certificate or TLS handshake is unreachable, naming its code', async (t) => {
  // A TLS probe: a private CA not trusted (SELF_SIGNED_CERT_IN_CHAIN, UNABLE_TO_GET_ISSUER_CERT_LOCALLY), an https: URL
  // at a plain HTTP port and an HTTP/2-only server said only "could not connect to the upstream".
  const options = { hasResponse: false, connectMs: 1, firstByteMs: 1, idleMs: 1 };
  const failed = (code: string): Error => Object.assign(new Error(`${code} message`), { code });
  for (const code of ['SELF_SIGNED_CERT_IN_CHAIN', 'UNABLE_TO_GET_ISSUER_CERT_LOCALLY', 'ERR_SSL_WRONG_VERSION_NUMBER'])
    t.match(toUpstreamError(failed(code), options), {
      code: 'upstream_unreachable',
      message: `could not connect to the upstream (${code})`,
    });
  t.match(toUpstreamError(failed('ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL'), options), {
    code: 'upstream_unreachable',
    message: /HTTP\/2 only; set upstream\.http2/,
  });
});

t.test("a server's Keep-Alive hint may shorten keepAliveMs, never lengthen it", async (t) => {
  // A TLS probe: a hint of 120 s kept a connection the operator's keepAliveMs (set under a firewall's idle timeout) had
  // meant to close, and the POST sent on it after the firewall dropped the flow waited totalMs for a 504.
  const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/plain', 'keep-alive': 'timeout=600' });
    res.end('ok');
  });
  server.keepAliveTimeout = 600_000; // the close must be the client's
  const closed = new Promise<void>((resolve) => server.on('connection', (socket) => socket.on('close', resolve)));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const client = testUpstreamClient(t, `http://127.0.0.1:${port}`, { keepAliveTimeoutMs: 1000 });
  const response = await client.request({
    method: 'GET',
    path: '/',
    headers: {},
    signal: new AbortController().signal,
  });
  await response.body.readAll(1024);
  await closed;
  t.pass('the idle connection closed after keepAliveMs, the hint of 600 s notwithstanding');
});

t.test(
  'a call failed by the destroyed pool (the shutdown deadline; with upstream.proxy undici drops the reason) is shutting_down',
  async (t) => {
    const err = Object.assign(new Error('The client is destroyed'), { code: 'UND_ERR_DESTROYED' });
    for (const hasResponse of [false, true])
      t.match(toUpstreamError(err, { hasResponse, connectMs: 1, firstByteMs: 1, idleMs: 1 }), {
        code: 'shutting_down',
      });
  },
);
