import type { IncomingMessage, ServerResponse } from 'node:http';
import { connect, type Socket } from 'node:net';

// PROTOTYPE, not graygate (`compare --sse --paths rawbody`): one node hop that relays the upstream's
// response BODY as raw bytes. The client side stays node:http (request parsing, the response head
// and the response's end go through the ServerResponse, so node's keep-alive bookkeeping for the
// client connection is untouched). The upstream side is a small keep-alive pool of `net` sockets:
// the request head + body are written by hand, the response head is parsed minimally (status line
// and headers up to CRLFCRLF), and a chunked body's bytes are written to the client socket
// unchanged: both hops are HTTP/1.1 chunked, so the upstream's chunk framing is already the framing
// the client needs. A small scanner walks the chunk-size lines (skipping chunk data by length) to
// find the last chunk; everything before it is forwarded raw, the last chunk and any trailers are
// dropped, and res.end() writes node's own `0\r\n\r\n`, after which the upstream socket goes back
// to the pool. Backpressure: the upstream socket is paused when the client socket's write returns
// false and resumed on its 'drain'.
// A Content-Length body is relayed raw too (counted); a bodiless answer ends at once; a
// close-delimited one, a pipelined request (its ServerResponse has no socket yet) or an HTTP/1.0
// client goes through node's own framing (res.write), the upstream socket not reused.

interface Target {
  host?: string;
  port?: number;
  socketPath?: string;
}

const MAX_HEAD = 64 * 1024;
const MAX_REQUEST_BODY = 16 * 1024 * 1024;
const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-connection',
  'transfer-encoding',
  'te',
  'trailer',
  'upgrade',
  'proxy-authorization',
  'proxy-authenticate',
]);

/** RAWBODY_ONREAD=1 (path `rawlean`): upstream sockets read with net's `onread` (no Readable push / 'data'). */
const IS_ONREAD = process.env['RAWBODY_ONREAD'] === '1';
type Bytes = (buf: Buffer) => void;
type UpSocket = Socket & { onBytes?: Bytes; pool?: Pool };

function onReadCallback(this: UpSocket, n: number, buf: Buffer): boolean {
  // The read buffer is the socket's own and reused by its next read: copy what is handed on.
  this.onBytes?.(Buffer.from(buf.subarray(0, n)));
  return true;
}

class Pool {
  readonly #idle: Socket[] = [];
  readonly #target: Target;
  constructor(target: Target) {
    this.#target = target;
  }

  /** Routes an upstream socket's bytes to fn (the 'data' event, or onread's callback). */
  static listen(s: Socket, fn: Bytes): void {
    if (IS_ONREAD) (s as UpSocket).onBytes = fn;
    else s.on('data', fn);
  }
  static unlisten(s: Socket, fn: Bytes): void {
    if (IS_ONREAD) {
      if ((s as UpSocket).onBytes === fn) (s as UpSocket).onBytes = undefined;
    } else s.removeListener('data', fn);
  }

