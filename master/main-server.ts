import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer, STATUS_CODES } from '../shared/node-http.js';
import type { Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import { GraygateError, toErrorResponse, type ErrorResponse } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { Limits } from '../shared/config.js';
import { MAX_HEADER_LINES, MAX_TIMER_MS, NODE_KEEP_ALIVE_BUFFER_MS } from '../shared/defaults.js';
import { hasBody } from '../shared/body.js';
import { setBodyParseError } from './body-parse-errors.js';
import { setSocketErrorCode } from './socket-errors.js';
import { ConnectionQueue } from './connection-queue.js';
import type { ClientConnections } from './client-connections.js';
import type { Gateway } from './gateway.js';

// The main port's HTTP server (SPEC §4a). Node parses; everything it refuses
// on its own — a malformed request, oversized headers, an unknown `Expect` —
// is answered here in the OpenAI error shape instead of Node's bare
// `400 Bad Request`, and every request goes through the connection queue, so
// one connection has one request in flight at a time.

export interface MainServerOptions {
  gateway: Gateway;
  /** Read once: the server's header limit is fixed at creation (a reload does not change it). */
  limits: Pick<
    Limits,
    'maxHeaderBytes' | 'maxUrlBytes' | 'maxPipelinedRequests' | 'headTimeoutMs' | 'keepAliveTimeoutMs'
  >;
  log: Logger;
  /**
   * A request Node's parser refused, answered here (400, 408, 414, 431): counted with the requests of no version
   * (graygate_requests_total{version="none"}), as nginx's access log and status counts have them.
   */
  onRefused?: (status: number) => void;
  /** limits.maxClientConnections: counted and bounded, told which connections are quiet. */
  connections?: Pick<ClientConnections, 'watch' | 'noteQuiet'>;
}

/**
 * Silence on a client connection before TCP keepalive probes start, ms. The kernel probes only a connection with
 * nothing unacknowledged, and a quiet stream's `: ping` (every pingIntervalMs of silence, 15 s by default) is data: a
 * ping sent to a vanished client is retransmitted for ~15 min instead. The probes' verdict must come first: 3 s of
 * silence, then ten probes a second apart, is ~13 s (measured in a network namespace: 15 s idle lost to the default
 * ping every time, 24 s with pings off). An idle kept-alive connection costs a probe and its ACK every 3 s.
 */
const CLIENT_KEEPALIVE_IDLE_MS = 3_000;

export function createMainServer(options: MainServerOptions): Server {
  const { gateway, limits, log, onRefused, connections } = options;
  const queue = new ConnectionQueue({
    serve: gateway.serve,
    onDropped: gateway.drop,
    maxPipelined: () => limits.maxPipelinedRequests,
    onFlood: (socket, waiting, cause) =>
      log.warn(
        { remoteAddress: socket.remoteAddress, remotePort: socket.remotePort, waiting },
        cause === 'connection'
          ? 'a client pipelined more requests than the master holds for one connection: connection closed'
          : 'a client pipelined more requests while the heads waiting on every connection were past their bound: ' +
              'connection closed',
      ),
    ...(connections === undefined
      ? {}
      : { onQuiet: (socket: Socket, sinceMs: number) => connections.noteQuiet(socket, sinceMs) }),
  });
  const server = createServer({
    maxHeaderSize: limits.maxHeaderBytes,
    // Node's whole-request deadline (300 s) would cut a long stream with a request pipelined behind it, whose
    // body the connection queue leaves unread on purpose; bodyTimeoutMs bounds a body's silence instead.
    requestTimeout: 0,
    // ...which also set Node's head deadline (headersTimeout: min(60 s, requestTimeout)) to none: a connection that
    // sent nothing, or half a head, was held for good, and enough of them took every descriptor (a helper's
    // slowloris). The head keeps its own deadline, as nginx's client_header_timeout, checked as often as it needs.
    headersTimeout: limits.headTimeoutMs,
    connectionsCheckingInterval: Math.min(30_000, Math.max(100, Math.floor(limits.headTimeoutMs / 2))),
    // A missing Host is refused by the gateway in the OpenAI error shape (gateway.ts headProblem), not by
    // Node's bare 400.
    requireHostHeader: false,
    // TCP keepalive on every accepted connection (nginx's `listen … so_keepalive`): a client that vanished without a
    // FIN or RST (a laptop closed, a NAT that forgot the flow) held its slot, and the upstream kept generating for it,
    // until the answer ended, as long as nothing was written or the little that was fitted the send buffer.
    // Probes start after CLIENT_KEEPALIVE_IDLE_MS of silence; libuv sends one a second and gives up after ten.
    keepAlive: true,
    keepAliveInitialDelay: CLIENT_KEEPALIVE_IDLE_MS,
  });
  server.maxHeadersCount = MAX_HEADER_LINES; // a head that reaches it is refused (gateway.ts readHead)
  // Answers say it (`Keep-Alive: timeout=N`), directly written ones too (gateway.ts offers it to the worker).
  server.keepAliveTimeout = keepAliveTimeoutFor(limits);
  // Node emits a socket's timeout on its server (the keep-alive timeout, the only socket timeout set here) and
  // destroys the socket unless something listens: a connection a worker holds (limits.directStreams) needs its FIN.
  server.on('timeout', (socket: Socket) => gateway.closeIdle(socket));
  const onRequest = (req: IncomingMessage, res: ServerResponse): void => {
    gateway.arrive();
    queue.enqueue(req, res);
  };
  server.on('request', onRequest);
  // With a listener Node sends no automatic `100 Continue`: the pipeline sends it
  // when it starts reading the body, after the size checks (issue 9 part 7).
  server.on('checkContinue', onRequest);
  // CONNECT has no listener otherwise, and Node then closes the connection without a word.
  // Pipelined behind other requests, its answer waits for theirs, as a malformed request's does.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    // Node hands a CONNECT's socket over without its own error listener: a reset while the refusal waited behind a
    // stream, or the refusal written to a connection already closing, was an uncaught error that ended the master
    // (a reviewer's repro, ~60 bytes from any client).
    socket.on('error', () => socket.destroy());
    const err = new GraygateError('invalid_request', 'CONNECT is not supported: this is not a forward proxy');
    queue.afterLast(socket as Socket, () =>
      answerRefusal(socket as Socket, toErrorResponse(err), { method: 'CONNECT' }),
    );
  });
  // Any other expectation: through the pipeline too, which refuses it with 417 (gateway.ts headProblem), in turn,
  // with its request id and access-log line.
  server.on('checkExpectation', onRequest);
  // A request refused before it was one (no request id, version or path): answered, closed, then logged and counted
  // as nginx logs its 400, 408, 414 and 431, with the parser's code, so an operator sees a smuggling attempt or a
  // slowloris at the default log level. A connection that never sent a byte made no request (a browser's
  // preconnect, timed out: nginx logs none either); it has only the debug line.
  function answerRefusal(
    socket: Socket,
    refusal: ErrorResponse,
    detail: { clientError?: string | undefined; method?: string },
  ): void {
    // A connection already closing (its last answer said `Connection: close`): nothing more goes out, nor is logged.
    if (!socket.writable) {
      socket.destroy();
      return;
    }
    socket.end(rawErrorResponse(refusal));
    if (socket.bytesRead === 0) return;
    const { status } = refusal;
    log.info({ ...detail, status, error: refusal.code }, 'request');
    onRefused?.(status);
  }
  // Sockets whose parser failed: the refusal waits for the answers still due (nginx answers the requests it
  // read, then refuses what follows), and the errors of the bytes after the first are ignored.
  const refused = new WeakSet<Duplex>();
  /** The head gets headTimeoutMs again from when the connection is idle; its 408 only if no request came by then. */
  const retimeHead = (socket: Socket, refusal: ErrorResponse): void => {
    const seen = queue.requestCount(socket);
    queue.afterLast(socket, () => {
      const timer = setTimeout(() => {
        if (queue.requestCount(socket) !== seen || refused.has(socket) || !socket.writable) return;
        refused.add(socket);
        answerRefusal(socket, refusal, { clientError: 'ERR_HTTP_REQUEST_TIMEOUT' });
      }, limits.headTimeoutMs).unref();
      socket.once('close', () => clearTimeout(timer));
    });
  };
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (refused.has(socket)) return;
    const refusal = clientErrorResponse(err, limits);
    log.debug({ code: err.code, status: refusal?.status }, 'client error');
    // Node's head clock ran while requests of this connection were in hand: the master stops reading a connection
    // with maxPipelinedRequests waiting (and Node one whose answers are behind), so the head was not the client's to
    // finish (a review's repro: a 408 after three answers, the third head having come whole).
    if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT' && refusal !== undefined && queue.isActive(socket as Socket))
      return retimeHead(socket as Socket, refusal);
    refused.add(socket);
    // The client closed in the middle of a request: nothing it could read is due; its requests end now (a body
    // being read gives back its budget at once, not after bodyTimeoutMs).
    if (refusal === undefined || !socket.writable || err.code === 'HPE_INVALID_EOF_STATE') {
      if (refusal === undefined && err.code !== undefined) setSocketErrorCode(socket, err.code);
      socket.destroy();
      return;
    }
    // The error is in the body of a request still to be read whole (a malformed chunk): its reader refuses it in the
    // OpenAI shape, not bodyTimeoutMs later for bytes the parser will never give it — now if it is being read, else
    // when it would be (pipelined behind the one in flight, or the first of its connection, deferred by the loop
    // slice), with its access-log line.
    const current = (socket as Duplex & { _httpMessage?: { req?: IncomingMessage } })._httpMessage?.req;
    const unread = current !== undefined && !current.complete ? current : queue.lastWaiting(socket as Socket);
    if (unread !== undefined && !unread.complete && hasBody(unread)) {
      const malformed = new GraygateError('invalid_request', `malformed request body (${err.code ?? 'parse'})`);
      if (unread.listenerCount('error') > 0) unread.emit('error', malformed);
      else setBodyParseError(unread, malformed);
      return;
    }
    queue.afterLast(socket as Socket, () => {
      // Bytes after a `Connection: close` request: its answer closed the connection; nothing more is due (nor when
      // the connection is closing for another reason: answerRefusal).
      if (err.code === 'HPE_CLOSED_CONNECTION') socket.destroy();
      else answerRefusal(socket as Socket, refusal, { clientError: err.code });
    });
  });
  // At the bound, the connection quiet longest (no request in hand nor a head on its way) may be closed for a new one.
  connections?.watch(server, {
    isQuietSince: (socket, sinceMs) => queue.isQuietSince(socket, sinceMs),
    close: (socket) => gateway.closeIdle(socket),
  });
  return server;
}

