import { randomBytes, randomUUID } from 'node:crypto';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { MAX_HEADER_LINES } from '../shared/defaults.js';
import { GraygateError, isGraygateError } from '../shared/errors.js';
import { copyHeaders, headerValue, HOP_BY_HOP_HEADERS, sendJson } from '../shared/http-headers.js';
import { bodyTooLarge, declaredLength, hasBody, readBody } from '../shared/body.js';
import { workerIdleTimeoutMsFor, type Limits } from '../shared/config.js';
import type { Logger } from '../shared/log.js';
import { chooseVersion, needsStickyKey, type RoutingFacts } from './router.js';
import { corsVaries, corsVerdict, isPreflight, preflightHeaders, responseCorsHeaders } from './cors.js';
import { scanTopLevel } from './body-user.js';
import { originForm, readRoutingFacts, targetAuthority } from './request-facts.js';
import type { VersionRegistry } from './version-registry.js';
import type { MasterMetrics } from './metrics.js';
import type { Lease } from './admission.js';
import type { WorkerHandle } from './worker-handle.js';
import type { ByteBudget } from '../shared/byte-budget.js';
import { RequestContext } from './request-context.js';
import { createWorkerProxy, type WorkerProxy } from './proxy.js';
import { createRequestEnd, type OutcomeSink } from './request-end.js';
import { DirectConnections } from './direct-connections.js';
import { callDirect } from './direct-calls.js';
import { createRetries } from './retry.js';
import { DIRECT_HEADER, leaseGuardMs, monotonicMs, type DirectOffer } from '../shared/direct.js';
import { WAITED_HEADER } from '../shared/ipc.js';
import type { RelayHooks } from './relay.js';
import { bodyParseErrorOf } from './body-parse-errors.js';
import type { ServerResponseInternals } from '../shared/node-http.js';
import { headProblem, isContinueExpectation, isUpgrade } from './head-problems.js';

// The main port's request path (SPEC §3, §4, §4a) as named steps over one
// RequestContext, applied in order (STYLE §17):
//   readHead → route → readRequestBody → admit → forward → (relay) → finish
// Each step either hands the request on or refuses it through `refuse`, the one
// function that turns any error into the client's answer. `finish` runs once
// per request when its response closes: it releases what the request held and
// writes the log line; both live in request-end.ts. The connection queue
// (connection-queue.ts) calls `serve` for one request per client connection
// at a time.

export interface GatewayOptions {
  /** Versions, routing table and config (version-registry.ts). */
  registry: VersionRegistry;
  log: Logger;
  metrics: MasterMetrics;
  budget: ByteBudget;
  /** True once SIGTERM arrived: new requests get 503 shutting_down, answers `Connection: close`. */
  isClosing: () => boolean;
  /** True once the shutdown deadline passed: a request that ends unfinished then was cut by the master. */
  isCutting?: () => boolean;
  /** Monotonic clock in ms. Default performance.now. */
  now?: () => number;
  /** Where each answered request's outcome goes (the canaries, SPEC §11): counters only, no allocation. */
  outcomes?: OutcomeSink;
  /** A connection accepted past limits.maxClientConnections (client-connections.ts): its requests get 503. */
  isOverBound?: (socket: Socket) => boolean;
}

export interface Gateway {
  /** A request arrived (it may wait behind another on its connection): counted in flight from now. */
  arrive(): void;
  /** Serves one request (the connection queue's `serve`). */
  serve: (req: IncomingMessage, res: ServerResponse) => void;
  /** A pipelined request dropped before its turn because its connection closed. */
  drop: (req: IncomingMessage, res: ServerResponse) => void;
  /** Requests arrived and not finished. */
  readonly inflight: number;
  /** Requests arrived since start (shutdown: has one come since it last looked). */
  readonly arrived: number;
  /** Resolves when no request is in flight (shutdown waits for requests, not connections). */
  idle(): Promise<void>;
  /**
   * At the shutdown deadline: every request still being served is refused with `err` as any failure is (request-end.ts
   * refuse): a 503 before its status, a stream's final SSE error event where its last event ended. A request whose
   * worker writes or may be writing its answer straight to the client (limits.directStreams) is ended by that worker,
   * told to (IPC `cut`), within `graceMs`: its stream with its final event too; past `graceMs`, or when its worker
   * cannot be told, its connection is cut. An answer the master ended (refused, or written whole) that its client has
   * not taken yet keeps its connection until its last bytes are out, within `graceMs` too. Resolves when each has ended
   * or been cut, or `graceMs` has passed.
   */
  cutAll(err: Error, graceMs: number): Promise<void>;
  /** The server's keep-alive timeout on an idle connection: closes it (direct-connections.ts closeIdle). */
  closeIdle(socket: Socket): void;
}

