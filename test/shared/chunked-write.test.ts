import t, { type Test } from 'tap';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { drainTarget, frameChunk, isBehind, writeChunk } from '../../shared/chunked-write.js';

// shared/chunked-write.ts writes a streamed answer's chunks to the response's socket, framed by hand once node:http
// has sent the head. What a client reads must be what node:http would have written: checked on the wire, raw, and
// through node's own client, for the responses node chunks and for those it must not.

t.test('frameChunk: size in hex, CRLF, the data, CRLF', async (t) => {
  for (const size of [1, 9, 10, 15, 16, 255, 256, 4095, 4096, 65_536, 70_001]) {
    const data = Buffer.alloc(size, 0x61);
    t.equal(frameChunk(data).toString('latin1'), `${size.toString(16)}\r\n${'a'.repeat(size)}\r\n`, `${size} bytes`);
  }
});

interface Answer {
  headers?: Record<string, string>;
  chunks: string[];
  trailers?: Record<string, string>;
  /** The head is sent before any chunk (`res.flushHeaders()`), not with the first. */
  isHeadFlushed?: boolean;
}

/**
 * A server whose handler writes each answer's chunks with writeChunk and ends it; `framed` counts the chunks that
 * did not go through `res.write` (so reached the socket framed by writeChunk).
 */
async function serverWriting(t: Test, answer: Answer): Promise<{ server: Server; framed: () => number }> {
  let framed = 0;
  const server = createServer((_req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/event-stream', ...answer.headers });
    if (answer.isHeadFlushed === true) res.flushHeaders();
    const write = res.write.bind(res) as (chunk: unknown) => boolean;
    let viaNode = 0;
    res.write = ((chunk: unknown) => {
      viaNode++;
      return write(chunk);
    }) as ServerResponse['write'];
    for (const chunk of answer.chunks) writeChunk(res, Buffer.from(chunk));
    framed += answer.chunks.length - viaNode;
    if (answer.trailers !== undefined) res.addTrailers(answer.trailers);
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return { server, framed: () => framed };
}

/** The raw bytes an exchange gets until its connection closes. */
async function rawExchange(server: Server, head: string): Promise<string> {
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  socket.end(head);
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (part: string) => (text += part));
  await once(socket, 'close');
  return text;
}

/** What node's own client reads of an answer: its body and trailers. */
async function readWithNode(server: Server): Promise<{ text: string; rawTrailers: string[] }> {
  const req = request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { agent: false });
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (part: string) => (text += part));
  await once(res, 'end');
  return { text, rawTrailers: res.rawTrailers };
}

const bodyOf = (wire: string): string => wire.slice(wire.indexOf('\r\n\r\n') + 4);

