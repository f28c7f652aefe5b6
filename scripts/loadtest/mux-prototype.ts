import { fork, type ChildProcess } from 'node:child_process';
import { appendFileSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer, type IncomingHttpHeaders, type OutgoingHttpHeaders, type ServerResponse } from 'node:http';
import { createRequire } from 'node:module';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Dispatcher, Pool as UndiciPool } from 'undici';
import { readBody } from '../../shared/body.js';
import { DEFAULTS } from '../../shared/defaults.js';
import { toErrorResponse } from '../../shared/errors.js';
import { HOP_BY_HOP_HEADERS, sendError } from '../../shared/http-headers.js';

// PROTOTYPE, not graygate (`compare --sse --paths mux`, issue 10 target 1): a MULTIPLEXED master↔worker hop,
// measured before anything is built. Two processes, as graygate has. The front process (graygate's master) serves
// clients with node:http; the back process (its worker) calls the upstream with undici (a Pool's dispatch() with a
// handler, as worker/upstream/client.ts does). Between them, ONE unix socket (MUX_SOCKETS=N: N of them, streams
// spread by id) carries every stream's frames: 1 byte type, 4 bytes stream id, 4 bytes payload length, payload.
//   front → back  REQ (u32 length of a JSON {method, path, headers}, the JSON, the request body), ABORT (the
//                 client left), PAUSE / RESUME (the client's res.write returned false / its 'drain')
//   back → front  HEAD (JSON {status, headers}), DATA (the upstream body's bytes, de-chunked by undici), END, ERR
// Each side queues the frames made in one event-loop turn and writes them as ONE buffer from a setImmediate
// scheduled by the turn's first frame: every event that became ready in a turn costs the back one write syscall
// between them, and the front one read, and there is no HTTP framing or parsing on this hop.
//
// What the prototype leaves out, which graygate would need: the link's own backpressure (a front that cannot keep
// up makes the back's writes queue in memory; per-stream PAUSE/RESUME only covers a slow client), head-of-line
// blocking (one stream's large chunk delays every other stream's events on the socket), a back process that dies
// (every stream on its socket is cut; here the front just ends them), the safe hop's checks of the answer's framing,
// retries, deadlines other than undici's own headers/body timeouts, the master's timers, canary facts and routing,
// request bodies larger than memory, and TLS upstreams.
//   MUX_TARGET      the upstream's origin (e.g. http://127.0.0.1:PORT); request paths are sent as the client gave them
//   MUX_SOCKETS     unix sockets between the two processes (default 1)
//   MUX_STATS_FILE  when set, each process appends its frame and syscall-side counts every 2 s to this file
// Sends {type:'listening', url, pid, backPid} over IPC. The sockets live in a temp dir removed at exit.

const REQ = 1;
const HEAD = 2;
const DATA = 3;
const END = 4;
const ERR = 5;
const ABORT = 6;
const PAUSE = 7;
const RESUME = 8;
const FRAME_HEADER = 9;
/** Largest request body the front takes (rawbody-proxy.ts's bound). */
const MAX_REQUEST_BODY = 16 * 1024 * 1024;

/** Not passed on to the upstream: the hop-by-hop names graygate drops, and the framing the back sets itself. */
const HOP_BY_HOP: ReadonlySet<string> = new Set([...HOP_BY_HOP_HEADERS, 'host', 'content-length']);

function withoutHopByHop(headers: IncomingHttpHeaders): OutgoingHttpHeaders {
  const out: OutgoingHttpHeaders = {};
  for (const [k, v] of Object.entries(headers)) if (!HOP_BY_HOP.has(k) && v !== undefined) out[k] = v;
  return out;
}

/** Counts for MUX_STATS_FILE: writes and reads on the link sockets, frames each way. */
const stats = { writes: 0, framesOut: 0, dataOut: 0, reads: 0, framesIn: 0, dataIn: 0 };

function reportStats(role: string): void {
  const file = process.env['MUX_STATS_FILE'];
  if (file === undefined || file === '') return;
  const everyMs = 2000;
  let last = { ...stats };
  setInterval(() => {
    const d = Object.fromEntries(
      Object.entries(stats).map(([k, v]) => [k, (v - last[k as keyof typeof stats]) / (everyMs / 1000)]),
    );
    last = { ...stats };
    if (d['framesOut'] === 0 && d['framesIn'] === 0) return;
    const per = (a: number | undefined, b: number | undefined): string =>
      b === undefined || b === 0 ? '–' : ((a ?? 0) / b).toFixed(2);
    const line =
      `${new Date().toISOString()} ${role} per s: writes ${d['writes']} framesOut ${d['framesOut']} ` +
      `dataOut ${d['dataOut']} reads ${d['reads']} framesIn ${d['framesIn']} dataIn ${d['dataIn']}; ` +
      `DATA frames/write ${per(d['dataOut'], d['writes'])}, DATA frames/read ${per(d['dataIn'], d['reads'])}\n`;
    appendFileSync(file, line);
  }, everyMs).unref();
}

type OnFrame = (link: Link, type: number, id: number, payload: Buffer) => void;