// x-request-id from the client is kept when it is a sane token (SPEC §3);
// anything else is replaced so logs and headers stay clean.
const REQUEST_ID = /^[A-Za-z0-9._:@/+=-]{1,128}$/;

function pickRequestId(sent: string | undefined, fresh: () => string): string {
  return sent !== undefined && REQUEST_ID.test(sent) ? sent : fresh();
}

/**
 * A new request id: this master's random prefix and a counter (issue 10: a randomUUID per request
 * was 1 % of the master under a flood). Unique across masters and restarts by the prefix.
 */
function createRequestIds(prefix: string = randomBytes(6).toString('hex')): () => string {
  let counter = 0;
  return () => `${prefix}-${(++counter).toString(36)}`;
}

const HEALTH_PATHS: ReadonlySet<string> = new Set(['/healthz', '/readyz']);
/**
 * Request headers never forwarded: hop-by-hop ones, the client's framing (the master sets its own
 * Content-Length), and `Expect` (Node answered it; forwarded, it would also hide the request from
 * http-proxy-3's proxyReq event).
 */
// DIRECT_HEADER: only the master offers a client's connection to a worker; a client's own would name another's.
const NOT_FORWARDED: ReadonlySet<string> = new Set([...HOP_BY_HOP_HEADERS, 'content-length', 'expect', DIRECT_HEADER]);
/** Methods whose requests carry a body by definition: forwarded with `Content-Length: 0` when empty. */
const BODY_METHODS: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH']);

