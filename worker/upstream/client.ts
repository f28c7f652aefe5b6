import { createRequire } from 'node:module';
import type { Dispatcher, Pool as UndiciPool, ProxyAgent as UndiciProxyAgent } from 'undici';
import { DEFAULTS, MAX_TIMER_MS } from '../../shared/defaults.js';
import { DEADLINE_CUT_MESSAGE, GraygateError, isGraygateError } from '../../shared/errors.js';
import { UpstreamTimeoutError } from './timeouts.js';
import { READ_AHEAD_BYTES, ResponseHandler, type UpstreamResponse } from './upstream-body.js';

// Issue 9 part 0: undici's index also loads fetch, WebSocket, EventSource,
// caches, mocks and cookies (whose set-up initialises Node's own bundled
// undici): 450 files and ~250 ms of CPU, half of a worker's start-up, for
// nothing a worker uses. Its Pool is loaded directly, the very object the
// index exports (undici has no exports map; the version is pinned, and
// test/worker/upstream/client.test.ts checks it is the same). Requests go
// through the Pool's dispatch() with a handler of ours (upstream-body.ts).
const requireCjs = createRequire(import.meta.url);
export const Pool = requireCjs('undici/lib/dispatcher/pool.js') as typeof UndiciPool;
/**
 * undici's ProxyAgent, loaded only by a version with upstream.proxy: through undici's index, whose Dispatcher API
 * (`connect`, which the agent's CONNECT uses) the Pool alone does not bring.
 */
const loadProxyAgent = (): typeof UndiciProxyAgent =>
  (requireCjs('undici') as { ProxyAgent: typeof UndiciProxyAgent }).ProxyAgent;

// SPEC §5, issue 3 part 4: one undici Pool per upstream origin (a worker has
// one upstream), keep-alive, a connection cap, HTTP/2 where the upstream is
// https and offers it. Deadlines are enforced by the caller's AbortSignal;
// undici's own headers/body timeouts are set just above them as a backstop.

export interface UpstreamClientOptions {
  /** Base URL of the upstream API, e.g. `https://api.openai.com/v1`; request paths are appended to its path. */
  baseUrl: string;
  /**
   * Most connections to the origin: upstream.maxConnections, at least limits.maxSocketsPerWorker (worker/server.ts).
   * With HTTP/2 each may carry many streams.
   */
  maxConnections: number;
  /**
   * upstream.http2: true offers HTTP/2 (ALPN) to an https origin. Default false: undici 7's HTTP/2 client ends every
   * stream of a connection its server closes gracefully (GOAWAY, RFC 9113 §6.8), times a paused stream's body out
   * at idleMs though the server was not silent, and its Pool opens a connection per request anyway (no multiplexing);
   * HTTP/1.1 has none of these.
   */
  http2?: boolean;
  /** TCP+TLS connect deadline in ms (upstream.timeouts.connectMs). */
  connectMs: number;
  /** Passed as undici headersTimeout/bodyTimeout plus a margin; the AbortSignal deadlines fire first. 0 disables. */
  firstByteMs: number;
  idleMs: number;
  /**
   * How long an idle upstream connection is kept, ms (upstream.timeouts.keepAliveMs; default 4 s for http, undici's,
   * and 30 s for https: shared/defaults.ts). A server's `Keep-Alive: timeout=N` hint, when it sends one, may shorten
   * it (to N − 2 s: undici's keepAliveTimeoutThreshold), never lengthen it.
   */
  keepAliveTimeoutMs?: number;
  /**
   * Bytes of an answer that is not chunked read ahead of a paused reader before undici's parser is paused (a chunked
   * one is paused at once). Default READ_AHEAD_BYTES (64 KiB); tests set 0 to pause it at once on every answer.
   */
  readAheadBytes?: number;
  /**
   * upstream.tls.caFile's certificates (PEM), trusted for an https upstream instead of Node's own (a private CA; a
   * test's self-signed upstream).
   */
  ca?: string;
  /** upstream.tls.certFile and keyFile (PEM): the client certificate an upstream asking for one (mTLS) gets. */
  cert?: string;
  key?: string;
  /**
   * upstream.proxy: an HTTP proxy every connection to the upstream goes through, tunnelled with CONNECT (a company's
   * egress proxy). Its connections hold as many as the pool's.
   */
  proxy?: string;
  /** upstream.proxyAuthEnv's value, `user:password`: sent to the proxy as Basic Proxy-Authorization. */
  proxyAuth?: string;
}

