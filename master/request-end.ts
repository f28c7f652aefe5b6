import {
  DEADLINE_CUT_MESSAGE,
  GraygateError,
  toErrorResponse,
  toResponsesErrorEvent,
  toSseErrorEvent,
  type ErrorCode,
} from '../shared/errors.js';
import { sendError } from '../shared/http-headers.js';
import { hasBody } from '../shared/body.js';
import type { Socket } from 'node:net';
import type { Logger } from '../shared/log.js';
import { NO_VERSION, type ErrorKind } from '../shared/metric-names.js';
import type { MasterMetrics } from './metrics.js';
import type { ByteBudget } from '../shared/byte-budget.js';
import { EMPTY_BODY, isBeforeAdmission, type RequestContext } from './request-context.js';
import { cutDirect } from './direct-connections.js';
import { socketErrorCodeOf } from './socket-errors.js';
import { TIME_PER_TOKEN_LEFT, TIME_PER_TOKEN_NOT_REPORTED } from './canary/outcomes.js';
import { isModelCall, isModelListRead } from '../shared/model-calls.js';
import { endsAtEventBoundary } from './relay.js';

// The end of the main port's request path (gateway.ts): `refuse`, the one
// function that turns any error into the client's answer, and `finish`, which
// runs once per request when its response closes, releases what the request
// held, records its outcome and writes its log line.

/** SPEC §11 outcomes: the error flag and the latency the canary judge compares. */
export interface OutcomeSink {
  /**
   * firstTokenMs for streams, responseMs for the rest; timePerTokenMs for streams that ended well (the worker's
   * measure; TIME_PER_TOKEN_NOT_REPORTED when it sent none), TIME_PER_TOKEN_LEFT for one its client left after its
   * first content; NaN where there is none.
   */
  record(version: string, isError: boolean, firstTokenMs: number, responseMs: number, timePerTokenMs: number): void;
  /** A request its client gave up on before its first token (a stream) or its answer, after waiting this long. */
  recordWait(version: string, isStream: boolean, waitedMs: number): void;
}

export interface RequestEndOptions {
  log: Logger;
  metrics: MasterMetrics;
  budget: ByteBudget;
  /** True once SIGTERM arrived: a refusal then closes the connection. */
  isClosing: () => boolean;
  /** True once the shutdown deadline passed: a request that ends unfinished then was cut by the master. */
  isCutting: () => boolean;
  /** Monotonic clock in ms. */
  now: () => number;
  outcomes: OutcomeSink | undefined;
  /** Called once per request, after its log line (a health check has none). */
  done: () => void;
}

export interface RequestEnd {
  refuse: (ctx: RequestContext, err: unknown) => void;
  /** Lets go of the request body (the worker has it, or never will): the master holds it no longer. */
  dropBody: (ctx: RequestContext) => void;
  /**
   * Gives the body's bytes back to the body budget: once the worker answered (it has prepared and sent the body
   * upstream by then), or at the end. The budget bounds bodies on their way, in the master and in the worker.
   */
  releaseBody: (ctx: RequestContext) => void;
  finish: (ctx: RequestContext) => void;
}

/** Refusals that count in graygate_rejected_total (the master's own overload answers). */
const REJECTION_CODES: ReadonlySet<ErrorCode> = new Set([
  'queue_full',
  'queue_timeout',
  'no_ready_worker',
  'body_budget',
  'worker_timeout',
]);
/**
 * Refusals after which the rest of the request cannot have been
 * read: the connection closes (nginx does the same on 413).
 */
const CLOSING_CODES: ReadonlySet<ErrorCode> = new Set([
  'headers_too_large', // 2000 header lines or more: the framing Node read is not one the master saw
  'body_too_large',
  'body_timeout',
  'body_budget',
  'url_too_long',
]);

/** Longest time a refused upload is read and dropped before its connection closes (nginx lingering_time: 30 s). */
const LINGER_MS = 5000;

/**
 * nginx lingering_close: the client of a refused upload is likely still sending its body. Closing with its
 * bytes unread makes the kernel send a reset, which can destroy the answer in the client's buffers before it
 * reads it (Python's http.client saw a broken pipe instead of the 413 or 503, 10 times in 10). So the rest
 * of the body is read and dropped, the connection half-closed once the answer is out, and closed when the
 * client closes its side or after LINGER_MS.
 */
function linger(ctx: RequestContext): void {
  const { req } = ctx;
  const socket = req.socket as Socket & { destroySoon?: () => void };
  if (socket === null || socket.destroyed) return;
  req.resume(); // read on, into nothing
  // After a `Connection: close` answer Node calls destroySoon: end (FIN after the answer), then close the
  // socket. Here only the end; the close comes from the client's own, or from the timer.
  socket.destroySoon = () => socket.end();
  const timer = setTimeout(() => socket.destroy(), LINGER_MS).unref();
  socket.once('close', () => clearTimeout(timer));
}

