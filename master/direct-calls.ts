import type { IncomingHttpHeaders } from 'node:http';
import { GraygateError } from '../shared/errors.js';
import {
  DIRECT_CLIENT_GONE,
  DIRECT_LATE,
  encodeBody,
  leaseGuardMs,
  monotonicMs,
  type DirectCallMessage,
  type DirectCallReport,
  type DirectOffer,
} from '../shared/direct.js';
import type { RequestContext } from './request-context.js';
import type { WorkerHandle } from './worker-handle.js';
import type { DirectCallSink } from './worker-direct.js';
import { DirectReport } from './direct-report.js';
import type { RelayHooks } from './relay.js';
import { workerHeadersTimeout } from './proxy.js';

// limits.directStreams (issue 10, docs/ONE-HOP.md): once a worker process
// holds a client's connection, the connection's next requests go to it as IPC
// messages instead of HTTP requests: no http-proxy-3 call, ClientRequest or
// response parser in the master, no server request in the worker. The worker
// writes every answer to them, streamed or not, straight to the client, and
// reports on it (shared/direct.ts); direct-report.ts reads the reports.

export interface DirectCallTimeouts {
  /** Request passed → the status (or a heartbeat), ms (limits.workerHeadersTimeoutMs). */
  headersMs: number;
  /** Longest silence between two reports once the status went out, ms; 0: none (limits.workerIdleTimeoutMs). */
  idleMs: number;
}

/**
 * The worker process ended before it read the call: nothing of the request ran there, whatever its method, and the
 * master still holds its body. The caller sends it again (gateway.ts), as nginx passes a request no upstream got to
 * the next one (`proxy_next_upstream error`), and says so; false past its bound of tries, and the call is a 502.
 */
export type UnreadCall = (ctx: RequestContext) => boolean;

class DirectCall implements DirectCallSink {
  readonly #ctx: RequestContext;
  readonly #hooks: RelayHooks;
  readonly #idleMs: number;
  readonly #report: DirectReport;
  readonly #onUnread: UnreadCall;
  readonly #headersMs: number;
  /** Renews the call's write lease in the worker (shared/direct.ts). */
  readonly #renewLease: (writeBy: number) => void;
  /** When the worker's last report before the status was read (its timer restarted then), hooks.now() ms. */
  #lastSignAtMs = 0;
  /**
   * The worker read the call (its id in a `calls-taken`, or a report's `isTaken`, written before anything of the call
   * runs), or is a build that does not say (its calls count as read once sent): from then on it may have run there.
   */
  #isTaken: boolean;