t.test('a chunked answer: the first chunk through node:http with the head, the rest framed the same', async (t) => {
  const big = 'y'.repeat(20_000);
  const { server, framed } = await serverWriting(t, {
    chunks: ['data: 1\n\n', '', 'data: two\n\n', 'x'.repeat(5000), big],
  });
  const wire = await rawExchange(server, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.match(wire, /^HTTP\/1\.1 200 OK\r\n/);
  t.match(wire, /\r\nTransfer-Encoding: chunked\r\n/);
  // The empty write is no chunk: framed, it would have been the body's end.
  t.equal(
    bodyOf(wire),
    `9\r\ndata: 1\n\n\r\nb\r\ndata: two\n\n\r\n1388\r\n${'x'.repeat(5000)}\r\n4e20\r\n${big}\r\n0\r\n\r\n`,
  );
  // Framed by writeChunk: the second and third; the first (the head), the empty one and the large one by node:http.
  t.equal(framed(), 2, 'two chunks framed by writeChunk');

  const { text } = await readWithNode(server);
  t.equal(text, `data: 1\n\ndata: two\n\n${'x'.repeat(5000)}${big}`, "node's client reads the same body");
});

t.test('trailers after framed chunks reach the client', async (t) => {
  const { server, framed } = await serverWriting(t, {
    headers: { trailer: 'x-time-per-token-ms' },
    chunks: ['data: 1\n\n', 'data: 2\n\n'],
    trailers: { 'x-time-per-token-ms': '20.000' },
  });
  const { text, rawTrailers } = await readWithNode(server);
  t.equal(text, 'data: 1\n\ndata: 2\n\n');
  t.same(rawTrailers, ['x-time-per-token-ms', '20.000']);
  t.equal(framed(), 1);
});

t.test('HTTP/1.0: unframed to the close, or chunked when the client asked for it', async (t) => {
  const { server, framed } = await serverWriting(t, { chunks: ['data: 1\n\n', 'data: two\n\n'] });
  const old = await rawExchange(server, 'GET / HTTP/1.0\r\nHost: x\r\n\r\n');
  t.notMatch(old, /Transfer-Encoding/i);
  t.equal(bodyOf(old), 'data: 1\n\ndata: two\n\n', 'the body as written, to the close');
  t.equal(framed(), 0, 'nothing framed');

  const asked = await rawExchange(server, 'GET / HTTP/1.0\r\nHost: x\r\nTE: chunked\r\n\r\n');
  t.match(asked, /\r\nTransfer-Encoding: chunked\r\n/);
  t.equal(bodyOf(asked), '9\r\ndata: 1\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n');
  t.equal(framed(), 1, 'the second chunk framed');
});

t.test(
  'HEAD: no body after the head, with a Transfer-Encoding header set by hand and the head sent first',
  async (t) => {
    // With both, node:http's state is a sent head of a chunked response that has no body: only _hasBody says so.
    for (const headers of [{}, { 'transfer-encoding': 'chunked' }] as Array<Record<string, string>>) {
      for (const isHeadFlushed of [false, true]) {
        const { server, framed } = await serverWriting(t, {
          headers,
          isHeadFlushed,
          chunks: ['data: 1\n\n', 'data: 2\n\n'],
        });
        const wire = await rawExchange(server, 'HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
        const name = `${JSON.stringify(headers)}, head flushed: ${isHeadFlushed}`;
        t.match(wire, /^HTTP\/1\.1 200 OK\r\n/, `${name}: the head first`);
        t.equal(bodyOf(wire), '', `${name}: no body bytes after the head`);
        t.equal(framed(), 0, `${name}: nothing framed`);
      }
    }
  },
);

t.test('pipelined requests: the second answer waits for its socket, written whole after the first', async (t) => {
  const { server } = await serverWriting(t, { chunks: ['data: 1\n\n', 'data: two\n\n'] });
  const wire = await rawExchange(
    server,
    'GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n',
  );
  const answers = wire.split(/(?=HTTP\/1\.1 200 OK\r\n)/);
  t.equal(answers.length, 2, 'two answers');
  for (const answer of answers) t.equal(bodyOf(answer), '9\r\ndata: 1\n\n\r\nb\r\ndata: two\n\n\r\n0\r\n\r\n');
});

t.test(
  'a client that reads nothing: the write says so, isBehind too, and the socket drains once it reads',
  async (t) => {
    let response: ServerResponse | undefined;
    const server = createServer((_req, res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      response = res;
      server.emit('answering');
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.teardown(() => {
      server.closeAllConnections();
      server.close();
    });
    const answering = once(server, 'answering');
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    t.teardown(() => client.destroy());
    client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    client.pause();
    await answering;
    const res = response!;
    // The head goes out with a small first chunk (node:http's write); the ones after it are framed here.
    t.ok(writeChunk(res, Buffer.from('data: 1\n\n')), 'the head and a first event are taken at once');
    const chunk = Buffer.alloc(16 * 1024, 0x62);
    let writes = 0;
    // Bounded: the kernel's buffers on both sides take a few MB at most before the socket's queue fills.
    while (writes < 65_536) {
      writes++;
      if (!writeChunk(res, chunk)) break;
    }
    t.ok(writes < 65_536, `a framed write was refused after ${writes} of 16 KiB`);
    t.ok(isBehind(res), 'the response is behind');
    const drained = once(drainTarget(res), 'drain');
    client.resume();
    await drained;
    t.notOk(isBehind(res), 'and is not once its socket drained');
  },
);
