import t, { type Test } from 'tap';
import { once } from 'node:events';
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { drainTarget, frameChunk, isBehind, writeChunk } from '../../shared/chunked-write.js';

// shared/chunked-write.ts writes a streamed answer's chunks to the response's socket, framed by hand once node:http
// has sent the head. What a client reads must be what node:http would have written: checked on the wire, raw, and
// through node's own client, for the responses node chunks and for those it must not (HTTP/1.0, HEAD).

t.test('frameChunk: size in hex, CRLF, the data, CRLF', async (t) => {
  for (const size of [1, 9, 10, 15, 16, 255, 256, 4095, 4096, 65_536, 70_001]) {
    const data = Buffer.alloc(size, 0x61);
    t.equal(frameChunk(data).toString('latin1'), `${size.toString(16)}\r\n${'a'.repeat(size)}\r\n`, `${size} bytes`);
  }
});

/** A server whose handler writes `chunks` with writeChunk, then ends the response. */
async function serverWriting(t: Test, chunks: string[]): Promise<Server> {
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    let isHeadOut = false;
    for (const chunk of chunks) {
      writeChunk(res, Buffer.from(chunk), isHeadOut);
      isHeadOut = true;
    }
    res.end();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  return server;
}

/** The raw bytes a request gets until its connection closes. */
async function rawExchange(server: Server, head: string): Promise<string> {
  const socket = connect((server.address() as AddressInfo).port, '127.0.0.1');
  socket.end(head);
  let text = '';
  socket.setEncoding('latin1');
  socket.on('data', (part: string) => (text += part));
  await once(socket, 'close');
  return text;
}

t.test('a chunked answer: the first chunk through node:http with the head, the rest framed the same', async (t) => {
  const server = await serverWriting(t, ['data: 1\n\n', '', 'data: two\n\n', 'x'.repeat(5000)]);
  const wire = await rawExchange(server, 'GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  const body = wire.slice(wire.indexOf('\r\n\r\n') + 4);
  t.match(wire, /^HTTP\/1\.1 200 OK\r\n/);
  t.match(wire, /\r\nTransfer-Encoding: chunked\r\n/);
  // The empty write is no chunk: framed, it would have been the body's end.
  t.equal(body, `9\r\ndata: 1\n\n\r\nb\r\ndata: two\n\n\r\n1388\r\n${'x'.repeat(5000)}\r\n0\r\n\r\n`);

  const req = request(`http://127.0.0.1:${(server.address() as AddressInfo).port}/`, { agent: false });
  req.end();
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  let text = '';
  res.setEncoding('utf8');
  res.on('data', (part: string) => (text += part));
  await once(res, 'end');
  t.equal(text, `data: 1\n\ndata: two\n\n${'x'.repeat(5000)}`, "node's client reads the same body");
});

t.test('an HTTP/1.0 client and a HEAD request: node:http writes them, unframed or without a body', async (t) => {
  const server = await serverWriting(t, ['data: 1\n\n', 'data: two\n\n']);
  const old = await rawExchange(server, 'GET / HTTP/1.0\r\nHost: x\r\n\r\n');
  t.notMatch(old, /Transfer-Encoding/i);
  t.equal(old.slice(old.indexOf('\r\n\r\n') + 4), 'data: 1\n\ndata: two\n\n', 'the body as written, to the close');

  const head = await rawExchange(server, 'HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n');
  t.equal(head.slice(head.indexOf('\r\n\r\n') + 4), '', 'no body bytes after the head');
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
    // The head goes out with a small first chunk (node:http's write); the large ones after it are this module's.
    t.ok(writeChunk(res, Buffer.from('data: 1\n\n'), false), 'the head and a first event are taken at once');
    const chunk = Buffer.alloc(256 * 1024, 0x62);
    let writes = 0;
    // Bounded: the kernel's buffers on both sides take a few MB at most before the socket's queue fills.
    while (writes < 4096) {
      writes++;
      if (!writeChunk(res, chunk, true)) break;
    }
    t.ok(writes < 4096, `a framed write was refused after ${writes} of 256 KiB`);
    t.ok(isBehind(res), 'the response is behind');
    const drained = once(drainTarget(res), 'drain');
    client.resume();
    await drained;
    t.notOk(isBehind(res), 'and is not once its socket drained');
  },
);