export function createGateway(options: GatewayOptions): Gateway {
  const { registry, log, metrics, budget, isClosing } = options;
  const now = options.now ?? (() => performance.now());
  const newRequestId = createRequestIds();
  let inflight = 0;
  let arrived = 0;
  /**
   * The requests being served (from their turn on their connection to their end), what the deadline cuts: a list
   * linked through them, the latest first. A Set of them cost the master 1.23–1.36× the CPU a small request and 2.4×
   * its GC time (docs/BENCHMARKS.md, "At the shutdown deadline"); the list's links cost nothing measurable.
   */
  let servingHead: RequestContext | undefined;
  let idleWaiters: Array<() => void> = [];
  const { refuse, dropBody, releaseBody, finish } = createRequestEnd({
    log,
    metrics,
    budget,
    isClosing,
    isCutting: options.isCutting ?? (() => false),
    now,
    outcomes: options.outcomes,
    done,
  });

  const hooks: RelayHooks = {
    now,
    isClosing,
    refuse: (ctx, err) => refuse(ctx, err),
    onHeaders: (ctx) => {
      releaseBody(ctx);
      // A 5xx its worker answered when told to end it at the shutdown deadline (cutAll): its wait is the shutdown's,
      // as the master's own 503 there is not timed (request-end.ts refuse).
      if (ctx.version !== undefined && !(ctx.isCutByWorker && headStatus(ctx) >= 500))
        metrics.observeHeaderLatency(ctx.version, (ctx.headersAtMs - ctx.startedAtMs) / 1000);
    },
    onBodySent: (ctx) => dropBody(ctx),
  };
  // Step 4 again, for a request whose worker died before it got it (retry.ts).
  const { retryUnreached, retryUnreadCall } = createRetries({
    log,
    admitAgain: (ctx) => {
      // A removed version's workers are not restarted: it would wait out queueTimeoutMs for none.
      if (stillRouted(ctx)) admit(ctx, true);
    },
  });
  const proxy: WorkerProxy = createWorkerProxy({
    log,
    refuse: (ctx, err) => refuse(ctx, err),
    retryUnreached,
    hooks,
  });
  const directConnections = new DirectConnections();

  function serve(req: IncomingMessage, res: ServerResponse): void {
    const ctx = new RequestContext(req, res, now());
    startServing(ctx);
    res.once('close', () => {
      stopServing(ctx);
      finish(ctx);
    });
    const isBodyless = !hasBody(req);
    if (isBodyless) keepWithoutContinue(res);
    try {
      if (!readHead(ctx) || !route(ctx)) return;
      if (isBodyless) {
        admit(ctx);
        return;
      }
      readRequestBody(ctx);
    } catch (err) {
      refuse(ctx, err);
    }
  }

  // Step 1: what the head alone decides — health, request id, URL size, draining.
  function readHead(ctx: RequestContext): boolean {
    const { req, res } = ctx;
    if (isUpgrade(req)) res.shouldKeepAlive = false;
    // Past limits.maxClientConnections: one answer (a health check's, or the 503 below), then the connection closes.
    const isOverBound = options.isOverBound?.(req.socket) === true;
    if (isOverBound) res.shouldKeepAlive = false;
    // Absolute-form is served as its path; a target of no form the master takes is refused below, after the checks
    // every refusal gets (request id, head problems that close the connection, CORS).
    const target = originForm(req.url ?? '/');
    // Absolute-form's host is the request's (RFC 9112 §3.2.2): the worker and x-forwarded-host get it, not Host's,
    // once the client's own Host has been checked (headProblem, as nginx checks it whatever the target's form).
    const authority = target !== undefined && target !== req.url ? targetAuthority(req.url!) : undefined;
    if (target !== undefined) req.url = target;
    const path = target?.split('?', 1)[0];
    // A head the master refuses (two Hosts, a transfer-coding other than chunked, HTTP/2.0) is refused on the health
    // paths too, below, and its connection closed: answered and kept alive, what followed it was read as a request.
    if (path !== undefined && HEALTH_PATHS.has(path) && headProblem(req) === undefined) {
      ctx.isHealthCheck = true;
      if (req.method !== 'GET' && req.method !== 'HEAD') {
        res.setHeader('allow', 'GET, HEAD');
        refuse(ctx, new GraygateError('method_not_allowed', `${path} answers GET and HEAD`));
        return false;
      }
      if (path === '/healthz') sendJson(res, 200, { status: 'ok' });
      else {
        const ready = registry.isReady && !isClosing();
        sendJson(res, ready ? 200 : 503, { status: ready ? 'ready' : 'not_ready', versions: readiness(registry) });
      }
      return false;
    }
    ctx.reqId = pickRequestId(headerValue(req.headers['x-request-id']), newRequestId);
    res.setHeader('x-request-id', ctx.reqId);
    const origin = headerValue(req.headers['origin']);
    const cors = registry.config.cors;
    const verdict = corsVerdict(origin, cors);
    if (corsVaries(cors)) res.setHeader('vary', 'Origin');
    // On every answer to an allowed page from here on, refusals of the head included: without them its script sees
    // no status, body nor Retry-After (a 503 past the bound, a 415 for a gzipped body), only "Failed to fetch".
    if (verdict === 'allowed') {
      for (const [name, value] of Object.entries(responseCorsHeaders(origin!, cors))) res.setHeader(name, value);
    }
    const isAllowedPreflight = verdict === 'allowed' && isPreflight(req.method, req.headers);
    // Past the bound, before the head's other checks (a CORS 403 is an answer too), but for an allowed page's
    // preflight, answered below and closed as every connection past the bound is: refused, the browser read it as a
    // network error and never sent the call whose 503 and Retry-After tell it to back off (a browser probe).
    if (isOverBound && !isAllowedPreflight) {
      refuse(ctx, new GraygateError('too_many_connections', undefined, { retryAfterS: 1 }));
      return false;
    }
    // Node dropped the lines past MAX_HEADER_LINES, maybe a Content-Length it framed the body by: the master
    // cannot know what the request was (a body read as none reached no limit, and the worker saw none).
    if (req.rawHeaders.length >= 2 * MAX_HEADER_LINES) {
      refuse(ctx, new GraygateError('headers_too_large', `${MAX_HEADER_LINES} header lines or more`));
      return false;
    }
    const framing = headProblem(req);
    if (framing !== undefined) {
      // A head nginx refuses: what the client sends after it on this connection is not read (nginx closes too).
      res.setHeader('connection', 'close');
      refuse(ctx, framing);
      return false;
    }
    if (authority !== undefined) req.headers.host = authority;
    // SPEC §12: CORS is decided by the master, before anything is forwarded.
    if (verdict === 'forbidden') {
      refuse(ctx, new GraygateError('forbidden', `origin ${JSON.stringify(origin)} is not allowed (cors.origins)`));
      return false;
    }
    if (isAllowedPreflight) {
      res.writeHead(204, preflightHeaders(origin!, req.headers, cors));
      res.end();
      return false;
    }
    if (target === undefined) {
      res.setHeader('connection', 'close'); // a head refused: what follows it is not read
      refuse(
        ctx,
        new GraygateError(
          'invalid_request',
          'malformed request target: send /path, or http://host/path without userinfo',
        ),
      );
      return false;
    }
    const limits = registry.config.limits;
    if (target.length > limits.maxUrlBytes) {
      refuse(
        ctx,
        new GraygateError(
          'url_too_long',
          `the request target is ${target.length} bytes, the limit is ${limits.maxUrlBytes}`,
        ),
      );
      return false;
    }
    if (isClosing()) {
      refuse(ctx, new GraygateError('shutting_down'));
      return false;
    }
    return true;
  }

  // Step 2: the version (SPEC §3), and what it decides before any body byte is read.
  function route(ctx: RequestContext): boolean {
    const { req } = ctx;
    const factsResult = readRoutingFacts(req.url ?? '/', req.headers, registry.config.routing, randomUUID);
    if (!factsResult.ok) {
      refuse(ctx, new GraygateError('invalid_request', factsResult.message));
      return false;
    }
    ctx.forwardPath = factsResult.forwardPath;
    ctx.routingFacts = factsResult.facts;
    // Issue 12 part 5: no x-user-id and no cookie — the JSON body's `user` may key the choice, once the body is read.
    if (needsStickyKey(factsResult.facts) && hasBody(req)) ctx.isChoiceDeferred = true;
    else if (!choose(ctx, factsResult.facts)) return false;
    // SPEC §4a/issue 9 part 7: an over-limit Content-Length is refused before `100 Continue`.
    const maxBodyBytes = bodyLimitBytes(registry.config.limits);
    const declared = declaredLength(req);
    if (declared !== undefined && declared > maxBodyBytes) {
      refuse(ctx, bodyTooLarge(declared, maxBodyBytes));
      return false;
    }
    return true;
  }

  // Step 2b: the weighted or explicit choice itself (SPEC §3), from
  // the head's facts and, if deferred, the body's `user`.
  function choose(ctx: RequestContext, facts: RoutingFacts): boolean {
    const decision = chooseVersion(facts, registry.routingTable);
    if (!decision.ok) {
      refuse(ctx, new GraygateError(decision.code, decision.message));
      return false;
    }
    const group = registry.versions.get(decision.version);
    if (group === undefined) {
      refuse(ctx, new GraygateError('unknown_version', `unknown version "${decision.version}"`));
      return false;
    }
    ctx.version = decision.version;
    ctx.group = group;
    ctx.isPinned = decision.reason === 'query' || decision.reason === 'header';
    ctx.res.setHeader('x-graygate-version', decision.version);
    if (decision.setCookie !== undefined) ctx.res.setHeader('set-cookie', decision.setCookie);
    return true;
  }

  // Step 2 again, for a request routed at its head: its version was removed (a DELETE, a reload) while its body came or
  // while its worker died under it, so it is chosen again as if it came now (what was queued for the version is still
  // served), not refused 503 for a removal it could not see. False when that choice refused it.
  function stillRouted(ctx: RequestContext): boolean {
    return registry.versions.get(ctx.version!) === ctx.group || choose(ctx, ctx.routingFacts!);
  }

  // Step 3: the whole body, before a worker slot is taken (nginx proxy_request_buffering on).
  function readRequestBody(ctx: RequestContext): void {
    const { req, res } = ctx;
    ctx.phase = 'body';
    const limits = registry.config.limits;
    // A body the parser already refused (body-parse-errors.ts): refused now, with no `100 Continue` before it.
    const parseError = bodyParseErrorOf(req);
    if (parseError !== undefined) return refuse(ctx, parseError);
    // The server has a checkContinue listener, so Node sent no `100 Continue`: send it now that the body is wanted.
    // Never to an HTTP/1.0 client, which must ignore the expectation and cannot read a 1xx (RFC 9110 §10.1.1).
    const isHttp11 = req.httpVersionMajor > 1 || req.httpVersionMinor >= 1;
    const expect = headerValue(req.headers['expect']);
    if (isHttp11 && expect !== undefined && isContinueExpectation(expect)) res.writeContinue();
    readBody(req, {
      maxBytes: bodyLimitBytes(limits),
      idleTimeoutMs: limits.bodyTimeoutMs,
      // No signal: a client that leaves mid-body ends the read through the request's own `aborted` and `error`
      // (readBody; node's abortIncoming runs before the response's `close` that would abort ctx.signal); an
      // AbortController a POST was ~6 % of the master's CPU a stream (docs/BENCHMARKS.md, "A stream's set-up, per
      // process").
      budget,
    }).then(
      (body) => {
        ctx.body = body;
        ctx.budgetBytes = body.length;
        ctx.bodyReadAtMs = now();
        if (ctx.phase === 'done') return releaseBody(ctx);
        const top = body.length === 0 ? undefined : scanTopLevel(body);
        if (top !== undefined) ctx.asksStream = top.isObject ? top.stream === true : undefined;
        if (ctx.isChoiceDeferred) {
          ctx.isChoiceDeferred = false;
          if (!choose(ctx, { ...ctx.routingFacts!, stickyBody: top?.user })) return;
        } else if (!stillRouted(ctx)) {
          return;
        }
        admit(ctx);
      },
      (err: unknown) => refuse(ctx, err),
    );
  }

  // Step 4: a worker slot, or a bounded wait for one, or 503 at once (SPEC §4). `isAgain`: admitted before, and its
  // worker never got it (retry.ts): no 503 at once, it waits first in line.
  function admit(ctx: RequestContext, isAgain = false): void {
    const group = ctx.group!;
    ctx.phase = 'queue';
    // limits.directStreams: the worker that holds the connection, when it has room (admission.ts), so that the
    // request can go as an IPC call and the connection's descriptor is not sent to every worker of the version.
    const now = group.admission.tryAcquire(
      registry.config.limits.directStreams ? directConnections.holderTest(ctx.req.socket) : undefined,
    );
    if (now !== undefined && !isGraygateError(now)) return forward(ctx, now);
    if (isGraygateError(now) && !isAgain) return refuse(ctx, now);
    group.admission.wait(ctx.signal, isAgain).then(
      (lease) => {
        if (ctx.phase === 'done') return lease.release();
        forward(ctx, lease);
      },
      (err: unknown) => refuse(ctx, err),
    );
  }

  // Step 5: the request, with the master's framing and headers, to the chosen worker.
  function forward(ctx: RequestContext, lease: Lease<WorkerHandle>): void {
    const { req } = ctx;
    ctx.lease = lease;
    ctx.workerPid = lease.worker.pid;
    req.url = ctx.forwardPath;
    // Go's ReverseProxy order: drop hop-by-hop headers first, then add ours, so a
    // `Connection: x-request-id` from the client cannot remove them (SPEC §3).
    const clientHeaders = ctx.clientHeaders ?? req.headers;
    const headers = copyHeaders(clientHeaders, NOT_FORWARDED);
    // SPEC §4a: framing is the master's, never the client's: a fresh Content-Length for the body it read.
    if (ctx.body.length > 0 || BODY_METHODS.has(req.method ?? '')) headers['content-length'] = String(ctx.body.length);
    // x-forwarded-* as http-proxy-3's xfwd wrote them (a client's own for, port and proto first, ours appended), but
    // with the port the client connected to, as Envoy and AWS's load balancers send it: xfwd's came from Host (80 for
    // `Host: gw`, whatever the listener's). The worker's direct calls get them too.
    appendForwarded(headers, 'x-forwarded-for', req.socket.remoteAddress);
    appendForwarded(headers, 'x-forwarded-port', req.socket.localPort);
    appendForwarded(headers, 'x-forwarded-proto', 'http');
    // A client's empty one too, as xfwd's `||` did.
    if (headers['x-forwarded-host'] === undefined || headers['x-forwarded-host'] === '')
      headers['x-forwarded-host'] = headers.host ?? '';
    headers['x-request-id'] = ctx.reqId;
    headers['x-graygate-version'] = ctx.version;
    headers[WAITED_HEADER] = (now() - ctx.startedAtMs).toFixed(2);
    const limits = registry.config.limits;
    const upstream = ctx.group!.build.upstream;
    const idleMs = workerIdleTimeoutMsFor(limits, upstream);
    // A connection that closes after this answer is not offered: its descriptor would cost a transfer, and hold the
    // worker's queue, for at most one answer.
    const keepAlive = ctx.res.shouldKeepAlive && !isClosing();
    if (limits.directStreams && keepAlive) {
      const offered = directConnections.offer(ctx, lease.worker);
      if (offered !== undefined) {
        // node:http's own `Keep-Alive: timeout=N` (its keepAliveTimeout), which relayed answers carry too.
        const server = (req.socket as { server?: { keepAliveTimeout?: number } }).server;
        // A sign of life at least every third of the master's shortest timer on the answer.
        const watchMs = Math.min(limits.workerHeadersTimeoutMs, idleMs > 0 ? idleMs : Infinity);
        const offer: DirectOffer = {
          conn: offered.conn,
          keepAliveTimeoutS: Math.floor((server?.keepAliveTimeout ?? 0) / 1000),
          sendTimeoutMs: limits.sendTimeoutMs,
          heartbeatMs: Math.max(1, Math.floor(watchMs / 3)),
          headers: ctx.res.getHeaders(),
          // The write lease (shared/direct.ts): the master's own answer, its 504, comes no sooner than the guard after.
          writeBy: monotonicMs() + limits.workerHeadersTimeoutMs - leaseGuardMs(limits.workerHeadersTimeoutMs),
        };
        // The worker holds the connection: the request goes as an IPC call, and every answer straight to the client.
        const timeouts = { headersMs: limits.workerHeadersTimeoutMs, idleMs };
        if (offered.isTaken && callDirect(ctx, lease.worker, headers, offer, timeouts, hooks, retryUnreadCall)) return;
        ctx.isDirectOffered = true;
        headers[DIRECT_HEADER] = JSON.stringify(offer);
      }
    }
    req.headers = headers;
    // req.headers are the forwarded ones now, our x-forwarded-* hop appended: a try again starts from the client's own.
    ctx.clientHeaders = clientHeaders;
    proxy.forward(ctx, lease.worker, {
      headersMs: limits.workerHeadersTimeoutMs,
      idleMs,
      sendMs: limits.sendTimeoutMs,
    });
  }

  function startServing(ctx: RequestContext): void {
    ctx.servingNext = servingHead;
    if (servingHead !== undefined) servingHead.servingPrev = ctx;
    servingHead = ctx;
  }

  /** Once, at its response's 'close'. */
  function stopServing(ctx: RequestContext): void {
    const { servingPrev: prev, servingNext: next } = ctx;
    if (prev !== undefined) prev.servingNext = next;
    else servingHead = next;
    if (next !== undefined) next.servingPrev = prev;
    ctx.servingPrev = ctx.servingNext = undefined;
  }

  function done(): void {
    inflight--;
    if (inflight === 0 && idleWaiters.length > 0) {
      const waiters = idleWaiters;
      idleWaiters = [];
      for (const w of waiters) w();
    }
  }

  return {
    arrive() {
      inflight++;
      arrived++;
    },
    serve,
    // Never started: nothing held, no log line (the client left before its turn).
    drop: () => done(),
    get inflight() {
      return inflight;
    },
    get arrived() {
      return arrived;
    },
    idle() {
      if (inflight === 0) return Promise.resolve();
      return new Promise((resolve) => idleWaiters.push(resolve));
    },
    closeIdle: (socket) => directConnections.closeIdle(socket),
    async cutAll(err, graceMs) {
      // Those queued for a slot are the registry's to refuse (refuseQueued): their leases leave the queue with them. An
      // answer written whole is left to end as it would: its bytes are on their way, and it failed nothing.
      // Taken first: a refusal may end a request (its 'close') as the list is walked.
      const serving: RequestContext[] = [];
      for (let ctx = servingHead; ctx !== undefined; ctx = ctx.servingNext) serving.push(ctx);
      const endedByWorkers: Array<Promise<void>> = [];
      // The master's answers whose last bytes its client has not taken yet (one reading slowly): their connections
      // close once those bytes are out, within `graceMs` too, or a stream's final event, or the end of an answer
      // written whole, was dropped with the connection.
      const flushing: Array<Promise<void>> = [];
      const left: RequestContext[] = [];
      for (const ctx of serving) {
        if (ctx.isHealthCheck || ctx.phase === 'queue' || ctx.phase === 'done') continue;
        if (!ctx.isDirect && ctx.res.writableEnded) {
          if (graceMs > 0) whenFlushed(ctx.res, flushing);
          continue;
        }
        // Its worker writes this answer (or may: an offer or a call before its status), where its framing stands is
        // the worker's to know: told to, it ends the answer as failed, a stream with its final event (a client's SDK
        // reads a failed answer, where a cut one reads as a network's fault); the master reads its end as usual.
        if (graceMs > 0 && isWorkerWriting(ctx) && ctx.lease?.worker.cutAnswers() === true) {
          ctx.isCutByWorker = true;
          left.push(ctx);
          endedByWorkers.push(new Promise((resolve) => ctx.res.once('close', resolve)));
          continue;
        }
        refuseAtDeadline(ctx, err);
        if (graceMs > 0 && !ctx.isDirect) whenFlushed(ctx.res, flushing);
      }
      if (left.length === 0 && flushing.length === 0) return;
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        Promise.all([...endedByWorkers, ...flushing]),
        new Promise((resolve) => (timer = setTimeout(resolve, graceMs))),
      ]);
      clearTimeout(timer);
      // A worker that did not end its answers in time (stopped, or busy): their connections are cut, as before.
      for (const ctx of left) if (ctx.phase !== 'done') refuseAtDeadline(ctx, err);
    },
  };

  function refuseAtDeadline(ctx: RequestContext, err: Error): void {
    try {
      refuse(ctx, err);
    } catch (e) {
      // This runs in the deadline's timer: a throw ended the master with no answer written to any request left
      // (a reviewer's injected one). One request's bug costs the others nothing; its connection closes next.
      log.error({ err: e, reqId: ctx.reqId }, 'unexpected error cutting a request at the shutdown deadline');
    }
  }
}