  /** Starts the call's side of the master: the request is with the worker. */
  constructor(
    ctx: RequestContext,
    hooks: RelayHooks,
    timeouts: DirectCallTimeouts,
    acksCalls: boolean,
    onUnread: UnreadCall,
    renewLease: (writeBy: number) => void,
  ) {
    this.#ctx = ctx;
    this.#hooks = hooks;
    this.#idleMs = timeouts.idleMs;
    this.#onUnread = onUnread;
    this.#headersMs = timeouts.headersMs;
    this.#renewLease = renewLease;
    this.#isTaken = !acksCalls;
    ctx.phase = 'worker';
    ctx.isDirectCall = true;
    this.#report = new DirectReport(ctx, () => hooks.now());
    // Before the status, as a relayed request's headers timeout: the master's 504, counted as a rejection; the
    // connection closes after it.
    this.#report.watch(timeouts.headersMs, () => {
      const firedAtMs = hooks.now();
      // Timers run before I/O in a loop turn: a status report already in the channel is read first, or the master's
      // 504 would follow the worker's bytes.
      setImmediate(() => {
        if (ctx.phase !== 'worker' || this.#report.isOver) return;
        // A sign of life read since restarted the timer (a refresh re-arms a timer that fired) and renewed the
        // worker's lease: it fires again.
        if (this.#lastSignAtMs > firedAtMs) return;
        this.#timedOut();
      });
    });
    // The body is in the message: once the worker has read it, the master need not hold it (its bytes count in the
    // budget until the status). Until then the request may go to another worker.
    if (this.#isTaken) hooks.onBodySent(ctx);
  }

  report(msg: DirectCallReport): void {
    const ctx = this.#ctx;
    if (ctx.phase === 'done' || this.#report.isOver) return;
    if (msg.isTaken === true) this.taken();
    if (msg.status === undefined && ctx.phase === 'worker' && msg.marks !== '' && msg.isEnd !== true) {
      // A sign of life before the status (a heartbeat): the timer restarts (DirectReport.marks), and with it the
      // worker's lease, to the guard before the timer's new end (shared/direct.ts).
      this.#lastSignAtMs = this.#hooks.now();
      this.#renewLease(monotonicMs() + this.#headersMs - leaseGuardMs(this.#headersMs));
    }
    if (msg.status !== undefined && ctx.phase === 'worker') {
      // The status went out to the client: from now on it is the worker's answer in progress, as a relayed one is.
      ctx.isDirect = true;
      ctx.phase = 'relay';
      ctx.res.statusCode = msg.status;
      ctx.isEventStream = msg.isStream === true;
      ctx.headersAtMs = this.#hooks.now();
      this.#hooks.onHeaders(ctx);
      this.#report.watch(this.#idleMs, () => this.#report.cut('worker_timeout'));
    }
    if (msg.marks !== '') this.#report.marks(msg.marks);
    if (msg.isEnd !== true) return;
    // Closing, the connection is not ended here: a request read behind this one gets its 503 shutting_down (with
    // `Connection: close`) as on a relayed connection, and an idle one is closed by the shutdown.
    if (ctx.phase === 'relay') this.#report.end(ctx.res.statusCode, msg.isLast === true);
    // Given up before its status: nothing was written; a connection gone under the worker is the client's doing.
    else if (ctx.phase === 'worker') {
      if (msg.marks.includes(DIRECT_CLIENT_GONE)) this.#report.cut('worker_error');
      // Past its write lease, it wrote nothing and will not: the master's answer, as its timer's would be.
      else if (msg.marks.includes(DIRECT_LATE)) this.#timedOut();
      else this.#unanswered('the worker gave up on the request before its response');
    }
  }

  taken(): void {
    if (this.#isTaken || this.#ctx.phase === 'done' || this.#report.isOver) return;
    this.#isTaken = true;
    this.#hooks.onBodySent(this.#ctx);
  }

  lost(): void {
    const ctx = this.#ctx;
    if (ctx.phase !== 'worker') return this.#report.lost();
    // Its process is gone, and with it every report it wrote: the master read them all before the exit (node ends a
    // child's channel, then emits its close). Never taken, the call never ran: it goes again.
    if (!this.#isTaken && !this.#report.isOver) {
      // Stopped first: stopping clears the request's worker timer, which the next try sets anew.
      this.#report.stop();
      if (this.#onUnread(ctx)) return;
      return this.#refuse('the worker exited before its response'); // past its bound of tries
    }
    this.#unanswered('the worker exited before its response');
  }

  /** No status within workerHeadersTimeoutMs of the last sign of life: the master's 504, counted as a rejection. */
  #timedOut(): void {
    this.#report.stop();
    this.#hooks.refuse(this.#ctx, workerHeadersTimeout());
  }

  /** The worker is gone, or gave up, before its status: it wrote nothing, and the master answers 502 (SPEC §4). */
  #unanswered(message: string): void {
    if (this.#report.isOver) return;
    this.#report.stop();
    this.#refuse(message);
  }

  #refuse(message: string): void {
    this.#hooks.refuse(this.#ctx, new GraygateError('worker_error', message));
  }
}

/**
 * Passes the request of `ctx` (routed, admitted, its body read) to `worker` as an IPC call on connection
 * `offer.conn`, which that process holds. False when the worker takes no calls now: the caller forwards it over HTTP.
 * `onUnread`: the worker process ended before it read the call.
 */
export function callDirect(
  ctx: RequestContext,
  worker: WorkerHandle,
  headers: IncomingHttpHeaders,
  offer: DirectOffer,
  timeouts: DirectCallTimeouts,
  hooks: RelayHooks,
  onUnread: UnreadCall,
): boolean {
  const { body, binary } = encodeBody(ctx.body);
  // Its id is given by the worker's handle (worker-direct.ts): unique among the calls of that process.
  const msg: DirectCallMessage = {
    type: 'call',
    id: 0,
    offer,
    method: ctx.req.method ?? 'GET',
    url: ctx.forwardPath,
    headers,
    body,
    binary,
  };
  return worker.sendCall(
    msg,
    () =>
      new DirectCall(ctx, hooks, timeouts, worker.acksCalls, onUnread, (writeBy) =>
        worker.renewLease(offer.conn, writeBy),
      ),
  );
}
