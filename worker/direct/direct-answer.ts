import { IncomingMessage, ServerResponse, type OutgoingHttpHeaders } from 'node:http';
import type { Socket } from 'node:net';
import {
  DIRECT_ALIVE,
  DIRECT_CLIENT_GONE,
  DIRECT_DONE,
  DIRECT_FAILED,
  DIRECT_FIRST_CONTENT,
  DIRECT_HEADER,
  DIRECT_SEND_TIMEOUT,
  type DirectOffer,
} from '../../shared/direct.js';
import type { DirectConnections } from './connections.js';

// limits.directStreams (issue 10, docs/ONE-HOP.md): a streamed answer
// written straight to the client's connection. The client's response is a
// node:http ServerResponse on the connection's write-only socket, so node
// frames it as it frames every answer; the master's request (`hop`) gets the
// control bytes of shared/direct.ts instead: a heartbeat timer per answer and
// a few bytes per stream, never per event.

/** A request on the direct path: the master's offer, and the connections this worker holds. */
export interface DirectRoute {
  offer: DirectOffer;
  connections: DirectConnections;
}

export class DirectAnswer {
  /** The client's response: where the answer goes. */
  readonly client: ServerResponse;
  /**
   * The connection's socket: its `drain` and `writableNeedDrain` are the answer's backpressure. node:http sends a
   * response `drain` only from the listener its server puts on its own sockets, which this one is not.
   */
  readonly socket: Socket;
  readonly #hop: ServerResponse;
  readonly #onDrain = (): void => this.#clearSendTimer();
  readonly #heartbeat: NodeJS.Timeout | undefined;
  readonly #sendTimeoutMs: number;
  readonly #bytesAtStart: number;
  #sendTimer: NodeJS.Timeout | undefined = undefined;
  #isFailed = false;
  #isSettled = false;

  /**
   * Takes the offered connection if this worker holds it and nothing else is being written to it; undefined
   * otherwise (the answer then goes through the master as usual).
   */
  static open(route: DirectRoute, hop: ServerResponse, headers: OutgoingHttpHeaders): DirectAnswer | undefined {
    const socket = route.connections.free(route.offer.conn);
    if (socket === undefined || hop.headersSent || hop.destroyed) return undefined;
    return new DirectAnswer(route.offer, socket, hop, headers);
  }

  private constructor(offer: DirectOffer, socket: Socket, hop: ServerResponse, headers: OutgoingHttpHeaders) {
    this.#hop = hop;
    this.socket = socket;
    this.#sendTimeoutMs = offer.sendTimeoutMs;
    this.#bytesAtStart = socket.bytesWritten;
    // What a server's response needs of its request: an HTTP/1.1 POST (the master offers nothing else).
    const req = Object.assign(Object.create(IncomingMessage.prototype) as IncomingMessage, {
      method: 'POST',
      httpVersionMajor: 1,
      httpVersionMinor: 1,
      headers: {},
    });
    const client = new ServerResponse(req);
    client.assignSocket(socket);
    // Offered only on connections the master keeps: node's default `Connection: keep-alive` is right.
    const keepAlive = offer.keepAliveTimeoutS > 0 ? { 'keep-alive': `timeout=${offer.keepAliveTimeoutS}` } : {};
    client.writeHead(200, { ...offer.headers, ...keepAlive, ...headers });
    this.client = client;
    socket.on('drain', this.#onDrain);
    // The connection failed or closed mid-answer (the client left, or the master closed it): the call ends.
    client.once('close', () => this.#clientGone());
    // The master's request ended first (its client left, or its timers cut the connection): nothing more to write.
    hop.once('close', () => this.#abandon());
    hop.writeHead(200, {
      [DIRECT_HEADER]: '1',
      'content-type': 'text/plain; charset=latin1',
      'cache-control': 'no-store',
    });
    hop.flushHeaders();
    if (offer.heartbeatMs > 0) this.#heartbeat = setInterval(() => this.#control(DIRECT_ALIVE), offer.heartbeatMs);
  }

  /** The first content event went out (the canary's first token, in the master). */
  firstContent(): void {
    this.#control(DIRECT_FIRST_CONTENT);
  }

  /** A write to the client was not taken at once: it must be read within sendTimeoutMs. */
  behind(): void {
    if (this.#sendTimer !== undefined || this.#isSettled) return;
    this.#sendTimer = setTimeout(() => this.#onSendTimeout(), this.#sendTimeoutMs);
  }

  /** The answer ends with an error event. */
  fail(): void {
    this.#isFailed = true;
  }

  /** Ends the client's answer; the master hears it is done once the last byte is with the kernel. */
  end(): void {
    if (this.#isSettled) return;
    this.client.once('finish', () => this.#settle());
    this.client.end();
  }

  #onSendTimeout(): void {
    this.#sendTimer = undefined;
    // The master closes the client's connection.
    this.#giveUp(DIRECT_SEND_TIMEOUT);
  }

  #clearSendTimer(): void {
    clearTimeout(this.#sendTimer);
    this.#sendTimer = undefined;
  }

  #control(bytes: string): void {
    if (!this.#hop.writableEnded && !this.#hop.destroyed) this.#hop.write(bytes, 'latin1');
  }

  /** The master's request closed first: let go of the connection; the handler aborts the call. */
  #abandon(): void {
    if (this.#isSettled) return;
    this.#release();
  }

  /**
   * The connection went mid-answer. The master hears it was the client's doing (`C`) before its request is destroyed,
   * which aborts the call: otherwise that close, reaching the master before its own socket's, reads as the worker's
   * failure, and a client's "stop" counted against the version in the canary.
   */
  #clientGone(): void {
    this.#giveUp(DIRECT_CLIENT_GONE);
  }

  /**
   * Ends the answer early: lets go of the connection, tells the master why (`mark`), then destroys its request, which
   * aborts the upstream call (handler.ts); the destroy waits for the mark, which it would otherwise drop.
   */
  #giveUp(mark: string): void {
    if (this.#isSettled) return;
    this.#release();
    const hop = this.#hop;
    if (hop.destroyed || hop.writableEnded) return;
    hop.write(mark, 'latin1', () => hop.destroy());
  }

  /** The whole answer is with the kernel: the master hears it is done, and how many bytes it was. */
  #settle(): void {
    if (this.#isSettled) return;
    const bytes = this.socket.bytesWritten - this.#bytesAtStart;
    this.#release();
    if (!this.#hop.writableEnded && !this.#hop.destroyed)
      this.#hop.end(`${this.#isFailed ? DIRECT_FAILED : ''}${DIRECT_DONE}${bytes}`, 'latin1');
  }

  #release(): void {
    this.#isSettled = true;
    clearInterval(this.#heartbeat);
    this.#clearSendTimer();
    this.socket.off('drain', this.#onDrain);
    if (this.client.socket !== null) this.client.detachSocket(this.socket);
  }
}
