import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { LoopSlice } from './loop-slice.js';

// SPEC §4a: one request at a time per client connection. Node's HTTP server
// parses pipelined requests as they arrive and emits them all at once, so a
// client pipelining 100 requests used to take 100 worker slots and queue
// places. Here a request that arrives while its connection has one in flight
// waits, holding no slot, until that one's response is done (nginx reads the
// next request only then). A connection that closes drops what it had
// waiting; the request in flight is aborted by its own close handling.
//
// Memory: each waiting request is an IncomingMessage and a ServerResponse.
// Beyond `maxPipelined` waiting on one connection the master stops reading
// that socket, with the same `_paused` protocol Node's server uses for its own
// output backpressure (node lib/_http_server.js parserOnIncoming), and
// resumes it as the line shortens. The parser still finishes the read it is
// in, and node keeps every request it parsed until its turn or the
// connection's close: one read of 64 KiB of minimal heads is ~3,600 requests,
// ~5 MB of the master's heap per connection. So a connection with more than
// FLOOD_FACTOR × `maxPipelined` (at least FLOOD_FLOOR) waiting is closed at once (what it had
// waiting is dropped, its request in flight aborted), which lets node free
// them: a client can hold at most that many. Heads are counted in bytes too:
// 32 KiB of them waiting also stops reading, and more than 256 KiB closes the
// connection, since full-size heads (16 KiB) fit four to a read and a count
// alone let a connection hold ~36 of them, ~1 MB of heap (an attacker probe:
// 1,000 connections, 1 GB). While paused, a client that closes is noticed
// only when reading resumes. And across connections: the read node parses
// whole is up to 64 KiB of heads, ~170 KB of heap a connection, so 1,000
// connections each pipelining behind a slow stream held ~124–182 MB (a
// probe); past MAX_WAITING_HEAD_BYTES_TOTAL of heads waiting on all
// connections, a connection that adds one is closed as a flood if it holds
// a share of them (1/2048 of the bound, 8 KiB): one pipelining a request or
// two is not cut for what others hold. Heads of a paused connection whose
// client left count until it is read again, as they are held until then.

export interface ConnectionQueueOptions {
  /** Serves one request; the next on the same connection starts once `res` emits 'close'. */
  serve: (req: IncomingMessage, res: ServerResponse) => void;
  /** A waiting request dropped because its connection closed before its turn. */
  onDropped: (req: IncomingMessage, res: ServerResponse) => void;
  /** Requests waiting on one connection before the master stops reading it (limits.maxPipelinedRequests). */
  maxPipelined: () => number;
  /**
   * A connection is being closed for what it has waiting: more than its own bounds (`connection`), or a share of the
   * heads waiting on every connection once they are past their bound (`total`).
   */
  onFlood?: (socket: Socket, waiting: number, cause: 'connection' | 'total') => void;
  /** Request starts per event-loop turn, ms (loop-slice.ts); default LOOP_SLICE_MS. */
  sliceMs?: number;
  /**
   * Bytes of heads waiting on every connection together past which a connection that adds one, holding 1/2048 of
   * this or more, is closed. Default MAX_WAITING_HEAD_BYTES_TOTAL (tests pass a small one).
   */
  maxWaitingHeadBytesTotal?: number;
  /** A connection's last answer ended with nothing waiting, at `sinceMs` (performance.now()): it is quiet from then. */
  onQuiet?: (socket: Socket, sinceMs: number) => void;
}

/**
 * How far past `maxPipelined` node's parse of one read may take a connection before it is closed: room for a client
 * that pipelines a few dozen requests in one write, and a bound (4 × 32 requests, ~200 KB) on what one holds. Never
 * below FLOOD_FLOOR, so a small maxPipelinedRequests (1) does not cut a client that writes 5 requests at once.
 */
const FLOOD_FACTOR = 4;
const FLOOD_FLOOR = 128;
/** Bytes of waiting heads on one connection at which the master stops reading it, whatever their count. */
const MAX_WAITING_HEAD_BYTES = 32 * 1024;
/**
 * Bytes of waiting heads on every connection together past which one more closes its connection: ~50 MB of the
 * master's heap (a head's strings and objects are ~3× its bytes); no client that waits for its answers comes near.
 */
