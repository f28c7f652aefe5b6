import type { ClientRequest, IncomingMessage } from 'node:http';
import { Stream } from 'node:stream';
import { createProxyServer } from 'http-proxy-3';
import { GraygateError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { RequestContext } from './request-context.js';
import type { WorkerHandle } from './worker-handle.js';
import { relayResponse, type RelayHooks } from './relay.js';

// Master → worker (SPEC §4, §4a) over http-proxy-3's native http path (never
// its fetch path, which does not cancel on client abort). What the library
// gives: the outgoing request (headers, path, x-forwarded-*), the client-abort
// → proxyReq.destroy() wiring and one error callback. What we add:
//  - the body: already read by the master, handed over whole with a fresh
//    Content-Length (`buffer`), so no byte of the client's framing ever
//    reaches the worker (request smuggling, issue 9);
//  - the response: relayed by relay.ts (selfHandleResponse), which watches SSE
//    streams and the worker's idle time;
//  - the worker headers timeout, reset by the worker's `102 Processing` pings;
//  - knowing when the worker's socket is free again (the admission slot).

export interface ForwardTimeouts {
  /** Request sent → first response byte from the worker (a 102 counts), ms (limits.workerHeadersTimeoutMs). */
  headersMs: number;
  /** Longest silence inside a response, ms; 0 disables (limits.workerIdleTimeoutMs). */
  idleMs: number;
  /** Longest time the client reads nothing of a response it is behind on, ms (limits.sendTimeoutMs). */
  sendMs: number;
}

export interface WorkerProxy {
  /** Forwards ctx.req with ctx.body to `worker`; the caller has taken an admission lease (ctx.lease). */
  forward(ctx: RequestContext, worker: WorkerHandle, timeouts: ForwardTimeouts): void;
}

export interface WorkerProxyOptions {
  log: Logger;
  /** Failures are answered through the pipeline's one refusal function. */
  refuse: (ctx: RequestContext, err: unknown) => void;
  /**
   * Nothing of the request reached the worker, or nothing it could act on: its socket refused the connection
   * (`isRefused`: the worker died and its exit is not seen yet), or a kept-alive socket to it was reset before any
   * answer (its death, or its idle close racing this request). True if the request was taken back for another try
   * (gateway.ts), false to answer it 502.
   */
  retryUnreached: (ctx: RequestContext, worker: WorkerHandle, isRefused: boolean) => boolean;
  hooks: RelayHooks;
}

/** The body as a source for http-proxy-3's `buffer` option: one `end(body)` on the outgoing request. */
export class BodySource extends Stream {
  #body: Buffer | undefined;
  constructor(body: Buffer) {
    super();
    this.#body = body;
  }
  override pipe<T extends NodeJS.WritableStream>(destination: T): T {
    const body = this.#body;
    // http-proxy-3's per-call options hold this source until the response ends: it must not hold the body.
    this.#body = undefined;
    if (body !== undefined && body.length > 0) destination.end(body);
    else destination.end();
    return destination;
  }
}

/** http-proxy-3 copies unknown per-call options into the options of its 'proxyReq' event: the context rides along. */
interface CallOptions {
  ctx: RequestContext;
  timeouts: ForwardTimeouts;
}

export function createWorkerProxy(options: WorkerProxyOptions): WorkerProxy {
  const { log, refuse, retryUnreached, hooks } = options;
  // toProxy: the request target goes to the worker exactly as the master read and routed it (nginx's
  // `proxy_pass` without a URI part). Without it http-proxy-3 rebuilds the path through `new URL`, which
  // resolves dot segments, `%2e%2e` and backslashes: `/v1/%2e%2e/v1/chat/completions` reached the worker as
  // `/v1/chat/completions`, a path the master never saw.
  // xfwd off: the gateway writes x-forwarded-* (gateway.ts, with the listener's port).
  const proxy = createProxyServer({ xfwd: false, ws: false, selfHandleResponse: true, toProxy: true });

  proxy.on('proxyReq', (proxyReq: ClientRequest, _req: IncomingMessage, _res: unknown, callOptions: unknown) => {
    const { ctx, timeouts } = callOptions as CallOptions;
    ctx.proxyReq = proxyReq;
    // 'close' comes after the response ended and the socket went back to the
    // agent (or was destroyed): only then is the admission slot really free. This request's lease: a request tried
    // again has another by then.
    const lease = ctx.lease;
    proxyReq.once('close', () => {
      if (lease === undefined) return;
      // The worker closed the connection under this request (before its answer: the error below; or in the middle of
      // it, nothing here having refused the request and its client there): the slot waits for a sign of life.
      const isHungUp =
        ctx.isWorkerHungUp ||
        (ctx.phase === 'relay' && ctx.errorCode === undefined && ctx.proxyRes?.complete === false);
      ctx.isWorkerHungUp = false;
      if (isHungUp) lease.worker.afterSignOfLife(() => lease.release());
      else lease.release();
    });
    // The body is on its way: the master need not hold it (its bytes count in the budget until the worker answers).
    proxyReq.once('finish', () => hooks.onBodySent(ctx));
    // A `102 Processing` from the worker is a sign of life while it waits for a slow upstream.
    proxyReq.on('information', () => ctx.workerTimer?.refresh());
    proxyReq.once('response', (proxyRes: IncomingMessage) => {
      ctx.clientHeaders = undefined; // answered: no other try (retry.ts retryUnreached)
      relayResponse(ctx, proxyRes, timeouts, hooks);
    });
    if (ctx.phase === 'done') proxyReq.destroy();
  });

  return {
    forward(ctx, worker, timeouts) {
      ctx.phase = 'worker';
      ctx.workerTimer = setTimeout(onHeadersTimeout, timeouts.headersMs, ctx, refuse);
      const call = { target: worker.endpoint, agent: worker.agent, buffer: new BodySource(ctx.body), ctx, timeouts };
      proxy.web(ctx.req, ctx.res, call, (err: Error) => {
        // The client left: http-proxy-3 destroyed the worker request; nobody to answer. Or the master answered it
        // already (refuse: a timeout) and destroyed the worker request itself: not the worker's failure.
        if (ctx.phase === 'done' || ctx.isClientGone || ctx.errorCode !== undefined) return;
        if (ctx.proxyRes === undefined) {
          const isRefused = isRefusal(err);
          // Its slot is freed once the worker shows it is alive (the close above, WorkerHandle.afterSignOfLife).
          if (!isRefused && isReset(err)) ctx.isWorkerHungUp = true;
          // A socket reset before any answer, when the worker may never have had the request: a kept-alive one (the
          // worker was gone before the request reached it, or died with it read), or a fresh one whose reset came on
          // a read or a write (the worker left bytes it was sent unread: the connection still in a dying worker's
          // accept queue, or the request in its socket's buffer; one that had read it all closes cleanly, "socket
          // hang up", and stays a 502). Only a request that may run twice is tried again (nginx's
          // proxy_next_upstream without non_idempotent): a chat call the dead worker had started would spend its
          // tokens again.
          const isUnread =
            isReset(err) &&
            (ctx.proxyReq?.reusedSocket === true || isResetOnTransfer(err)) &&
            IDEMPOTENT.has(ctx.req.method ?? '');
          if ((isRefused || isUnread) && retryUnreached(ctx, worker, isRefused)) return;
          log.warn(
            {
              reqId: ctx.reqId,
              version: ctx.version,
              workerPid: ctx.workerPid,
              err: { message: err.message, code: (err as NodeJS.ErrnoException).code },
            },
            'worker error before response',
          );
        }
        refuse(ctx, new GraygateError('worker_error', undefined, { cause: err }));
      });
    },
  };
}

/** RFC 9110 §9.2.2: methods a client may send twice. */
const IDEMPOTENT: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'TRACE', 'PUT', 'DELETE']);