export interface UpstreamCall {
  /** Default POST; GET for model lists, GET and DELETE for stored responses (SPEC §12). */
  method?: 'GET' | 'POST' | 'DELETE';
  path: string;
  headers: Record<string, string>;
  /** The request body; none for GET. */
  body?: Buffer;
  signal: AbortSignal;
  /** This call's first-byte deadline, when not the client's (a whole answer's is its total), for the backstop. */
  firstByteMs?: number;
}

// So our own AbortSignal deadline, with its phase, is what fires; undici's
// timers are coarse (≈1 s resolution) and only matter if ours were lost.
const BACKSTOP_MARGIN_MS = 1000;
/**
 * Bodies an answer no longer reads (it ended at its final event) that may stay open to end by themselves, keeping
 * their connections for reuse (pipeline.ts). Each holds a connection beyond the admitted concurrency, so the pool has
 * this many more: undici never queues a request behind one (issue 10 part 3).
 */
export const MAX_LINGERING_BODIES = 32;

export class UpstreamClient {
  /** The upstream's pool, or with upstream.proxy an agent whose one pool is the upstream's, through the proxy. */
  readonly #pool: UndiciPool | UndiciProxyAgent;
  readonly #origin: string;
  readonly #basePath: string;
  readonly #options: UpstreamClientOptions;
  #lingering = 0;

