import type { OutgoingHttpHeaders } from 'node:http';
import { IncomingMessage, ServerResponse } from '../../shared/node-http.js';
import type { Socket } from 'node:net';
import { Readable } from 'node:stream';
import {
  DIRECT_ALIVE,
  DIRECT_CLIENT_GONE,
  DIRECT_DONE,
  DIRECT_FAILED,
  DIRECT_FIRST_CONTENT,
  DIRECT_HEADER,
  DIRECT_LATE,
  DIRECT_SEND_TIMEOUT,
  DIRECT_TIME_PER_TOKEN,
  decodeBody,
  monotonicMs,
  type DirectCallMessage,
  type DirectCallReport,
  type DirectOffer,
} from '../../shared/direct.js';
import { isEventStream } from '../../shared/http-headers.js';
import type { DirectConnections } from './connections.js';

// limits.directStreams (issue 10, docs/ONE-HOP.md): an answer written
// straight to the client's connection. The client's response is a node:http
// ServerResponse on the connection's write-only socket, so node writes its
// head and body as it writes every answer (a stream's chunks after the first
// framed by shared/chunked-write.ts, as on every hop). The master hears
// control bytes (shared/direct.ts) instead of the answer, by one of two ways:
//  - an offer: the master's HTTP request offered the connection and a streamed
//    answer took it when its status went out; the bytes are the body of the
//    worker's response to that request (the `hop`);
//  - a call: the master passed the request as an IPC message on a connection
//    this process holds; every answer to it goes to the client, and the bytes
//    go back in `call-report` messages.
// A heartbeat timer per answer and a few bytes per answer, never per event.

/** A request on the direct path: the master's offer, and the connections this worker holds. */
export interface DirectRoute {
  offer: DirectOffer;
  connections: DirectConnections;
}

/** The answer's status and kind, once its head went out. */
interface Head {
  status: number;
  isStream: boolean;
}

/** Where the control bytes go. */
interface Hop {
  /** Control bytes now. */
  mark(bytes: string): void;
  /** The head is about to go out: reported before the answer's first byte. */
  status(head: Head): void;
  /** The last control bytes of an answer that was written whole (`E?=N`); `isLast`: it said `Connection: close`. */
  done(bytes: string, isLast: boolean, answer: DirectAnswer): void;
  /**
   * The answer was given up (`mark`; '' when the handler broke it off): the master hears why, and the call ends (the
   * handler aborts it).
   */
  giveUp(mark: string, answer: DirectAnswer): void;
}

/**
 * An IPC call's response, the client's: it carries its answer, for the SSE writer and the processing pings. A field,
 * not a WeakMap entry: V8's young-generation GC keeps a WeakMap's values alive, so every call's objects (the answer,
 * its response, request and socket writes) outlived two scavenges and were copied to the old generation, for a full
 * GC to free (docs/BENCHMARKS.md, "Objects that outlived their request").
 */
class CallResponse extends ServerResponse {
  answer: DirectAnswer | undefined = undefined;
}

/**
 * An IPC call's request. Its body came whole in the message, so it is a field the handler takes (takeCallBody), not
 * a stream pushed and read back: that read was ~2.4 % of the worker's CPU a stream (a Readable's push, `data` and
 * `end`, readBody's listeners, promise and copy; docs/BENCHMARKS.md, "A stream's set-up, per process"). The stream
 * itself is empty and ended. The body needs no memory of its own: Buffer.from gives one above 4 KiB its own, and the
 * preparer moves a body's memory to its thread (over 32 KiB) only when the body owns all of it (toTransferable).
 */
class CallRequest extends Readable {
  body: Buffer | undefined = undefined;

  constructor() {
    super({ read: () => undefined });
  }
}

/**
 * The body of an IPC call's request, once: the field is emptied, so that the request, which lives as long as its
 * answer, does not hold the body (issue 10). Undefined for any other request (its body is read from the stream).
 */
export function takeCallBody(req: IncomingMessage): Buffer | undefined {
  if (!((req as unknown) instanceof CallRequest)) return undefined;
  const call = req as unknown as CallRequest;
  const body = call.body;
  call.body = undefined;
  return body;
}

