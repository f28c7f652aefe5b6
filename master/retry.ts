import type { Logger } from '../shared/log.js';
import type { RequestContext } from './request-context.js';
import type { WorkerHandle } from './worker-handle.js';

// Step 4 of the request path again (gateway.ts, SPEC §4): a request its worker never got, because the worker died
// before it could, goes back to admission, for another worker or the version's next one within queueTimeoutMs,
// instead of a 502 (a version keeps serving on its other instances; nginx `proxy_next_upstream error`). Two ways a
// worker can be shown not to have got it: its socket refused the request or reset it unanswered (proxy.ts), or, for an
// IPC call of limits.directStreams, its process ended without reporting the call taken (direct-calls.ts).

export interface RetryOptions {
  log: Logger;
  /** Admission again, first in line (chosen again first when its version left routing). */
  admitAgain: (ctx: RequestContext) => void;
}

export interface Retries {
  /**
   * A request its worker's socket refused (`isRefused`), or reset before any answer: true when it goes again, false
   * when the caller answers it (502).
   */
  retryUnreached: (ctx: RequestContext, worker: WorkerHandle, isRefused: boolean) => boolean;
  /** An IPC call whose worker process ended before it reported the call taken: true when it goes again. */
  retryUnreadCall: (ctx: RequestContext) => boolean;
}

export function createRetries(options: RetryOptions): Retries {
  const { log, admitAgain } = options;

  // An offered connection (limits.directStreams) changes nothing: a worker writes to the client's connection only once
  // it has reported its answer's head to the master (worker/direct/direct-answer.ts open flushes the hop's head
  // first), so a request with no answer from the worker has had nothing written for it.
  function retryUnreached(ctx: RequestContext, worker: WorkerHandle, isRefused: boolean): boolean {
    // Its body went out (dropped at the request's 'finish'): the worker may have read it, and it cannot go again.
    if (ctx.body.length === 0 && ctx.budgetBytes > 0) return false;
    // A reset kept-alive socket says less (a worker may reset one for its own reasons): one more try, and the worker
    // stays in.
    if (!isRefused && ctx.isTriedAgain) return false;
    if (!mayTryAgain(ctx)) return false;
    ctx.isTriedAgain = true;
    log.warn(
      { reqId: ctx.reqId, version: ctx.version, workerPid: worker.pid, isRefused },
      'worker unreachable: request tried again',
    );
    clearTimeout(ctx.workerTimer);
    ctx.workerTimer = undefined;
    ctx.proxyReq = undefined;
    ctx.isDirectOffered = false;
    if (isRefused) {
      worker.markUnreachable();
      ctx.lease?.release();
      ctx.lease = undefined;
      admitAgain(ctx);
      return true;
    }
    // A reset: the worker may be dying, its exit not seen yet, and taking this request there again would lose it. It
    // goes again once the worker has shown it is alive, or is gone (its slot is released then too: proxy.ts).
    ctx.lease = undefined;
    worker.afterSignOfLife(() => {
      if (ctx.phase !== 'done') admitAgain(ctx);
    });
    return true;
  }

  // Nothing of the call ran, whatever its method, and the master still holds its body: it goes back to admission as a
  // request a dead worker's socket refused.
  function retryUnreadCall(ctx: RequestContext): boolean {
    if (!mayTryAgain(ctx)) return false;
    log.warn(
      { reqId: ctx.reqId, version: ctx.version, workerPid: ctx.workerPid },
      'worker gone before it read the request: request tried again',
    );
    ctx.isDirectCall = false;
    ctx.lease?.release();
    ctx.lease = undefined;
    admitAgain(ctx);
    return true;
  }

  return { retryUnreached, retryUnreadCall };
}

/**
 * Each try found its worker dead; after as many tries again as the version has instances (two at least: one
 * instance's replacement), a 502 (nginx `proxy_next_upstream_tries`, Envoy's `num_retries`): a request that kills or
 * finds dead every worker it is sent to, restarted as they are, is not sent on forever, its client and its body held
 * meanwhile.
 */
function mayTryAgain(ctx: RequestContext): boolean {
  if (ctx.triesAgain >= Math.max(2, ctx.group?.build.instances ?? 0)) return false;
  ctx.triesAgain++;
  return true;
}