  /** An idle socket (reused: true) or a new one. */
  acquire(): { socket: Socket; isReused: boolean } {
    for (;;) {
      const s = this.#idle.pop();
      if (s === undefined) break;
      if (s.destroyed || !s.writable) continue;
      s.removeListener('close', onIdleClose);
      const idle = idleHandlers.get(s);
      if (idle !== undefined) Pool.unlisten(s, idle);
      return { socket: s, isReused: true };
    }
    const onread = IS_ONREAD ? { onread: { buffer: Buffer.allocUnsafe(16 * 1024), callback: onReadCallback } } : {};
    const s =
      this.#target.socketPath !== undefined
        ? connect({ path: this.#target.socketPath, ...onread })
        : connect({ host: this.#target.host ?? '127.0.0.1', port: this.#target.port ?? 80, noDelay: true, ...onread });
    // onread: flowing, so EOF still ends and closes the socket.
    if (IS_ONREAD) s.resume();
    s.on('error', () => {}); // reported through 'close' to whoever holds it
    return { socket: s, isReused: false };
  }

  release(s: Socket): void {
    if (s.destroyed || !s.writable) return;
    if (IS_ONREAD) (s as UpSocket).onBytes = undefined;
    else s.removeAllListeners('data');
    s.removeAllListeners('end');
    s.removeAllListeners('close');
    s.on('close', onIdleClose);
    // Bytes on an idle connection are a protocol error: drop it.
    const idle = (): void => onIdleData.call(s);
    idleHandlers.set(s, idle);
    Pool.listen(s, idle);
    (s as Socket & { pool?: Pool }).pool = this;
    this.#idle.push(s);
  }

  forget(s: Socket): void {
    const i = this.#idle.indexOf(s);
    if (i !== -1) this.#idle.splice(i, 1);
  }
}

function onIdleClose(this: Socket): void {
  (this as Socket & { pool?: Pool }).pool?.forget(this);
}
const idleHandlers = new WeakMap<Socket, Bytes>();
function onIdleData(this: Socket): void {
  this.destroy();
  (this as Socket & { pool?: Pool }).pool?.forget(this);
}

/** Chunked-body scanner states. */
const enum St {
  Size, // in a chunk-size line, before ';' or CR
  Ext, // in the rest of the size line (extensions), until LF
  Data, // skipping chunk data
  DataCr, // expecting CR after data
  DataLf, // expecting LF after data
  Trailer, // after the last chunk's size line: trailer lines until an empty one
  Done,
}

export interface ScanResult {
  /** Withheld bytes of a size line begun in an earlier buffer, now known not to be the last chunk: write first. */
  pending: Buffer | null;
  /** buf[from, forwardEnd) is body to forward (before the last chunk, or before a size line not finished yet). */
  forwardEnd: number;
  /** Index just past the message's end, or -1. */
  end: number;
}

/**
 * Walks a chunked body's framing without copying it: size lines are parsed, chunk data skipped by
 * length. A size line cut by a buffer's end is withheld (copied, a few bytes) until it is known
 * whether it is the last chunk, which is never forwarded: the ServerResponse writes its own.
 */
class ChunkScanner {
  #state = St.Size;
  #size = 0;
  #digits = 0;
  #remaining = 0;
  #lineLen = 0;
  #pending: Buffer | null = null;
  error: string | null = null;

  scan(buf: Buffer, from: number): ScanResult {
    let i = from;
    const n = buf.length;
    let released: Buffer | null = null;
    // Where the current size line began in buf; -1: in an earlier buffer (its bytes are #pending).
    let lineStart = this.#pending !== null ? -1 : from;
    while (i < n) {
      switch (this.#state) {
        case St.Data: {
          const take = Math.min(this.#remaining, n - i);
          i += take;
          this.#remaining -= take;
          if (this.#remaining === 0) this.#state = St.DataCr;
          break;
        }
        case St.Size: {
          const c = buf[i]!;
          let v: number;
          if (c >= 0x30 && c <= 0x39) v = c - 0x30;
          else if (c >= 0x61 && c <= 0x66) v = c - 0x57;
          else if (c >= 0x41 && c <= 0x46) v = c - 0x37;
          else v = -1;
          if (v >= 0) {
            if (++this.#digits > 12) return this.#fail('chunk size too long');
            this.#size = this.#size * 16 + v;
            i++;
          } else if (this.#digits === 0) return this.#fail('chunk size missing');
          else if (c === 0x3b /* ; */ || c === 0x0d /* CR */) {
            // The prototype skips extensions up to LF; a real build would check them (no bare CR/LF).
            this.#state = St.Ext;
            i++;
          } else return this.#fail('bad chunk size line');
          break;
        }
        case St.Ext: {
          const lf = buf.indexOf(0x0a, i);
          if (lf === -1) {
            i = n;
            break;
          }
          i = lf + 1;
          if (this.#size === 0) {
            // The last chunk: nothing from its line on is forwarded.
            this.#pending = null;
            this.#state = St.Trailer;
            this.#lineLen = 0;
            const forwardEnd = lineStart === -1 ? from : lineStart;
            return this.#trailer(buf, i, from, released, forwardEnd);
          }
          if (this.#pending !== null) {
            released = this.#pending;
            this.#pending = null;
          }
          this.#state = St.Data;
          this.#remaining = this.#size;
          this.#size = 0;
          this.#digits = 0;
          break;
        }
        case St.DataCr:
          if (buf[i] !== 0x0d) return this.#fail('no CR after chunk data');
          this.#state = St.DataLf;
          i++;
          break;
        case St.DataLf:
          if (buf[i] !== 0x0a) return this.#fail('no LF after chunk data');
          this.#state = St.Size;
          i++;
          lineStart = i;
          break;
        default:
          return this.#trailer(buf, i, from, released, from);
      }
    }
    if (this.#state === St.Size || this.#state === St.Ext) {
      // A size line not finished in this buffer: withhold it.
      const start = lineStart === -1 ? from : lineStart;
      if (start < n) {
        const tail = Buffer.from(buf.subarray(start, n));
        this.#pending = this.#pending === null ? tail : Buffer.concat([this.#pending, tail]);
        if (this.#pending.length > 4096) return this.#fail('chunk size line too long');
      }
      return { pending: released, forwardEnd: start, end: -1 };
    }
    return { pending: released, forwardEnd: n, end: -1 };
  }

  /** Trailer lines (dropped) until an empty one. */
  #trailer(buf: Buffer, i: number, _from: number, released: Buffer | null, forwardEnd: number): ScanResult {
    const n = buf.length;
    while (i < n) {
      const c = buf[i++]!;
      if (c === 0x0a) {
        if (this.#lineLen === 0) {
          this.#state = St.Done;
          return { pending: released, forwardEnd, end: i };
        }
        this.#lineLen = 0;
      } else if (c !== 0x0d) {
        if (++this.#lineLen > 8192) return this.#fail('trailer line too long');
      }
    }
    return { pending: released, forwardEnd, end: -1 };
  }

  #fail(why: string): ScanResult {
    this.error = why;
    return { pending: null, forwardEnd: 0, end: -1 };
  }
}

export function rawBodyHandler(target: Target): (req: IncomingMessage, res: ServerResponse) => void {
  const pool = new Pool(target);

  return (req, res) => {
    // Request head: the client's headers minus hop-by-hop ones, as node read them (rawHeaders keeps case).
    let head = `${req.method} ${req.url} HTTP/1.1\r\n`;
    const raw = req.rawHeaders;
    let isChunkedRequest = false;
    for (let i = 0; i < raw.length; i += 2) {
      const name = raw[i]!;
      const lower = name.toLowerCase();
      if (lower === 'transfer-encoding') isChunkedRequest = true;
      if (HOP_BY_HOP.has(lower)) continue;
      head += `${name}: ${raw[i + 1]}\r\n`;
    }
    // The prototype buffers the (small) request body, so it can send it as Content-Length and
    // retry once on a fresh socket when a pooled one was closed under it.
    const parts: Buffer[] = [];
    let bodyBytes = 0;
    req.on('data', (c: Buffer) => {
      bodyBytes += c.length;
      if (bodyBytes > MAX_REQUEST_BODY) {
        req.destroy();
        return;
      }
      parts.push(c);
    });
    req.on('end', () => {
      let h = head;
      if (isChunkedRequest || bodyBytes > 0) {
        if (isChunkedRequest) h += `Content-Length: ${bodyBytes}\r\n`;
      }
      h += 'Connection: keep-alive\r\n\r\n';
      const bytes = Buffer.concat([Buffer.from(h, 'latin1'), ...parts]);
      send(bytes, req.method === 'HEAD', true);
    });

    let isClientGone = false;
    let upstream: Socket | null = null;
    res.on('close', () => {
      if (res.writableFinished) return;
      isClientGone = true;
      upstream?.destroy();
    });

    function badGateway(): void {
      if (isClientGone) return;
      if (res.headersSent) return void res.destroy();
      res.writeHead(502, { 'content-type': 'application/json' });
      res.end('{"error":{"message":"bad gateway","type":"gateway_error","code":"worker_error"}}');
    }

    function send(bytes: Buffer, isHead: boolean, mayRetry: boolean): void {
      if (isClientGone) return;
      const { socket: up, isReused } = pool.acquire();
      upstream = up;
      let headBuf: Buffer | null = null;
      let isHeadDone = false;
      let sawByte = false;
      let mode: 'chunked' | 'length' | 'close' | 'none' = 'none';
      let remaining = 0;
      let isKeepAlive = true;
      let isFinished = false;
      const scanner = new ChunkScanner();
      const client = res.socket;

      const onDrain = (): void => {
        up.resume();
      };
      const finish = (reuse: boolean): void => {
        if (isFinished) return;
        isFinished = true;
        Pool.unlisten(up, onData);
        up.removeListener('close', onClose);
        up.removeListener('end', onEnd);
        client?.removeListener('drain', onDrain);
        up.resume();
        upstream = null;
        res.end();
        if (reuse && isKeepAlive) pool.release(up);
        else up.destroy();
      };
      const onClose = (): void => {
        if (isFinished) return;
        if (!sawByte && isReused && mayRetry) {
          // A pooled connection the upstream had closed: once more on a new one.
          isFinished = true;
          Pool.unlisten(up, onData);
          upstream = null;
          send(bytes, isHead, false);
          return;
        }
        if (mode === 'close' && isHeadDone) {
          isFinished = true;
          upstream = null;
          res.end();
          return;
        }
        isFinished = true;
        upstream = null;
        badGateway();
      };
      const onEnd = (): void => {
        if (mode === 'close') onClose();
      };
      let canRaw = false;
      const writeRaw = (chunk: Buffer): void => {
        if (chunk.length === 0) return;
        // Raw on the client socket; through node's ServerResponse when the raw path is not open.
        if (!(canRaw ? client!.write(chunk) : res.write(chunk))) up.pause();
      };
      const body = (buf: Buffer, from: number): void => {
        if (mode === 'chunked') {
          const { pending, forwardEnd, end } = scanner.scan(buf, from);
          if (scanner.error !== null) {
            up.destroy();
            isFinished = true;
            upstream = null;
            res.destroy();
            return;
          }
          if (pending !== null) writeRaw(pending);
          writeRaw(buf.subarray(from, forwardEnd));
          if (end !== -1) finish(end === buf.length);
        } else if (mode === 'length') {
          const take = Math.min(remaining, buf.length - from);
          writeRaw(buf.subarray(from, from + take));
          remaining -= take;
          if (remaining === 0) finish(from + take === buf.length);
        } else if (mode === 'close') {
          // node frames it (chunked to the client); the upstream socket is not reused.
          if (!res.write(buf.subarray(from))) up.pause();
        }
      };
      const onData = (buf: Buffer): void => {
        sawByte = true;
        if (isHeadDone) return body(buf, 0);
        headBuf = headBuf === null ? buf : Buffer.concat([headBuf, buf]);
        const at = headBuf.indexOf('\r\n\r\n', 0, 'latin1');
        if (at === -1) {
          if (headBuf.length > MAX_HEAD) {
            up.destroy();
          }
          return;
        }
        const text = headBuf.toString('latin1', 0, at);
        const rest = headBuf;
        const bodyFrom = at + 4;
        headBuf = null;
        const lines = text.split('\r\n');
        const m = /^HTTP\/1\.([01]) (\d{3})(?: (.*))?$/.exec(lines[0]!);
        if (m === null) return void up.destroy();
        const status = Number(m[2]);
        if (status >= 100 && status < 200 && status !== 101) {
          // An interim answer: skip it and read the next head.
          const more = rest.subarray(bodyFrom);
          if (more.length > 0) onData(more);
          return;
        }
        isHeadDone = true;
        if (m[1] === '0') isKeepAlive = false;
        const headers: string[] = [];
        let te: string | undefined;
        let cl: string | undefined;
        for (let i = 1; i < lines.length; i++) {
          const line = lines[i]!;
          const colon = line.indexOf(':');
          if (colon <= 0) return void up.destroy();
          const name = line.slice(0, colon).trim();
          const value = line.slice(colon + 1).trim();
          const lower = name.toLowerCase();
          if (lower === 'transfer-encoding') {
            if (te !== undefined) return void up.destroy();
            te = value.toLowerCase();
          } else if (lower === 'content-length') {
            if (cl !== undefined && cl !== value) return void up.destroy();
            cl = value;
          } else if (lower === 'connection') {
            if (/\bclose\b/i.test(value)) isKeepAlive = false;
          }
          if (HOP_BY_HOP.has(lower) || lower === 'content-length') continue;
          headers.push(name, value);
        }
        const bodyless = isHead || status === 204 || status === 304;
        canRaw = client !== null && res.socket === client && req.httpVersionMajor === 1 && req.httpVersionMinor === 1;
        if (bodyless) mode = 'none';
        else if (te !== undefined) {
          // Smuggling guard: TE with CL is refused; anything but exactly "chunked" too.
          if (te !== 'chunked' || cl !== undefined) return void up.destroy();
          mode = 'chunked';
        } else if (cl !== undefined) {
          if (!/^\d{1,15}$/.test(cl)) return void up.destroy();
          mode = 'length';
          remaining = Number(cl);
        } else {
          mode = 'close';
          isKeepAlive = false;
        }
        if (mode === 'chunked' && !canRaw) {
          // Not for this prototype's raw path: a chunked body re-framed by node would need a
          // decoder. Give up (never the case in the compare workloads).
          up.destroy();
          return;
        }
        if (mode === 'chunked') headers.push('Transfer-Encoding', 'chunked');
        else if (mode === 'length') headers.push('Content-Length', String(remaining));
        try {
          // node validates names and values (ERR_INVALID_HTTP_TOKEN / ERR_INVALID_CHAR): a bad upstream head is a 502.
          res.writeHead(status, m[3] ?? '', headers);
        } catch {
          up.destroy();
          return;
        }
        if (mode === 'none') return void finish(rest.length === bodyFrom);
        res.flushHeaders();
        client?.on('drain', onDrain);
        if (mode === 'length' && remaining === 0) return void finish(rest.length === bodyFrom);
        if (bodyFrom < rest.length) body(rest, bodyFrom);
      };
      Pool.listen(up, onData);
      up.on('close', onClose);
      up.on('end', onEnd);
      up.write(bytes);
    }
  };
}