/** The IPC call's answer being written to connection `conn`, if any (the socket's response is the call's). */
export function answerOn(connections: DirectConnections, conn: number): DirectAnswer | undefined {
  const res = connections.writing(conn);
  return res === undefined ? undefined : directAnswerOf(res);
}

/** The direct answer `res` is the client's response of, if any (an IPC call's response from the start). */
export function directAnswerOf(res: ServerResponse): DirectAnswer | undefined {
  return res instanceof CallResponse ? res.answer : undefined;
}

export class DirectAnswer {
  /** The client's response: where the answer goes. */
  readonly client: ServerResponse;
  /**
   * The connection's socket: its `drain` and `writableNeedDrain` are the answer's backpressure. node:http sends a
   * response `drain` only from the listener its server puts on its own sockets, which this one is not.
   */
  readonly socket: Socket;
  readonly #hop: Hop;
  readonly #onDrain = (): void => {
    this.#clearSendTimer();
    // What node:http's server does for its own sockets (socketOnDrain): the response's writers wait on its `drain`.
    const client = this.client as ServerResponse & Record<symbol, boolean>;
    if (client.writableFinished || !client.writableNeedDrain) return;
    const kNeedDrain = needDrainSymbol(client);
    if (kNeedDrain !== undefined) client[kNeedDrain] = false;
    client.emit('drain');
  };
  readonly #heartbeat: NodeJS.Timeout | undefined;
  readonly #sendTimeoutMs: number;
  readonly #bytesAtStart: number;
  #sendTimer: NodeJS.Timeout | undefined = undefined;
  /** Bytes not yet with the kernel when the send timer was armed: less when it fires is progress. */
  #backlogAtArm = 0;
  /** The handler destroyed the response (an upstream failure mid-answer): not the client's doing. */
  #isBrokenOff = false;
  #isFailed = false;
  /** A stream's mean ms between content events after the first, given at its end; NaN: none. */
  #timePerTokenMs = NaN;
  #isSettled = false;
  #isStatusReported = false;
  /** The write lease (shared/direct.ts): no first byte from this monotonicMs() on. Infinity: none. */
  #writeBy: number;

  /**
   * Takes the offered connection if this worker holds it and nothing else is being written to it; undefined
   * otherwise (the answer then goes through the master as usual).
   */
  static open(route: DirectRoute, hop: ServerResponse, headers: OutgoingHttpHeaders): DirectAnswer | undefined {
    // Past its write lease (shared/direct.ts) the master may be answering the request itself: the answer goes through
    // the master, which relays it if it still waits for it. Checked last thing before the hop's head says otherwise.
    const { writeBy } = route.offer;
    if (writeBy !== undefined && monotonicMs() >= writeBy) return undefined;
    const socket = route.connections.free(route.offer.conn);
    if (socket === undefined || hop.headersSent || hop.destroyed) return undefined;
    // What a server's response needs of its request: an HTTP/1.1 POST (only POST endpoints stream).
    const client = responseOn(
      socket,
      requestOf(new Readable({ read: () => undefined }), 'POST', '/', {}),
      route.offer,
      ServerResponse,
    );
    // The hop's head, written below, tells the master the answer is the worker's: no lease after it.
    const answer = new DirectAnswer(socket, client, httpHop(hop), { ...route.offer, writeBy: Infinity });
    answer.#watchWrites();
    // The master's request ended first (its client left, or its timers cut the connection): nothing more to write.
    hop.once('close', () => answer.#abandon());
    hop.writeHead(200, {
      [DIRECT_HEADER]: '1',
      'content-type': 'text/plain; charset=latin1',
      'cache-control': 'no-store',
    });
    hop.flushHeaders();
    client.writeHead(200, headers);
    return answer;
  }

  /**
   * An IPC call (master/direct-calls.ts) on connection `msg.offer.conn`: the request, and the client's response to
   * answer it on; undefined when this worker does not hold the connection, or something is being written to it
   * (reported).
   */
  static call(
    msg: DirectCallMessage,
    connections: DirectConnections,
    report: (msg: DirectCallReport) => void,
    onSettled: () => void,
  ): { req: IncomingMessage; res: ServerResponse } | undefined {
    const socket = connections.free(msg.offer.conn);
    if (socket === undefined) {
      report({ type: 'call-report', id: msg.id, marks: DIRECT_CLIENT_GONE, isEnd: true });
      return undefined;
    }
    const req = requestOf(new CallRequest(), msg.method, msg.url, msg.headers);
    req.body = decodeBody(msg);
    req.push(null);
    const client = responseOn(socket, req, msg.offer, CallResponse);
    const answer = new DirectAnswer(socket, client, ipcHop(msg.id, report, onSettled), msg.offer);
    client.answer = answer;
    answer.#watchWrites();
    return { req, res: client };
  }

  private constructor(
    socket: Socket,
    client: ServerResponse,
    hop: Hop,
    timing: Pick<DirectOffer, 'sendTimeoutMs' | 'heartbeatMs' | 'writeBy'>,
  ) {
    this.socket = socket;
    this.client = client;
    this.#hop = hop;
    this.#writeBy = timing.writeBy ?? Infinity;
    this.#sendTimeoutMs = timing.sendTimeoutMs;
    this.#bytesAtStart = socket.bytesWritten;
    socket.on('drain', this.#onDrain);
    // The whole answer is with the kernel.
    client.once('finish', () => this.#settle());
    // The connection failed or closed mid-answer (the client left, or the master closed it): the call ends.
    client.once('close', () => this.#giveUp(DIRECT_CLIENT_GONE));
    if (timing.heartbeatMs > 0) this.#heartbeat = setInterval(() => this.#control(DIRECT_ALIVE), timing.heartbeatMs);
  }

  /**
   * Whatever writes the answer (the SSE writer, a JSON answer, a relay of bytes): a write the socket did not take at
   * once, or an end with bytes still queued, must be read within sendTimeoutMs, or a client that reads nothing would
   * hold the worker's slot for as long as it keeps the connection open. Fixed arity: nothing allocated per write.
   */
  #watchWrites(): void {
    const client = this.client;
    const write = client.write.bind(client) as (chunk: unknown, encoding?: unknown, cb?: unknown) => boolean;
    const end = client.end.bind(client) as (chunk?: unknown, encoding?: unknown, cb?: unknown) => ServerResponse;
    client.write = ((chunk: unknown, encoding?: unknown, cb?: unknown): boolean => {
      // Past its lease, nothing goes out: the call was given up (the handler's response closes).
      if (!this.#isStatusReported && !this.#reportStatus()) return true;
      const isReady = write(chunk, encoding, cb);
      if (!isReady) this.behind();
      return isReady;
    }) as ServerResponse['write'];
    client.end = ((chunk?: unknown, encoding?: unknown, cb?: unknown): ServerResponse => {
      if (!this.#isStatusReported && !this.#reportStatus()) return client;
      end(chunk, encoding, cb);
      if (this.socket.writableLength > 0) this.behind();
      return client;
    }) as ServerResponse['end'];
    // A writer that breaks the answer off (a byte relay whose upstream failed) destroys the response, which closes
    // the socket: the master must hear the worker's failure, not a client that left.
    const destroy = client.destroy.bind(client);
    client.destroy = (err?: Error): ServerResponse => {
      this.#isBrokenOff = true;
      return destroy(err);
    };
  }

  /**
   * Before the first byte of any answer: the master hears the status first, so a call it heard no status of has
   * written nothing, and the master can answer it itself (a 502 when this process dies, a 504 when it stalls).
   */
  #reportStatus(): boolean {
    if (this.#isSettled) return true;
    // Past the write lease the master may be writing its own answer (its 504): none from here (shared/direct.ts).
    if (this.#writeBy !== Infinity && monotonicMs() >= this.#writeBy) {
      this.#giveUp(DIRECT_LATE);
      return false;
    }
    this.#isStatusReported = true;
    this.#hop.status({ status: this.client.statusCode, isStream: isEventStreamAnswer(this.client) });
    return true;
  }

  /** IPC `call-lease`: the master renewed the call's write lease on a sign of life. */
  renewLease(writeBy: number): void {
    if (writeBy > this.#writeBy) this.#writeBy = writeBy;
  }

  /** The first content event went out (the canary's first token, in the master). */
  firstContent(): void {
    this.#control(DIRECT_FIRST_CONTENT);
  }

  /**
   * A write to the client was not taken at once: it must be read within sendTimeoutMs. Public for writers that write
   * to the socket itself (shared/chunked-write.ts); once armed, a second call changes nothing.
   */
  behind(): void {
    if (this.#sendTimer !== undefined || this.#isSettled) return;
    this.#backlogAtArm = this.#backlog();
    this.#sendTimer = setTimeout(() => this.#onSendTimeout(), this.#sendTimeoutMs);
  }

  /**
   * What the client has yet to take: the socket's queue, and what the kernel has not taken of the write in flight
   * (libuv's writeQueueSize: one large write, a JSON answer's, shrinks only there).
   */
  #backlog(): number {
    const handle = (this.socket as Socket & { _handle?: { writeQueueSize?: number } | null })._handle;
    return this.socket.writableLength + (handle?.writeQueueSize ?? 0);
  }

  /** The answer ends with an error event. */
  fail(): void {
    this.#isFailed = true;
  }

  /**
   * Ends the client's answer; the master hears it is done once the last byte is with the kernel, with the stream's
   * time per token when it has one (`timePerTokenMs` ≥ 0).
   */
  end(timePerTokenMs = NaN): void {
    this.#timePerTokenMs = timePerTokenMs;
    if (!this.#isSettled) this.client.end();
  }

  #onSendTimeout(): void {
    this.#sendTimer = undefined;
    // nginx's send_timeout: a client that took something since is slow, not gone; it gets another sendTimeoutMs.
    if (this.#backlog() < this.#backlogAtArm) return this.behind();
    // The master closes the client's connection.
    this.#giveUp(DIRECT_SEND_TIMEOUT);
  }

  #clearSendTimer(): void {
    clearTimeout(this.#sendTimer);
    this.#sendTimer = undefined;
  }

  #control(bytes: string): void {
    if (!this.#isSettled) this.#hop.mark(bytes);
  }

  /** The master's request closed first: let go of the connection; the handler aborts the call. */
  #abandon(): void {
    if (this.#isSettled) return;
    this.#release();
  }

  /**
   * Ends the answer early: lets go of the connection, tells the master why (`mark`): `T` (the client took nothing
   * for sendTimeoutMs) or `C` (the connection went mid-answer, which the master must hear was the client's doing, or
   * that close, reaching it before its own socket's, reads as the worker's failure, and a client's "stop" counted
   * against the version in the canary). The hop then ends the call.
   */
  #giveUp(mark: string): void {
    if (this.#isSettled) return;
    this.#release();
    this.#hop.giveUp(this.#isBrokenOff && mark === DIRECT_CLIENT_GONE ? '' : mark, this);
  }

  /** The whole answer is with the kernel: the master hears it is done, and how many bytes it was. */
  #settle(): void {
    if (this.#isSettled) return;
    const bytes = this.socket.bytesWritten - this.#bytesAtStart;
    const isLast = !this.client.shouldKeepAlive || /close/i.test(String(this.client.getHeader('connection') ?? ''));
    this.#release();
    const perToken =
      this.#timePerTokenMs >= 0 ? `${DIRECT_TIME_PER_TOKEN}${Math.round(this.#timePerTokenMs * 1000)};` : '';
    this.#hop.done(`${perToken}${this.#isFailed ? DIRECT_FAILED : ''}${DIRECT_DONE}${bytes}`, isLast, this);
  }

  #release(): void {
    this.#isSettled = true;
    clearInterval(this.#heartbeat);
    this.#clearSendTimer();
    this.socket.off('drain', this.#onDrain);
    if (this.client.socket !== null) this.client.detachSocket(this.socket);
  }
}

let kNeedDrain: symbol | null | undefined;

/** node:http's private `kNeedDrain` of a response (lib/_http_outgoing.js), found once; undefined if not there. */
function needDrainSymbol(res: ServerResponse): symbol | undefined {
  kNeedDrain ??= Object.getOwnPropertySymbols(res).find((s) => s.description === 'kNeedDrain') ?? null;
  return kNeedDrain ?? undefined;
}

/**
 * Whether a response is an event stream, from its Content-Type: set with setHeader, or only in the head writeHead
 * built (node keeps no header map when writeHead gets them all).
 */
function isEventStreamAnswer(res: ServerResponse): boolean {
  const type = headerText(res.getHeader('content-type'));
  if (type !== undefined) return isEventStream(type);
  const head = (res as ServerResponse & { _header?: string | null })._header;
  return typeof head === 'string' && /\r\ncontent-type:[ \t]*text\/event-stream/i.test(head);
}

function headerText(value: number | string | string[] | undefined): string | undefined {
  return typeof value === 'string' ? value : undefined;
}

/** The request a response is written for, from the master's IPC call (or the offer's POST). */
function requestOf<R extends Readable>(
  stream: R,
  method: string,
  url: string,
  headers: IncomingMessage['headers'],
): R & IncomingMessage {
  return Object.assign(stream, {
    method,
    url,
    headers,
    httpVersion: '1.1',
    httpVersionMajor: 1,
    httpVersionMinor: 1,
  }) as R & IncomingMessage;
}

/** The client's response on `socket`, with the master's headers and its `Keep-Alive` (only kept connections). */
function responseOn<R extends ServerResponse>(
  socket: Socket,
  req: IncomingMessage,
  offer: DirectOffer,
  Response: new (req: IncomingMessage) => R,
): R {
  const client = new Response(req);
  client.assignSocket(socket);
  for (const [name, value] of Object.entries(offer.headers)) if (value !== undefined) client.setHeader(name, value);
  if (offer.keepAliveTimeoutS > 0) client.setHeader('keep-alive', `timeout=${offer.keepAliveTimeoutS}`);
  return client;
}

/** The master's HTTP request (`x-graygate-direct`): control bytes in its response body. */
function httpHop(hop: ServerResponse): Hop {
  const isOpen = (): boolean => !hop.writableEnded && !hop.destroyed;
  return {
    mark: (bytes) => void (isOpen() && hop.write(bytes, 'latin1')),
    status: () => undefined, // the hop's own head said it (relay.ts)
    done: (bytes) => void (isOpen() && hop.end(bytes, 'latin1')),
    // Destroying the master's request aborts the upstream call (handler.ts); the destroy waits for the mark, which
    // it would otherwise drop.
    giveUp: (mark) => void (isOpen() && hop.write(mark, 'latin1', () => hop.destroy())),
  };
}

/** An IPC call: control bytes in `call-report` messages; the status in its own, before the answer's first byte. */
function ipcHop(id: number, report: (msg: DirectCallReport) => void, onSettled: () => void): Hop {
  /** The call's last report: the master ends its side, and this process counts the call as over. */
  const last = (marks: string, isLast: boolean): void => {
    report({ type: 'call-report', id, marks, isEnd: true, ...(isLast ? { isLast } : {}) });
    onSettled();
  };
  return {
    mark: (marks) => report({ type: 'call-report', id, marks }),
    status: (head) => report({ type: 'call-report', id, marks: '', ...head }),
    done: (marks, isLast, answer) => {
      last(marks, isLast);
      // node:http's server closes a response after its finish (resOnFinish); the handler's response is this one.
      process.nextTick(closeResponse, answer.client);
    },
    giveUp: (mark, answer) => {
      last(mark, false);
      // The handler's response is the client's: closed unfinished, it aborts the upstream call as a client leaving
      // does.
      closeResponse(answer.client);
    },
  };
}

/** What node:http does to close a response (emitCloseNT, for a finished one or one whose socket went). */
function closeResponse(res: ServerResponse): void {
  const r = res as ServerResponse & { _closed?: boolean };
  if (r._closed === true) return;
  r.destroyed = true;
  r._closed = true;
  r.emit('close');
}