const MAX_WAITING_HEAD_BYTES_TOTAL = 16 * 1024 * 1024;

/** Default time of request starts per loop turn: short enough for ~100+ accepts a second under a flood. */
const LOOP_SLICE_MS = 5;

interface Waiting {
  req: IncomingMessage;
  res: ServerResponse;
  /** Its head's size, about (headBytes). */
  bytes: number;
}

interface ConnectionState {
  isBusy: boolean;
  waiting: Waiting[];
  isPausedByUs: boolean;
  /** No request of this connection has started yet: its first goes ahead of deferred ones. */
  isNew: boolean;
  /** Runs once no request of this connection is in flight or waiting (afterLast). */
  onIdle: (() => void) | undefined;
  /** Requests parsed on this connection so far. */
  requests: number;
  /** Bytes of the heads in `waiting`. */
  waitingBytes: number;
  /** The socket's bytesRead when its last answer ended with nothing waiting: more since, and a head is on its way. */
  bytesWhenIdle: number;
  /** When that was (performance.now()). */
  quietSinceMs: number;
}

interface Start {
  socket: Socket;
  state: ConnectionState;
  req: IncomingMessage;
  res: ServerResponse;
}

/** Node's own pause flag on server sockets; while set, the server never resumes reading by itself. */
type ServerSocket = Socket & { _paused?: boolean; parser?: { pause(): void; resume(): void } | null };

export class ConnectionQueue {
  readonly #options: ConnectionQueueOptions;
  readonly #states = new WeakMap<Socket, ConnectionState>();
  readonly #slice: LoopSlice<Start>;
  /** Bytes of the heads waiting on every connection. */
  #waitingBytes = 0;

  constructor(options: ConnectionQueueOptions) {
    this.#options = options;
    this.#slice = new LoopSlice<Start>({ sliceMs: options.sliceMs ?? LOOP_SLICE_MS }, (s) => this.#serve(s));
  }

