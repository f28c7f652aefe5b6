import { fork } from 'node:child_process';
import {
  Agent,
  IncomingMessage,
  ServerResponse,
  createServer,
  request,
  type IncomingHttpHeaders,
  type OutgoingHttpHeaders,
} from 'node:http';
import { Socket, type AddressInfo, type SocketConstructorOpts } from 'node:net';
import { fileURLToPath } from 'node:url';

// Issue 10's one-hop design, measured before it is built: NOT graygate, a
// prototype for `compare --sse --paths onehop`. Two processes, as graygate
// has. The front process parses the request with node:http (where graygate's
// master routes, admits and checks it), then passes a duplicate of the client
// socket's file descriptor to the back process over the IPC channel
// (SCM_RIGHTS) with the request. The back process calls the upstream and
// writes the response straight to the client; the front process never reads
// the response, and ends its own ServerResponse without writing a byte when
// the back process says it is done, then reads the connection's next request.
// So each token crosses one node process instead of two.
//
// What the prototype leaves out, which graygate would need: the master's
// timers and canary facts (the back process would report them), the client
// leaving before the back process is done (here: an abort message), a back
// process that stops mid-response (the front can only close the connection:
// it cannot know where the chunked framing stands), TLS (a socket the master
// decrypts cannot be handed over), and the internal fields the front process
// sets to end a response unwritten (`_header`, `_headerSent`, `_hasBody`).
//   ONEHOP_TARGET  the upstream's origin; ONEHOP_SOCKET (a unix socket path) replaces its host and port.
//   Sends {type:'listening', url, pid, backPid} over IPC.

const target = new URL(process.env['ONEHOP_TARGET'] ?? 'http://127.0.0.1:1');
const socketPath = process.env['ONEHOP_SOCKET'];
const upstream = socketPath === undefined ? { host: target.hostname, port: target.port } : { socketPath };

interface Call {
  id: number;
  /** The client connection: its descriptor comes with its first call. */
  conn: number;
  method: string;
  url: string;
  headers: IncomingHttpHeaders;
  body: string;
}
type Message = Call | { id: number; abort: true } | { id: number; done: true } | { conn: number; close: true };

/** What node:http's ServerResponse keeps internally; set so that end() writes nothing. */
interface Unwritten {
  _header: string | null;
  _headerSent: boolean;
  _hasBody: boolean;
}

const HOP_BY_HOP = new Set(['connection', 'keep-alive', 'transfer-encoding', 'content-length', 'te', 'upgrade']);

function withoutHopByHop(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
  return out;
}

function front(): void {
  const back = fork(fileURLToPath(import.meta.url), [], { env: { ...process.env, ONEHOP_ROLE: 'back' } });
  let next = 0;
  let nextConn = 0;
  const pending = new Map<number, ServerResponse>();
  /** Connections whose descriptor the back process holds: sent once, with the connection's first request. */
  const connIds = new WeakMap<Socket, number>();
  const server = createServer((req, res) => {
    const id = ++next;
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const socket = req.socket;
      const handle = (socket as Socket & { _handle: object | null })._handle;
      if (handle === null || socket.destroyed) return;
      pending.set(id, res);
      let conn = connIds.get(socket);
      const isFirst = conn === undefined;
      if (conn === undefined) {
        conn = ++nextConn;
        connIds.set(socket, conn);
        const closing = conn;
        // The back process's descriptor keeps the connection open: it must let go when the front does.
        socket.once('close', () => back.send({ conn: closing, close: true } satisfies Message));
      }
      const call: Call = {
        id,
        conn,
        method: req.method ?? 'GET',
        url: req.url ?? '/',
        headers: req.headers,
        body: Buffer.concat(chunks).toString('latin1'),
      };
      // keepOpen: the front process keeps its own descriptor and goes on reading the connection.
      if (isFirst) back.send(call, handle as Parameters<typeof back.send>[1], { keepOpen: true }, ignore);
      else back.send(call, undefined, undefined, ignore);
    });
    res.on('close', () => {
      if (pending.delete(id)) back.send({ id, abort: true } satisfies Message, undefined, undefined, ignore);
    });
  });
  back.on('message', (m: Message) => {
    if (!('done' in m)) return;
    const res = pending.get(m.id);
    if (res === undefined) return;
    pending.delete(m.id);
    const r = res as ServerResponse & Unwritten;
    r._header = 'written by the back process';
    r._headerSent = true;
    r._hasBody = false;
    res.end();
  });
  server.listen(0, '127.0.0.1', () => {
    const { port } = server.address() as AddressInfo;
    process.send?.({ type: 'listening', url: `http://127.0.0.1:${port}`, pid: process.pid, backPid: back.pid });
  });
  process.on('disconnect', () => process.exit(0));
}

/** A send that fails (the connection closed before its descriptor went out) loses nothing the prototype needs. */
function ignore(): void {}

function back(): void {
  const agent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });
  const calls = new Map<number, ReturnType<typeof request>>();
  const sockets = new Map<number, Socket>();
  process.on('message', (m: Message, handle: unknown) => {
    if ('close' in m) {
      sockets.get(m.conn)?.destroy(); // this process's descriptor only: no FIN of its own
      sockets.delete(m.conn);
      return;
    }
    if ('abort' in m) return void calls.get(m.id)?.destroy();
    if (!('method' in m)) return;
    let socket = sockets.get(m.conn);
    if (socket === undefined) {
      if (handle === undefined) return;
      // Write-only: reading stays with the front process's parser. `handle` is a constructor option node has
      // not typed (child_process uses it to wrap a received handle).
      socket = new Socket({ handle, readable: false, writable: true } as SocketConstructorOpts);
      sockets.set(m.conn, socket);
      // The client went away (EPIPE, reset): the front process sees it too, and ends the request.
      socket.on('error', ignore);
    }
    const req = Object.assign(Object.create(IncomingMessage.prototype) as IncomingMessage, {
      method: m.method,
      httpVersionMajor: 1,
      httpVersionMinor: 1,
      headers: m.headers,
    });
    const res = new ServerResponse(req);
    res.assignSocket(socket);
    const done = (): void => {
      calls.delete(m.id);
      res.detachSocket(socket);
      process.send?.({ id: m.id, done: true } satisfies Message);
    };
    res.on('finish', done);
    const body = Buffer.from(m.body, 'latin1');
    const up = request(
      {
        ...upstream,
        path: m.url,
        method: m.method,
        headers: { ...withoutHopByHop(m.headers), 'content-length': body.length },
        agent,
      },
      (upRes) => {
        res.writeHead(upRes.statusCode ?? 502, withoutHopByHop(upRes.headers));
        upRes.pipe(res);
      },
    );
    calls.set(m.id, up);
    up.on('error', () => {
      if (!res.headersSent) res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":"bad gateway"}');
      else res.destroy();
    });
    up.end(body);
  });
  process.on('disconnect', () => process.exit(0));
}

if (process.env['ONEHOP_ROLE'] === 'back') back();
else front();