/** What the master says of a request its shutdown deadline cut (shutdownTimeoutMs). */
const CUT_AT_DEADLINE = new GraygateError('shutting_down', DEADLINE_CUT_MESSAGE);

export function createRequestEnd(options: RequestEndOptions): RequestEnd {
  const { log, metrics, budget, isClosing, now, done } = options;

  /**
   * The one function that turns any error into the client's answer (STYLE §8):
   * an OpenAI-shaped error before the status went out, a final SSE error event
   * on a stream after it (STYLE §9), a reset otherwise; and the worker request,
   * if any, is aborted.
   */
  function refuse(ctx: RequestContext, failure: unknown): void {
    const { req, res } = ctx;
    let response = toErrorResponse(failure);
    if (response.code === 'internal_error')
      log.error({ err: failure, reqId: ctx.reqId }, 'unexpected error in the request path');
    // Past the shutdown deadline what ends a request unfinished is the shutdown (the master closes the connections
    // and stops the workers): the client reads `shutting_down` (its answer, or its stream's last event), not the
    // worker's failure it would otherwise see.
    const isCut = options.isCutting();
    const err = isCut ? CUT_AT_DEADLINE : failure;
    if (isCut) response = toErrorResponse(err);
    const code = response.code;
    ctx.errorCode ??= code;
    // Before a version was chosen (a body_budget refusal while the body's `user` may still choose it): under "none",
    // as its requests_total is.
    if (REJECTION_CODES.has(code)) metrics.onRejected(ctx.version ?? NO_VERSION, code);
    // Refused before any status, to a client still there: the refusal is the answer, and its time is timed as the
    // answer's (a stopped worker's 504 included: its requests, the slowest, must not be missing from the histogram).
    // A direct answer's status went out from the worker.
    const isBeforeStatus = !ctx.isDirect && !res.headersSent && !res.writableEnded;
    // A 503 of the shutdown's deadline times the shutdown, not the version (nor is it its error: finish).
    if (isBeforeStatus && !ctx.isClientGone && ctx.version !== undefined && !isCut)
      metrics.observeHeaderLatency(ctx.version, (now() - ctx.startedAtMs) / 1000);
    // A worker holds the connection (a call) or may still take it (an offer), and may write an answer of its own.
    const isWorkerHolding = ctx.phase === 'worker' && (ctx.isDirectCall || ctx.isDirectOffered);
    // Past the deadline such a worker may be writing its answer now, its report of it unread (the deadline's timer runs
    // before I/O), and its write lease (shared/direct.ts), which keeps a 504 of the master's out of its answer, cannot
    // be waited out: a 503 went in after the worker's head and first event (the review's test, hop-direct). Cut.
    if (ctx.isDirect || (isCut && isWorkerHolding)) {
      // The worker writes this answer: where its framing stands is unknown here, so no error can be appended.
      if (ctx.phase === 'relay') ctx.isStreamFailed = true;
      cutDirect(ctx);
    } else if (!ctx.isClientGone && !res.writableEnded) {
      if (!res.headersSent) {
        // The connection closes after a refusal that left request bytes unread, and while draining; and when a worker
        // holds it and may write an answer after this one.
        const isBodyUnread = isBeforeAdmission(ctx.phase) && hasBody(req);
        const isClosingConnection = isClosing() || CLOSING_CODES.has(code) || isBodyUnread || isWorkerHolding;
        sendError(res, response, isClosingConnection ? { connection: 'close' } : {});
        // A client silent for bodyTimeoutMs is not sending: nothing to wait for.
        if (isBodyUnread && code !== 'body_timeout') linger(ctx);
      } else if (ctx.isEventStream && endsAtEventBoundary(ctx.previousChunk, ctx.lastChunk)) {
        ctx.isStreamFailed = true;
        // A Responses stream's clients read the Responses API's own error event (a worker that died mid-stream).
        // (Its numbers are read for a Responses stream alone: relay.ts.)
        res.end(
          ctx.sequenceNumbers === undefined
            ? toSseErrorEvent(err)
            : toResponsesErrorEvent(err, ctx.sequenceNumbers.next),
        );
      } else {
        // A whole answer cut after its status (a relayed embedding or completion), or a stream cut in the middle of an
        // event (the worker died writing it), where an error event would be read as the rest of that event: a reset
        // (SPEC §4). Failed, for the canary too.
        ctx.isStreamFailed = true;
        res.destroy();
      }
    }
    ctx.proxyReq?.destroy();
  }

  // The body is with the worker (or never will be): the request lets go of it, or a stream would hold
  // its prompt for its whole life (issue 10: 100 held streams with 512 KiB prompts kept ~70 MB in the master).
  function dropBody(ctx: RequestContext): void {
    ctx.body = EMPTY_BODY;
  }

  // The worker has answered (or never will): its copies of the body, raw, parsed and converted (~3× its size),
  // are gone too, so the bytes leave the budget. Released when the master alone had let go, a burst of large
  // prompts grew a pod by ~3.5× the budget (24 × 9.5 MiB: +800 MiB), past a container's memory limit.
  function releaseBody(ctx: RequestContext): void {
    if (ctx.budgetBytes > 0) budget.release(ctx.budgetBytes);
    ctx.budgetBytes = 0;
    dropBody(ctx);
  }

  // The response closed (finished, or the client left): release what the request held, log once.
  function finish(ctx: RequestContext): void {
    const { req, res } = ctx;
    const wasPhase = ctx.phase;
    ctx.phase = 'done';
    clearTimeout(ctx.workerTimer);
    ctx.workerTimer = undefined;
    const isAborted = !res.writableFinished;
    if (isAborted) {
      ctx.abort?.abort(new GraygateError('invalid_request', 'the client closed the connection'));
      ctx.proxyReq?.destroy();
    }
    // No worker request was ever made (the client left first): the slot is free now.
    if (ctx.proxyReq === undefined) ctx.lease?.release();
    releaseBody(ctx);
    if (ctx.isHealthCheck) return done();
    // 0: the client left before any answer. A direct answer's status went out from the worker, when it said so
    // (relay.ts, direct-calls.ts).
    const status = res.headersSent || ctx.isDirect ? res.statusCode : 0;
    const version = ctx.version ?? NO_VERSION;
    const endMs = now();
    // A client that gave up waiting for its version's answer (queued for a slot, at the worker, or a stream before
    // its first content) was failed by that version, as nginx's 499 says; one that left while it still sent
    // its body was not.
    // Cut at the shutdown deadline (refused `shutting_down`, its connection closed, or its worker stopped, by the
    // master, or by its worker when told to: a 5xx or a failed stream then): neither its client's leaving nor its
    // version's failure; its line says `shutting_down`.
    const isCut =
      (isAborted || ctx.isStreamFailed || ctx.errorCode === 'shutting_down' || (ctx.isCutByWorker && status >= 500)) &&
      options.isCutting();
    const isAbandoned =
      isAborted &&
      !isCut &&
      (wasPhase === 'queue' ||
        wasPhase === 'worker' ||
        (wasPhase === 'relay' && ctx.isEventStream && ctx.firstContentAtMs === 0));
    const error = isCut ? undefined : errorKind(status, ctx.isStreamFailed, isAbandoned);
    metrics.onRequestDone(version, status, error);
    // Given up before any answer: how long it waited is the least its answer would have taken (time to headers).
    if (isAbandoned && status === 0 && ctx.version !== undefined)
      metrics.observeHeaderLatency(ctx.version, (endMs - ctx.startedAtMs) / 1000);
    // Refused before it was admitted for its version (its head or body: a 413, a 408, a 503 body_budget) it never
    // reached the version: not judged. The body budget is the master's, shared by every version, and its 503 counted
    // for the version a request's x-user-id chose (not one whose body's `user` would have): one slow upload pinned to
    // any version (not judged) made each cheap request of a client's chosen keys an error of the canary (a probe).
    if (
      options.outcomes !== undefined &&
      ctx.version !== undefined &&
      !ctx.isPinned &&
      !isBeforeAdmission(wasPhase) &&
      !isCut
    )
      recordOutcome(options.outcomes, ctx, status, error, isAborted, endMs);
    const line: Record<string, unknown> = {
      reqId: ctx.reqId,
      version: ctx.version,
      method: req.method,
      // Without the query string: clients put keys there too (`?key=…`), and redact paths cannot reach inside a URL.
      path: (req.url ?? '/').split('?', 1)[0],
      status,
      durationMs: Math.round((endMs - ctx.startedAtMs) * 100) / 100,
      // A direct answer's bytes are the worker's report; a cut one has none (left out rather than a wrong 0).
      bytesOut: ctx.isDirect
        ? ctx.directBytes
        : req.socket === null
          ? undefined
          : req.socket.bytesWritten - ctx.socketBytesAtStart,
      workerPid: ctx.workerPid,
      aborted: isAborted,
    };
    if (isAborted && wasPhase !== 'relay') line['phase'] = wasPhase;
    // The connection's own error, when it had one (ETIMEDOUT: the client's network died; ECONNRESET: it reset).
    const socketError = isAborted ? socketErrorCodeOf(req.socket) : undefined;
    if (socketError !== undefined) line['clientError'] = socketError;
    if (ctx.errorCode !== undefined) line['error'] = ctx.errorCode;
    else if (isCut) line['error'] = 'shutting_down';
    if (ctx.isStreamFailed) line['streamFailed'] = true;
    // The worker's time per token of a stream that ended well (SPEC §11): which requests drove a canary's verdict.
    if (ctx.timePerTokenMs >= 0) line['timePerTokenMs'] = Math.round(ctx.timePerTokenMs * 100) / 100;
    if (ctx.isDirect) line['direct'] = true; // limits.directStreams: the worker wrote this answer to the client
    if (ctx.isDirectCall) line['directCall'] = true; // … and the request reached it as an IPC call
    log.info(line, 'request');
    done();
  }

  return { refuse, dropBody, releaseBody, finish };
}