/**
 * node:http's keepAliveTimeout for limits.keepAliveTimeoutMs. Node arms the socket's timer 1 s past it; past
 * MAX_TIMER_MS it truncates the timer and prints a TimeoutOverflowWarning on every kept-alive answer (a limit of ~24.8
 * days).
 */
export function keepAliveTimeoutFor(limits: Pick<Limits, 'keepAliveTimeoutMs'>): number {
  return Math.min(limits.keepAliveTimeoutMs, MAX_TIMER_MS - NODE_KEEP_ALIVE_BUFFER_MS);
}

/**
 * The bytes of a raw head's request target: between the method's space and the version's (or the packet's end, when
 * the line has not ended: the target was still being read).
 */
function requestTargetBytes(packet: Buffer): number {
  const lineEnd = packet.indexOf('\r\n');
  const line = lineEnd === -1 ? packet : packet.subarray(0, lineEnd);
  const start = line.indexOf(0x20) + 1;
  const versionSpace = lineEnd === -1 ? -1 : line.lastIndexOf(0x20);
  return (versionSpace >= start ? versionSpace : line.length) - start;
}

/**
 * What Node's parser refused → our answer, or undefined when the socket is just gone (reset, timeout on a dead peer).
 */
export function clientErrorResponse(
  err: NodeJS.ErrnoException & { rawPacket?: Buffer },
  limits: Pick<Limits, 'maxUrlBytes' | 'headTimeoutMs'>,
): ErrorResponse | undefined {
  const { maxUrlBytes } = limits;
  const code = err.code ?? '';
  if (code === 'HPE_HEADER_OVERFLOW') {
    // The request line counts towards Node's header limit: a long URL overflows it too (SPEC §4a: 414). Its target is
    // what maxUrlBytes bounds (gateway.ts serves one of exactly that many bytes), not the line with its method.
    if (err.rawPacket !== undefined && requestTargetBytes(err.rawPacket) > maxUrlBytes)
      return toErrorResponse(new GraygateError('url_too_long', `the request target is over ${maxUrlBytes} bytes`));
    return toErrorResponse(new GraygateError('headers_too_large'));
  }
  if (code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    // requestTimeout is off, so this is Node's headersTimeout (headTimeoutMs for the whole head); bodies have
    // bodyTimeoutMs.
    return toErrorResponse(
      new GraygateError('body_timeout', `the request head was not received within ${limits.headTimeoutMs} ms`),
    );
  }
  if (code.startsWith('HPE_')) {
    return toErrorResponse(new GraygateError('invalid_request', `malformed HTTP request (${code})`));
  }
  return undefined;
}

/** A whole HTTP/1.1 response for a socket Node has not given us a ServerResponse for. */
export function rawErrorResponse(response: ErrorResponse): string {
  const body = JSON.stringify(response.body);
  const lines = [
    `HTTP/1.1 ${response.status} ${STATUS_CODES[response.status] ?? 'Error'}`,
    'content-type: application/json',
    `content-length: ${Buffer.byteLength(body)}`,
    'connection: close',
  ];
  for (const [name, value] of Object.entries(response.headers)) lines.push(`${name}: ${value}`);
  return `${lines.join('\r\n')}\r\n\r\n${body}`;
}
