import t, { type Test } from 'tap';
import { once } from 'node:events';
import { createServer, connect, Socket } from 'node:net';
import { IncomingMessage, ServerResponse } from 'node:http';
import { DirectAnswer, directAnswerOf, takeCallBody } from '../../../worker/direct/direct-answer.js';
import { DirectConnections } from '../../../worker/direct/connections.js';
import { DIRECT_LATE, monotonicMs, type DirectCallMessage, type DirectCallReport } from '../../../shared/direct.js';

// limits.directStreams, an IPC call (docs/ONE-HOP.md): the worker reports an answer's status before its first byte
// reaches the client's connection, whatever writes it, so the master can answer a call it heard no status of
// (master/direct-calls.ts). Here on a real connection on 127.0.0.1, its descriptor held as the worker holds one.

const OFFER = { conn: 1, keepAliveTimeoutS: 0, sendTimeoutMs: 10_000, heartbeatMs: 0, headers: {} };

interface Seen {
  report: DirectCallReport;
  /** Bytes of the answer on the connection when the report was made. */
  written: number;
}

/** Connection 1 of a DirectConnections, on a real connection on 127.0.0.1, as a worker holds one; the client's end. */
async function held(t: Test): Promise<{ connections: DirectConnections; received: () => string; client: Socket }> {
  const server = createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  const client = connect(port, '127.0.0.1');
  const [serverSide] = (await once(server, 'connection')) as [Socket];
  t.teardown(() => {
    client.destroy();
    serverSide.destroy();
    server.close();
  });
  let text = '';
  client.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
  // The duplicate a worker gets is a write-only socket around the descriptor (connections.ts).
  serverSide.pause();
  const connections = new DirectConnections();
  connections.add(1, (serverSide as Socket & { _handle: object })._handle);
  return { connections, received: () => text, client };
}

/** A call on a connection this process holds; every report with the bytes written at that moment; the client's end. */
async function call(
  t: Test,
  request: Partial<DirectCallMessage> = {},
): Promise<{
  req: IncomingMessage;
  res: ServerResponse;
  seen: Seen[];
  received: () => string;
  ended: Promise<void>;
  client: Socket;
}> {
  const { connections, received, client } = await held(t);
  const socket = connections.free(1)!;
  const seen: Seen[] = [];
  let onEnd: () => void = () => undefined;
  const ended = new Promise<void>((resolve) => (onEnd = resolve));
  const msg: DirectCallMessage = {
    type: 'call',
    id: 7,
    offer: OFFER,
    method: 'GET',
    url: '/v1/models',
    headers: {},
    body: '',
    binary: false,
    ...request,
  };
  const opened = DirectAnswer.call(
    msg,
    connections,
    (report) => {
      seen.push({ report, written: socket.bytesWritten });
      if (report.isEnd === true) onEnd();
    },
    () => undefined,
  );
  return { req: opened!.req, res: opened!.res, seen, received, ended, client };
}

t.test("a call's body is the handler's to take, once; its request stream is empty", async (t) => {
  const body = '{"model":"m","messages":[{"role":"user","content":"héllo"}]}';
  const { req, res, ended } = await call(t, { method: 'POST', url: '/v1/chat/completions', body });
  const taken = takeCallBody(req)!;
  t.equal(taken.toString('utf8'), body);
  t.equal(takeCallBody(req), undefined, 'taken once: the request, which lives as long as its answer, holds no body');
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  await once(req, 'end');
  t.same(chunks, [], 'nothing to read from the stream');
  const binary = await call(t, { method: 'POST', url: '/v1/embeddings', body: 'AP8=', binary: true });
  t.same([...takeCallBody(binary.req)!], [0, 255], 'a body that is not UTF-8 came as base64');
  t.equal(takeCallBody(new IncomingMessage(new Socket())), undefined, 'any other request: read from its stream');
  res.end();
  binary.res.end();
  await ended;
});

t.test("a call's response names its answer; any other response none", async (t) => {
  // The SSE writer and the processing pings ask (a call's client must get no `102 Processing`).
  const { res, ended } = await call(t);
  t.ok(directAnswerOf(res) instanceof DirectAnswer);
  t.equal(directAnswerOf(new ServerResponse(new IncomingMessage(new Socket()))), undefined);
  res.end();
  await ended;
});

t.test('a JSON answer: the status is reported before the first byte, the end after the last', async (t) => {
  const { res, seen, ended } = await call(t);
  res.writeHead(200, { 'content-type': 'application/json' });
  res.end('{"ok":true}');
  await ended;
  t.same(
    seen.map((s) => ({
      status: s.report.status,
      isStream: s.report.isStream,
      isEnd: s.report.isEnd,
      written: s.written,
    })),
    [
      { status: 200, isStream: false, isEnd: undefined, written: 0 },
      { status: undefined, isStream: undefined, isEnd: true, written: seen[1]!.written },
    ],
  );
  t.ok(seen[1]!.written > 0, 'the end is reported once the bytes are written');
});

t.test('an event stream: the status, marked a stream, before the first event', async (t) => {
  const { res, seen, received, ended, client } = await call(t);
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write('data: 1\n\n');
  t.same(
    seen.map((s) => ({ status: s.report.status, isStream: s.report.isStream, written: s.written })),
    [{ status: 200, isStream: true, written: 0 }],
  );
  t.equal(seen.length, 1, 'one status report, not one per write');
  res.write('data: 2\n\n');
  t.equal(seen.length, 1);
  res.end();
  await ended;
  t.equal(seen.length, 2, 'then the end');
  while (!received().includes('data: 2')) await once(client, 'data');
  t.match(received(), /^HTTP\/1\.1 200 /);
});

t.test('a call past its write lease writes nothing and gives up with L; one renewed in time answers', async (t) => {
  // shared/direct.ts, the write lease: past `writeBy` the master may be writing its own 504 on the same connection (a
  // probe read one answer inside the other), so the worker begins none, and the master answers at once on `L`.
  const late = await call(t, { offer: { ...OFFER, writeBy: monotonicMs() - 1 } });
  late.res.writeHead(200, { 'content-type': 'application/json' });
  t.equal(late.res.write('{"ok":'), true, 'the write is dropped, not held');
  late.res.end('true}');
  await late.ended;
  t.same(
    late.seen.map((s) => ({ marks: s.report.marks, status: s.report.status, isEnd: s.report.isEnd, at: s.written })),
    [{ marks: DIRECT_LATE, status: undefined, isEnd: true, at: 0 }],
    'no status, nothing written',
  );
  t.equal(late.received(), '', 'the client got no byte');

  const renewed = await call(t, { offer: { ...OFFER, writeBy: monotonicMs() - 1 } });
  directAnswerOf(renewed.res)!.renewLease(monotonicMs() + 60_000);
  directAnswerOf(renewed.res)!.renewLease(monotonicMs() - 5);
  renewed.res.writeHead(200, { 'content-type': 'application/json' });
  renewed.res.end('{"ok":true}');
  await renewed.ended;
  t.same(
    renewed.seen.map((s) => s.report.status),
    [200, undefined],
    'a renewal extends the lease; an older one does not shorten it',
  );
});

t.test('an offer past its write lease is not taken: the answer goes through the master', async (t) => {
  const { connections, received } = await held(t);
  const hop = new ServerResponse(new IncomingMessage(new Socket()));
  const late = { offer: { ...OFFER, writeBy: monotonicMs() - 1 }, connections };
  t.equal(DirectAnswer.open(late, hop, {}), undefined);
  t.equal(received(), '');
  t.equal(hop.headersSent, false, 'the hop says nothing yet: the worker answers through it');
});