/**
 * How a version failed a request, if it did (SPEC §11's error, which the canary judges and
 * graygate_request_errors_total counts): a 5xx, a stream that failed after its 200, a request its client gave up on.
 */
function errorKind(status: number, isStreamFailed: boolean, isAbandoned: boolean): ErrorKind | undefined {
  if (status >= 500) return '5xx';
  if (isStreamFailed) return 'stream_failed';
  return isAbandoned ? 'abandoned' : undefined;
}

/**
 * SPEC §11: an error is a 5xx (the worker's, or the master's own refusal of the version's admission) or a stream that
 * ended with an error event after its 200. Latencies only of answers that succeeded, from the moment the body was read:
 * streams' first content event, other answers' end. Judged on the traffic the weights route but the model list (a
 * list served from the worker's cache a hundred times a call let a canary whose every call failed pass with "0.49 %
 * errors", a probe): requests pinned to a version are not recorded (the caller), nor 4xx answers (the request's fault:
 * a client's malformed requests would dilute a version's error rate), but UPSTREAM_FAULTS on a model call. A request
 * its client gave up on is no error (one client closing a few connections
 * rolled any canary back within a second): its wait is its value in the first-token (a stream) or response-time
 * sample, on both versions alike (what nginx logs as a 499's time), so a version that leaves requests hanging until
 * their clients give up is judged slow; it is no request of the error rate (leaving early dilutes nothing).
 */