/**
 * An answer ended but not yet handed whole to its connection's socket (its client reads slowly): adds to `into` what
 * resolves once it has been ('finish'), or its connection has closed.
 */
function whenFlushed(res: ServerResponse, into: Array<Promise<void>>): void {
  if (!res.writableEnded || res.writableFinished || res.destroyed) return;
  into.push(
    new Promise((resolve) => {
      res.once('finish', resolve);
      res.once('close', resolve);
    }),
  );
}

/** The status its worker answered with: the client's response's for a direct answer, else the worker's. */
function headStatus(ctx: RequestContext): number {
  return ctx.isDirect ? ctx.res.statusCode : (ctx.proxyRes?.statusCode ?? 0);
}

/**
 * limits.directStreams: the worker writes this request's answer straight to the client, or may (an offered request or
 * a call before its status), so only it knows where that answer's framing stands.
 */
function isWorkerWriting(ctx: RequestContext): boolean {
  return ctx.isDirect || (ctx.phase === 'worker' && (ctx.isDirectCall || ctx.isDirectOffered));
}

/**
 * A request framed with no body that said `Expect: 100-continue` holds nothing back, so its answer keeps the connection
 * (as nginx's and node's own default, which sends `100 Continue` at once): node closed it after every answer to such a
 * request, refusals too, the requests pipelined after it dropped, since the master sends `100 Continue` only when it
 * reads a body (readRequestBody).
 */
function keepWithoutContinue(res: ServerResponse): void {
  const internals = res as ServerResponse & ServerResponseInternals;
  if (internals._expect_continue === true) internals._expect_continue = false;
}

function readiness(registry: VersionRegistry): Record<string, boolean> {
  const out: Record<string, boolean> = {};
  for (const [name, version] of registry.versions) out[name] = version.hasReadyWorker;
  return out;
}

/**
 * The largest body the master takes: maxBodyBytes, or the whole body budget when that is smaller, since a body over it
 * could never be held; it was a 503 body_budget with Retry-After, every time, which a client retries for ever.
 */
function bodyLimitBytes(limits: Pick<Limits, 'maxBodyBytes' | 'maxBufferedBodyBytes'>): number {
  return Math.min(limits.maxBodyBytes, limits.maxBufferedBodyBytes);
}

/** A hop's value appended to the client's own list of an x-forwarded-* header, or the header's only one. */
function appendForwarded(headers: IncomingHttpHeaders, name: string, value: string | number | undefined): void {
  if (value === undefined) return;
  const sent = headers[name];
  headers[name] = typeof sent === 'string' && sent !== '' ? `${sent},${value}` : String(value);
}