/** One multiplexed socket: frames out batched per event-loop turn, frames in parsed across reads. */
class Link {
  readonly socket: Socket;
  #out: Buffer[] = [];
  #outBytes = 0;
  #isScheduled = false;
  #in: Buffer | null = null;
  readonly #flush = (): void => this.flush();

  constructor(socket: Socket, onFrame: OnFrame) {
    this.socket = socket;
    socket.setNoDelay(true);
    socket.on('data', (chunk: Buffer) => {
      stats.reads++;
      let buf = this.#in === null ? chunk : Buffer.concat([this.#in, chunk]);
      let off = 0;
      while (buf.length - off >= FRAME_HEADER) {
        const len = buf.readUInt32BE(off + 5);
        if (buf.length - off < FRAME_HEADER + len) break;
        const type = buf[off]!;
        const id = buf.readUInt32BE(off + 1);
        const payload = buf.subarray(off + FRAME_HEADER, off + FRAME_HEADER + len);
        off += FRAME_HEADER + len;
        stats.framesIn++;
        if (type === DATA) stats.dataIn++;
        onFrame(this, type, id, payload);
      }
      buf = buf.subarray(off);
      this.#in = buf.length === 0 ? null : buf;
    });
  }

  /** Queues a frame; the turn's first frame schedules the one write. */
  send(type: number, id: number, payload?: Buffer): void {
    const header = Buffer.allocUnsafe(FRAME_HEADER);
    header[0] = type;
    header.writeUInt32BE(id, 1);
    header.writeUInt32BE(payload?.length ?? 0, 5);
    this.#out.push(header);
    this.#outBytes += FRAME_HEADER;
    if (payload !== undefined && payload.length > 0) {
      this.#out.push(payload);
      this.#outBytes += payload.length;
    }
    stats.framesOut++;
    if (type === DATA) stats.dataOut++;
    if (!this.#isScheduled) {
      this.#isScheduled = true;
      setImmediate(this.#flush);
    }
  }

  flush(): void {
    this.#isScheduled = false;
    if (this.#out.length === 0 || this.socket.destroyed) return;
    const buf = this.#out.length === 1 ? this.#out[0]! : Buffer.concat(this.#out, this.#outBytes);
    this.#out = [];
    this.#outBytes = 0;
    stats.writes++;
    this.socket.write(buf);
  }
}

function json(value: unknown): Buffer {
  return Buffer.from(JSON.stringify(value));
}

// ---------------------------------------------------------------------------------------------------------------
// Front process: node:http for clients, frames to and from the back process.

interface FrontStream {
  res: ServerResponse;
  link: Link;
  isPaused: boolean;
}

function front(): void {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-mux-'));
  const cleanup = (): void => rmSync(dir, { recursive: true, force: true });
  process.on('exit', cleanup);
  const socketCount = Math.max(1, Number(process.env['MUX_SOCKETS'] ?? '1') || 1);
  const socketPath = join(dir, 'mux.sock');
  const back: ChildProcess = fork(fileURLToPath(import.meta.url), [], {
    env: { ...process.env, MUX_ROLE: 'back', MUX_SOCKET_PATH: socketPath },
  });
  const streams = new Map<number, FrontStream>();
  let next = 0;

  const onFrame: OnFrame = (link, type, id, payload) => {
    const s = streams.get(id);
    if (s === undefined) return; // the client left: the back was told (ABORT)
    const { res } = s;
    switch (type) {
      case HEAD: {
        const head = JSON.parse(payload.toString()) as { status: number; headers: IncomingHttpHeaders };
        res.writeHead(head.status, withoutHopByHop(head.headers));
        // Sent now, as a proxy sends a streamed answer's head before its first event.
        res.flushHeaders();
        return;
      }
      case DATA:
        if (!res.write(payload) && !s.isPaused) {
          s.isPaused = true;
          link.send(PAUSE, id);
          res.once('drain', () => {
            s.isPaused = false;
            if (streams.has(id)) link.send(RESUME, id);
          });
        }
        return;
      case END:
        streams.delete(id);
        res.end();
        return;
      case ERR:
        streams.delete(id);
        if (!res.headersSent)
          res.writeHead(502, { 'content-type': 'application/json' }).end('{"error":{"message":"bad gateway"}}');
        else res.destroy();
        return;
    }
  };

  const links: Link[] = [];
  const server = createServer((req, res) => {
    next = (next + 1) >>> 0;
    const id = next;
    // graygate's own body reader, bounded (a frame's length is 32 bits) and timed as the master's default.
    readBody(req, { maxBytes: MAX_REQUEST_BODY, idleTimeoutMs: DEFAULTS.limits.bodyTimeoutMs }).then(
      (body) => {
        if (res.destroyed) return;
        const link = links[id % links.length]!;
        streams.set(id, { res, link, isPaused: false });
        const meta = json({ method: req.method ?? 'GET', path: req.url ?? '/', headers: req.headers });
        const prefix = Buffer.allocUnsafe(4);
        prefix.writeUInt32BE(meta.length, 0);
        link.send(REQ, id, Buffer.concat([prefix, meta, body]));
      },
      (err: unknown) => {
        res.setHeader('connection', 'close');
        sendError(res, toErrorResponse(err));
      },
    );
    res.on('close', () => {
      const s = streams.get(id);
      if (s === undefined) return;
      streams.delete(id);
      s.link.send(ABORT, id);
    });
  });

  const endAll = (): void => {
    for (const [id, s] of streams) {
      streams.delete(id);
      s.res.destroy();
    }
  };

  back.on('message', (m: { type?: string }) => {
    if (m.type !== 'ready') return;
    let connected = 0;
    for (let i = 0; i < socketCount; i++) {
      const socket = connect(socketPath, () => {
        if (++connected < socketCount) return;
        server.listen(0, '127.0.0.1', () => {
          const { port } = server.address() as AddressInfo;
          process.send?.({ type: 'listening', url: `http://127.0.0.1:${port}`, pid: process.pid, backPid: back.pid });
        });
      });
      // The back process went away: every stream on the socket is cut (see the header).
      socket.on('error', endAll);
      socket.on('close', endAll);
      links.push(new Link(socket, onFrame));
    }
  });
  // Stopped with SIGTERM (by the load script): the back process first, so that its --cpu-prof profile is written.
  let isStopping = false;
  const stop = (): void => {
    if (isStopping) return;
    isStopping = true;
    if (back.exitCode !== null || back.signalCode !== null) process.exit(0);
    back.once('exit', () => process.exit(0));
    back.kill('SIGTERM');
  };
  back.on('exit', () => {
    if (!isStopping) process.exit(1);
  });
  process.on('SIGTERM', stop);
  process.on('disconnect', stop);
  reportStats('front');
}

// ---------------------------------------------------------------------------------------------------------------
// Back process: undici to the upstream, every answer's events as frames on the front's socket.

const requireCjs = createRequire(import.meta.url);
const Pool = requireCjs('undici/lib/dispatcher/pool.js') as typeof UndiciPool;

interface BackCall {
  controller?: Dispatcher.DispatchController;
  isAborted: boolean;
  isPaused: boolean;
}

function back(): void {
  const socketPath = process.env['MUX_SOCKET_PATH'];
  if (socketPath === undefined) throw new Error('mux back: MUX_SOCKET_PATH unset');
  const target = new URL(process.env['MUX_TARGET'] ?? 'http://127.0.0.1:1');
  const pool = new Pool(target.origin, {
    connections: 1024,
    keepAliveTimeout: 4000,
    headersTimeout: 30_000,
    bodyTimeout: 30_000,
  });
  const calls = new Map<number, BackCall>();

  const start = (link: Link, id: number, payload: Buffer): void => {
    const metaLength = payload.readUInt32BE(0);
    const meta = JSON.parse(payload.subarray(4, 4 + metaLength).toString()) as {
      method: string;
      path: string;
      headers: IncomingHttpHeaders;
    };
    // A copy: the payload is a view of the socket's read buffer.
    const body = Buffer.from(payload.subarray(4 + metaLength));
    const call: BackCall = { isAborted: false, isPaused: false };
    calls.set(id, call);
    const handler: Dispatcher.DispatchHandler = {
      onRequestStart(controller) {
        call.controller = controller;
        if (call.isAborted) controller.abort(new Error('the client left'));
      },
      onResponseStart(controller, statusCode, headers) {
        if (call.isAborted) return;
        link.send(HEAD, id, json({ status: statusCode, headers }));
        if (call.isPaused) controller.pause();
      },
      onResponseData(_controller, chunk) {
        if (!call.isAborted) link.send(DATA, id, chunk);
      },
      onResponseEnd() {
        calls.delete(id);
        if (!call.isAborted) link.send(END, id);
      },
      onResponseError(_controller, _err) {
        calls.delete(id);
        if (!call.isAborted) link.send(ERR, id);
      },
    };
    pool.dispatch(
      {
        origin: target.origin,
        path: meta.path,
        method: meta.method,
        headers: withoutHopByHop(meta.headers) as Record<string, string>,
        body: body.length === 0 ? null : body,
      },
      handler,
    );
  };

  const onFrame: OnFrame = (link, type, id, payload) => {
    if (type === REQ) return start(link, id, payload);
    const call = calls.get(id);
    if (call === undefined) return;
    switch (type) {
      case ABORT:
        call.isAborted = true;
        calls.delete(id);
        call.controller?.abort(new Error('the client left'));
        return;
      case PAUSE:
        call.isPaused = true;
        call.controller?.pause();
        return;
      case RESUME:
        call.isPaused = false;
        call.controller?.resume();
        return;
    }
  };

  const server = createNetServer((socket) => {
    // The front process went away: its streams are gone with it.
    socket.on('error', () => undefined);
    new Link(socket, onFrame);
  });
  server.listen(socketPath, () => process.send?.({ type: 'ready' }));
  process.on('disconnect', () => process.exit(0));
  process.on('SIGTERM', () => process.exit(0));
  reportStats('back');
}

if (process.env['MUX_ROLE'] === 'back') back();
else front();