function recordOutcome(
  sink: OutcomeSink,
  ctx: RequestContext,
  status: number,
  error: ErrorKind | undefined,
  isAborted: boolean,
  endMs: number,
): void {
  const { method, url } = ctx.req;
  if (isModelListRead(method, url)) return;
  if (error === 'abandoned') {
    // Its kind: the worker's answer, if it had begun one; else what the body asked for (unknown: not judged).
    const isStream = ctx.headersAtMs > 0 ? ctx.isEventStream : ctx.asksStream;
    if (isStream !== undefined) sink.recordWait(ctx.version!, isStream, endMs - ctx.bodyReadAtMs);
    return;
  }
  // A 4xx is the request's fault (it would dilute an error rate), but for the ones only an upstream gives a model
  // call: its key refused (401, 403), its URL or model wrong (404), its quota or rate spent (429). A canary whose
  // upstream answered a third of its calls 429, or every one 404, was promoted or held with "0 errors" (a probe).
  const isVersionFault = status >= 500 || (UPSTREAM_FAULTS.has(status) && isModelCall(method, url));
  if (status === 0 || (status >= 400 && !isVersionFault)) return;
  let firstTokenMs = NaN;
  let responseMs = NaN;
  let timePerTokenMs = NaN;
  if (error === undefined && status < 400) {
    if (ctx.isEventStream) {
      if (ctx.firstContentAtMs > 0) firstTokenMs = ctx.firstContentAtMs - ctx.bodyReadAtMs;
      // A stream its client left has none (nor does it say the version reports none: a probe's canary so slow that
      // every client gave up mid-stream passed as "not measured"); it is counted as left.
      if (ctx.firstContentAtMs > 0)
        timePerTokenMs = isAborted
          ? TIME_PER_TOKEN_LEFT
          : ctx.timePerTokenMs >= 0
            ? ctx.timePerTokenMs
            : TIME_PER_TOKEN_NOT_REPORTED;
    } else if (!isAborted) {
      responseMs = endMs - ctx.bodyReadAtMs;
    }
  }
  sink.record(ctx.version!, error !== undefined || isVersionFault, firstTokenMs, responseMs, timePerTokenMs);
}

/**
 * A model call's statuses that come from the version's upstream (SPEC §5 passes 4xx through), counted as the
 * version's errors. graygate's own 4xx on a model call are 400, 408, 413, 414 and 431; its 404 for a path no worker
 * serves (a client's typo, as often on either version) is on no model call's path.
 */
const UPSTREAM_FAULTS: ReadonlySet<number> = new Set([401, 403, 404, 429]);