  constructor(options: UpstreamClientOptions) {
    const url = new URL(options.baseUrl);
    this.#options = options;
    this.#basePath = url.pathname.replace(/\/+$/, '');
    const isHttps = url.protocol === 'https:';
    const keepAliveTimeout =
      options.keepAliveTimeoutMs ??
      (isHttps ? DEFAULTS.upstreamTimeouts.keepAliveHttpsMs : DEFAULTS.upstreamTimeouts.keepAliveMs);
    this.#origin = url.origin;
    const poolOptions = {
      connections: options.maxConnections + MAX_LINGERING_BODIES,
      allowH2: isHttps && options.http2 === true,
      keepAliveTimeout,
      // A server's `Keep-Alive: timeout=N` may shorten it, never lengthen it (undici's default cap is 10 min): a
      // connection a firewall had dropped after the keepAliveMs set under its idle timeout was reused, and the POST on
      // it waited totalMs for a 504 (a TLS probe).
      keepAliveMaxTimeout: keepAliveTimeout,
      headersTimeout: backstop(options.firstByteMs),
      bodyTimeout: bodyBackstop(options.firstByteMs, options.idleMs),
    };
    const tls = {
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.cert === undefined || options.key === undefined ? {} : { cert: options.cert, key: options.key }),
    };
    this.#pool =
      options.proxy === undefined
        ? new Pool(url.origin, { ...poolOptions, connect: { timeout: options.connectMs, ...tls } })
        : new (loadProxyAgent())({
            ...poolOptions,
            uri: options.proxy,
            // CONNECT even to an http: upstream, as to an https: one: one way through, the proxy sees no request.
            proxyTunnel: true,
            proxyTls: { timeout: options.connectMs },
            // The pool's allowH2 never reaches the TLS inside the tunnel (a reviewer: http/1.1 through the proxy).
            requestTls: { timeout: options.connectMs, allowH2: poolOptions.allowH2, ...tls },
            clientFactory: (proxyOrigin: URL, proxyOptions: object) =>
              proxyClient(proxyOrigin, proxyOptions, options.connectMs),
            ...(options.proxyAuth === undefined
              ? {}
              : { token: `Basic ${Buffer.from(options.proxyAuth).toString('base64')}` }),
          });
  }

  /**
   * Sends the request; resolves when response headers arrive, with the body for its reader to take (`read()` or
   * `readAll()`; what is read ahead of it: upstream-body.ts). Rejects with undici's error (see toUpstreamError).
   */
  request(call: UpstreamCall): Promise<UpstreamResponse> {
    const { body } = call;
    const options: Dispatcher.DispatchOptions = {
      origin: this.#origin,
      path: this.#basePath + call.path,
      method: call.method ?? 'POST',
      headers: upstreamHeaders(call.headers, body?.length),
      // An iterable body is documented (Dispatcher.md: `Iterable | AsyncIterable`), not in undici's types.
      // An empty one has nothing to hold: it stays a Buffer (undici refuses an empty iterable).
      body: body === undefined ? null : body.length === 0 ? body : (new WrittenOnce(body) as unknown as Buffer),
      headersTimeout: backstop(call.firstByteMs ?? this.#options.firstByteMs),
      bodyTimeout: bodyBackstop(call.firstByteMs ?? this.#options.firstByteMs, this.#options.idleMs),
    };
    return new Promise((resolve, reject) => {
      const readAhead = this.#options.readAheadBytes ?? READ_AHEAD_BYTES;
      this.#pool.dispatch(options, new ResponseHandler(call.signal, readAhead, resolve, reject));
    });
  }

  /**
   * A body its answer no longer reads may stay open a while to end by itself: true, and `lingerEnd()` once it closed;
   * false when MAX_LINGERING_BODIES already do (abort it: its connection would have no spare one to take).
   */
  lingerStart(): boolean {
    if (this.#lingering >= MAX_LINGERING_BODIES) return false;
    this.#lingering++;
    return true;
  }

  lingerEnd(): void {
    this.#lingering--;
  }

  /** Waits for in-flight requests, then closes the connections. */
  close(): Promise<void> {
    return this.#pool.close();
  }

  /** Aborts everything now. */
  destroy(err?: Error): Promise<void> {
    return this.#pool.destroy(err ?? null);
  }
}

/**
 * The pool to upstream.proxy that ProxyAgent sends its CONNECTs on. Its answer to a CONNECT is bounded by connectMs:
 * the call's own deadlines start only once a connection is made, and a proxy that took the TCP connection and never
 * answered held the request for undici's 300 s (a reviewer). Past it, a connect timeout.
 */
function proxyClient(origin: URL, options: object, connectMs: number): UndiciPool {
  const pool = new Pool(origin, { ...options, headersTimeout: connectMs, bodyTimeout: connectMs });
  const original: (this: UndiciPool, params: Dispatcher.ConnectOptions) => Promise<Dispatcher.ConnectData> =
    // eslint-disable-next-line @typescript-eslint/unbound-method -- called on `pool` below (its promise overload)
    pool.connect;
  const connect = (params: Dispatcher.ConnectOptions): Promise<Dispatcher.ConnectData> => original.call(pool, params);
  const connectOnce = (params: Dispatcher.ConnectOptions): Promise<Dispatcher.ConnectData> =>
    connect(params).catch((err: unknown) => {
      const code = (err as { code?: unknown } | null)?.code;
      throw code === 'UND_ERR_HEADERS_TIMEOUT' ? new UpstreamTimeoutError('connect', connectMs, { cause: err }) : err;
    });
  // ProxyAgent calls `connect(params)` on it (the promise form).
  Object.defineProperty(pool, 'connect', { value: connectOnce });
  return pool;
}

/**
 * undici keeps a Buffer body (its Request and its request handler) until the response has ended,
 * which for a stream is its whole life: 100 streams with 512 KiB prompts held 50 MB in the worker
 * (issue 10). A body goes as a one-shot iterable instead, framed by the Content-Length set above,
 * which holds nothing once written. It costs undici ~10 µs more a request (an async write), against
 * ~5 ms of the worker's CPU a stream; a small Buffer kept would also pin its 8 KiB pool slab.
 */

/**
 * The call's headers, framed by the body's length when it has one, and asking for the answer unencoded: without
 * `Accept-Encoding` a server may compress (RFC 9110 §12.5.3), and nothing here decompresses (pipeline.ts refuses it).
 */
function upstreamHeaders(headers: Record<string, string>, length: number | undefined): Record<string, string> {
  const out: Record<string, string> = {};
  for (const name in headers) {
    const lower = name.toLowerCase();
    if (lower !== 'content-length' && lower !== 'transfer-encoding' && lower !== 'accept-encoding')
      out[name] = headers[name]!;
  }
  if (length !== undefined) out['content-length'] = String(length);
  out['accept-encoding'] = 'identity';
  return out;
}

/** An iterable of one chunk that lets go of it once taken (a generator's frame would keep its argument). */
class WrittenOnce implements IterableIterator<Buffer> {
  #body: Buffer | undefined;
  constructor(body: Buffer) {
    this.#body = body;
  }
  [Symbol.iterator](): this {
    return this;
  }
  next(): IteratorResult<Buffer, undefined> {
    const value = this.#body;
    this.#body = undefined;
    return value === undefined ? { done: true, value: undefined } : { done: false, value };
  }
}

function backstop(ms: number): number {
  // Capped: undici's HTTP/2 client hands it to node's stream.setTimeout, which warns past MAX_TIMER_MS.
  return ms > 0 ? Math.min(ms + BACKSTOP_MARGIN_MS, MAX_TIMER_MS) : 0;
}

/**
 * undici's body timer runs from the response head to the first body byte too, which our deadlines give firstByteMs
 * (an upstream may send its head at once and think for minutes): so the longer of the two, off if either is.
 */
function bodyBackstop(firstByteMs: number, idleMs: number): number {
  return firstByteMs > 0 && idleMs > 0 ? backstop(Math.max(firstByteMs, idleMs)) : 0;
}

// Connection-level failures before any response: the upstream is unreachable.
const UNREACHABLE = new Set([
  'ECONNREFUSED',
  'ENOTFOUND',
  'EAI_AGAIN',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EHOSTDOWN',
  'ENETDOWN',
  'ECONNABORTED',
  'ETIMEDOUT',
  // The upstream's certificate refused (OpenSSL's verify codes, as node names them): a private CA not trusted
  // (SELF_SIGNED_CERT_IN_CHAIN, UNABLE_TO_GET_ISSUER_CERT_LOCALLY) said only "could not connect" (a TLS probe).
  'UNABLE_TO_GET_ISSUER_CERT',
  'UNABLE_TO_GET_ISSUER_CERT_LOCALLY',
  'UNABLE_TO_VERIFY_LEAF_SIGNATURE',
  'UNABLE_TO_DECRYPT_CERT_SIGNATURE',
  'UNABLE_TO_DECODE_ISSUER_PUBLIC_KEY',
  'CERT_SIGNATURE_FAILURE',
  'CERT_NOT_YET_VALID',
  'CERT_HAS_EXPIRED',
  'ERROR_IN_CERT_NOT_BEFORE_FIELD',
  'ERROR_IN_CERT_NOT_AFTER_FIELD',
  'DEPTH_ZERO_SELF_SIGNED_CERT',
  'SELF_SIGNED_CERT_IN_CHAIN',
  'CERT_CHAIN_TOO_LONG',
  'CERT_REVOKED',
  'INVALID_CA',
  'PATH_LENGTH_EXCEEDED',
  'INVALID_PURPOSE',
  'CERT_UNTRUSTED',
  'CERT_REJECTED',
  'HOSTNAME_MISMATCH',
  'ERR_TLS_CERT_ALTNAME_INVALID',
]);

/** undici's error for a proxy that refused a CONNECT (proxy-agent.js). */
const PROXY_REFUSAL = /^Proxy response \((\d{3})\) !== 200 when HTTP Tunneling/;

/** An HTTP/2-only server refusing http/1.1 in its TLS handshake (ALPN). */
const NO_APPLICATION_PROTOCOL = 'ERR_SSL_TLSV1_ALERT_NO_APPLICATION_PROTOCOL';
// The connection dropped under a request or response.
const RESET = new Set([
  'ECONNRESET',
  'EPIPE',
  'UND_ERR_SOCKET',
  'UND_ERR_CLOSED',
  'ERR_HTTP2_STREAM_ERROR',
  'ERR_HTTP2_SESSION_ERROR',
  'ERR_HTTP2_GOAWAY_SESSION',
]);

/**
 * Any failure of an upstream call → a catalogued error (SPEC §4 upstream codes).
 * Our own typed errors (deadline reasons, protocol errors) pass unchanged.
 * `hasResponse`: headers had arrived, so an unknown failure is a reset, not unreachability.
 */
export function toUpstreamError(
  err: unknown,
  options: { hasResponse: boolean; connectMs: number; firstByteMs: number; idleMs: number },
): unknown {
  if (isGraygateError(err)) return err;
  const code = (err as { code?: unknown } | null)?.code;
  // The pool was destroyed under the call (UpstreamClient.destroy: the master's shutdown deadline, IPC `cut`). With
  // upstream.proxy, undici's ProxyAgent drops destroy's reason and its calls fail with this one instead: a stream
  // ended with `upstream_reset`, a call before its status with a 502 (and counted as the upstream's errors).
  if (code === 'UND_ERR_DESTROYED') return new GraygateError('shutting_down', DEADLINE_CUT_MESSAGE, { cause: err });
  if (code === 'UND_ERR_CONNECT_TIMEOUT') return new UpstreamTimeoutError('connect', options.connectMs, { cause: err });
  if (code === 'UND_ERR_HEADERS_TIMEOUT')
    return new UpstreamTimeoutError('first-byte', options.firstByteMs, { cause: err });
  if (code === 'UND_ERR_BODY_TIMEOUT') return new UpstreamTimeoutError('idle', options.idleMs, { cause: err });
  // undici's HTTPParserError carries an `HPE_` code only for some of llhttp's errors (7.x): its name is the sign.
  if ((err as { name?: unknown } | null)?.name === 'HTTPParserError') {
    const detail = typeof code === 'string' ? code : (err as Error).message;
    return new GraygateError('upstream_protocol_error', `the upstream sent a malformed HTTP response (${detail})`, {
      cause: err,
    });
  }
  // upstream.proxy refused the tunnel (407: its credentials; 403: the destination not allowed): undici's own words.
  const proxyStatus = PROXY_REFUSAL.exec((err as Error | null)?.message ?? '');
  if (code === 'UND_ERR_ABORTED' && proxyStatus !== null && !options.hasResponse)
    return new GraygateError(
      'upstream_unreachable',
      `could not connect to the upstream: the proxy (upstream.proxy) answered ${proxyStatus[1]}`,
      { cause: err },
    );
  if (typeof code === 'string') {
    if (
      code.startsWith('HPE_') ||
      code === 'UND_ERR_RES_CONTENT_LENGTH_MISMATCH' ||
      code === 'UND_ERR_INVALID_ARG' ||
      // Its head past undici's maxHeaderSize (16 KiB): it answered, with something no client takes.
      code === 'UND_ERR_HEADERS_OVERFLOW'
    ) {
      return new GraygateError('upstream_protocol_error', `the upstream sent a malformed HTTP response (${code})`, {
        cause: err,
      });
    }
    if (RESET.has(code))
      return new GraygateError('upstream_reset', `the upstream closed the connection (${code})`, { cause: err });
    // The kernel gave up on a connection (retransmissions or keepalive probes unanswered): on `connect`, nothing was
    // reached; on a read or write, the connection that carried the request died under it, a reset, not "could not
    // connect" (a network probe's finding).
    if (code === 'ETIMEDOUT' && (err as { syscall?: unknown }).syscall !== 'connect')
      return new GraygateError('upstream_reset', `the upstream connection timed out (${code})`, { cause: err });
    if (code === NO_APPLICATION_PROTOCOL && !options.hasResponse)
      return new GraygateError(
        'upstream_unreachable',
        `could not connect to the upstream (${code}: it may speak HTTP/2 only; set upstream.http2)`,
        { cause: err },
      );
    // OpenSSL's own failures in a handshake (ERR_SSL_WRONG_VERSION_NUMBER: an https: URL at a plain HTTP port).
    if ((UNREACHABLE.has(code) || code.startsWith('ERR_SSL_') || code.startsWith('ERR_TLS_')) && !options.hasResponse)
      return new GraygateError('upstream_unreachable', `could not connect to the upstream (${code})`, { cause: err });
  }
  return options.hasResponse
    ? new GraygateError('upstream_reset', 'the upstream connection failed mid-response', { cause: err })
    : new GraygateError('upstream_unreachable', 'could not connect to the upstream', { cause: err });
}