/** No listener at the worker's socket (a unix socket's file gone, nothing accepting, reset while connecting). */
export function isRefusal(err: NodeJS.ErrnoException): boolean {
  return (
    err.code === 'ECONNREFUSED' || err.code === 'ENOENT' || (err.code === 'ECONNRESET' && err.syscall === 'connect')
  );
}

function isReset(err: NodeJS.ErrnoException): boolean {
  return err.code === 'ECONNRESET' || err.code === 'EPIPE';
}

/**
 * A reset the socket's read or write reported: the peer closed with bytes it was sent unread (a TCP RST, an AF_UNIX
 * peer released with its queue not empty or never accepted). A peer that closed having read everything is an end of
 * stream, which node's client reports as "socket hang up" with no syscall.
 */
function isResetOnTransfer(err: NodeJS.ErrnoException): boolean {
  return err.syscall === 'read' || err.syscall === 'write';
}

function onHeadersTimeout(ctx: RequestContext, refuse: (ctx: RequestContext, err: unknown) => void): void {
  ctx.workerTimer = undefined;
  if (ctx.phase !== 'worker') return;
  // An offered connection (limits.directStreams): timers run before I/O in a loop turn, and a worker head already in
  // the socket says the answer is the worker's, written to the client (shared/direct.ts, the write lease).
  if (ctx.isDirectOffered) return void setImmediate(timedOut, ctx, refuse);
  timedOut(ctx, refuse);
}

function timedOut(ctx: RequestContext, refuse: (ctx: RequestContext, err: unknown) => void): void {
  // Deferred, it may find the request sent again meanwhile (retry.ts, a refused connection read in the same turn):
  // that try has its own timer (a review).
  if (ctx.phase !== 'worker' || ctx.workerTimer !== undefined) return;
  refuse(ctx, workerHeadersTimeout());
}

/** The master's 504 for a worker that sent no response head (or IPC status) within workerHeadersTimeoutMs. */
export function workerHeadersTimeout(): GraygateError {
  return new GraygateError('worker_timeout', 'the worker sent no response within workerHeadersTimeoutMs');
}