  /** The server's 'request' (and 'checkContinue') listener. */
  readonly enqueue = (req: IncomingMessage, res: ServerResponse): void => {
    const socket = req.socket;
    // Parsed after an answer that said `Connection: close` (the socket is ending, maybe lingering on a refused body):
    // node:http answers nothing after such an answer, nor does the master.
    if (!socket.writable) return this.#options.onDropped(req, res);
    let state = this.#states.get(socket);
    if (state === undefined) {
      state = {
        isBusy: false,
        waiting: [],
        isPausedByUs: false,
        isNew: true,
        onIdle: undefined,
        requests: 0,
        waitingBytes: 0,
        bytesWhenIdle: -1,
        quietSinceMs: NaN,
      };
      this.#states.set(socket, state);
      const owned = state;
      socket.once('close', () => this.#drop(owned));
    }
    state.requests++;
    if (!state.isBusy) return this.#start(socket, state, req, res);
    const bytes = headBytes(req);
    state.waiting.push({ req, res, bytes });
    state.waitingBytes += bytes;
    this.#waitingBytes += bytes;
    const maxPipelined = this.#options.maxPipelined();
    const maxTotal = this.#options.maxWaitingHeadBytesTotal ?? MAX_WAITING_HEAD_BYTES_TOTAL;
    const isOwnFlood =
      state.waiting.length > Math.max(FLOOD_FACTOR * maxPipelined, FLOOD_FLOOR) ||
      state.waitingBytes > FLOOD_FACTOR * 2 * MAX_WAITING_HEAD_BYTES;
    if (isOwnFlood || (this.#waitingBytes > maxTotal && state.waitingBytes * 2048 >= maxTotal)) {
      this.#options.onFlood?.(socket, state.waiting.length, isOwnFlood ? 'connection' : 'total');
      // Its 'close' drops what waits; the rest of this read is parsed into requests dropped on arrival (above).
      socket.destroy();
      return;
    }
    if (isLineFull(state, maxPipelined) && !state.isPausedByUs) {
      const s = socket as ServerSocket;
      state.isPausedByUs = true;
      s._paused = true;
      s.pause();
    }
  };

  /**
   * Runs `then` once every request this connection has sent is answered (at once when none is in flight):
   * what the parser refused after them is answered last, never in place of an answer still due.
   */
  afterLast(socket: Socket, then: () => void): void {
    const state = this.#states.get(socket);
    if (state === undefined || (!state.isBusy && state.waiting.length === 0)) return then();
    state.onIdle = then;
  }

  /** Requests of `socket` in flight or waiting: the master has work of this connection in hand. */
  isActive(socket: Socket): boolean {
    const state = this.#states.get(socket);
    return state !== undefined && (state.isBusy || state.waiting.length > 0);
  }

  /**
   * No request of `socket` in hand and no byte of one read since `sinceMs`: it has sent nothing since it was accepted
   * (no request yet: any `sinceMs`), or since its last answer ended at `sinceMs` (onQuiet's). Client-connections.ts
   * closes the longest quiet at the bound for a new one.
   */
  isQuietSince(socket: Socket, sinceMs: number): boolean {
    const state = this.#states.get(socket);
    if (state === undefined) return socket.bytesRead === 0;
    return (
      !state.isBusy &&
      state.waiting.length === 0 &&
      socket.bytesRead === state.bytesWhenIdle &&
      state.quietSinceMs === sinceMs
    );
  }

  /** Requests parsed on `socket` so far. */
  requestCount(socket: Socket): number {
    return this.#states.get(socket)?.requests ?? 0;
  }

  /** The last request parsed on `socket` that waits for its turn, if any: the one whose body the parser reads. */
  lastWaiting(socket: Socket): IncomingMessage | undefined {
    return this.#states.get(socket)?.waiting.at(-1)?.req;
  }

  #start(socket: Socket, state: ConnectionState, req: IncomingMessage, res: ServerResponse): void {
    state.isBusy = true;
    const isFirst = state.isNew;
    state.isNew = false;
    this.#slice.submit({ socket, state, req, res }, isFirst);
  }

  #serve({ socket, state, req, res }: Start): void {
    // Deferred to a later turn, and the client left meanwhile: its 'close' has been and gone.
    if (socket.destroyed || res.destroyed || !socket.writable) {
      state.isBusy = false;
      this.#options.onDropped(req, res);
      return;
    }
    res.once('close', () => this.#next(socket, state));
    this.#options.serve(req, res);
  }

  #next(socket: Socket, state: ConnectionState): void {
    state.isBusy = false;
    // Destroyed, or ending after an answer that said `Connection: close` (node's destroySoon has run): what was
    // pipelined after it is not answered, as node:http answers nothing after such an answer.
    if (socket.destroyed || !socket.writable) return this.#drop(state);
    const next = state.waiting.shift();
    if (next !== undefined) {
      state.waitingBytes -= next.bytes;
      this.#waitingBytes -= next.bytes;
    }
    if (state.isPausedByUs && !isLineFull(state, this.#options.maxPipelined())) {
      const s = socket as ServerSocket;
      state.isPausedByUs = false;
      s._paused = false;
      s.parser?.resume();
      s.resume();
    }
    if (next !== undefined) return this.#start(socket, state, next.req, next.res);
    // Only for a bound on connections (its onQuiet): no read of the socket and the clock a request otherwise.
    if (this.#options.onQuiet !== undefined) {
      state.bytesWhenIdle = socket.bytesRead;
      state.quietSinceMs = performance.now();
      this.#options.onQuiet(socket, state.quietSinceMs);
    }
    const onIdle = state.onIdle;
    state.onIdle = undefined;
    onIdle?.();
  }

  #drop(state: ConnectionState): void {
    const dropped = state.waiting.splice(0);
    this.#waitingBytes -= state.waitingBytes;
    state.waitingBytes = 0;
    for (const { req, res } of dropped) this.#options.onDropped(req, res);
  }
}

/** As many requests waiting as the master reads ahead, or as many bytes of heads: it stops reading the connection. */
function isLineFull(state: ConnectionState, maxPipelined: number): boolean {
  return state.waiting.length >= maxPipelined || state.waitingBytes >= MAX_WAITING_HEAD_BYTES;
}

/** A parsed head's size in bytes, about: its target and each header's name and value, with their separators. */
function headBytes(req: IncomingMessage): number {
  let bytes = (req.url?.length ?? 0) + 16;
  const raw = req.rawHeaders;
  for (let i = 0; i < raw.length; i++) bytes += raw[i]!.length + 2;
  return bytes;
}
