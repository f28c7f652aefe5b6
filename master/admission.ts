import { GraygateError } from '../shared/errors.js';

// The backlog bound (SPEC §4, the keep-alive-agent incident): every request to
// a worker holds one of its `maxSocketsPerWorker` slots, so the http.Agent never
// queues anything in its own unbounded `requests` list. Requests that find no
// free slot wait here, in a bounded FIFO per version, each for at most
// `queueTimeoutMs`; a full queue answers 503 at once, and a waiter whose client
// left is dropped at once.

/** What admission needs to know of a worker. WorkerHandle implements it. */
export interface AdmissionTarget {
  /** Ready and not draining. */
  readonly isAccepting: boolean;
}

export interface Lease<W extends AdmissionTarget> {
  readonly worker: W;
  /** Frees the slot; idempotent. Must be called once the worker's socket is free again. */
  release(): void;
}

export interface AdmissionOptions<W extends AdmissionTarget> {
  /** Concurrent requests per worker; equals the agent's maxSockets. */
  maxSocketsPerWorker: number;
  /** Requests waiting for a slot, per version; 0 means no queue (503 when all slots are busy). */
  maxQueue: number;
  /** Longest wait for a slot, in ms. */
  queueTimeoutMs: number;
  /** The version's current workers; read on every decision, so deploys and restarts take effect at once. */
  workers: () => readonly W[];
  /** Seconds for `Retry-After` on 503 queue_full / queue_timeout. Default 1. */
  retryAfterS?: number;
}

interface IdleWaiter {
  resolve(): void;
  timer: NodeJS.Timeout;
}

interface Waiter<W extends AdmissionTarget> {
  resolve(lease: Lease<W>): void;
  reject(err: unknown): void;
  timer: NodeJS.Timeout;
  disposeAbort: () => void;
}

/**
 * How many more requests in flight a preferred worker may have than the least loaded and still be chosen: one, and a
 * quarter of the least loaded's count beyond it (with 100 in flight on one worker, the other may have up to 126).
 */
function preferredSlack(leastInflight: number): number {
  return 1 + (leastInflight >> 2);
}

export class VersionAdmission<W extends AdmissionTarget> {
  readonly #options: AdmissionOptions<W>;
  // A Set keeps insertion order, so it is a FIFO with O(1) removal of an abandoned waiter.
  readonly #waiters = new Set<Waiter<W>>();
  // Admission owns the in-flight counts (issue 11): a lease is the only way to change them.
  readonly #inflight = new Map<W, number>();
  readonly #idleWaiters = new Map<W, Set<IdleWaiter>>();
  /** close(): new requests get this; those waiting are still served. */
  #closedWith: GraygateError | undefined;
  /** Resolved when the last waiter leaves (whenQueueEmpty). */
  #onQueueEmpty: Array<() => void> = [];
  // Refusals are constant: one shared instance each, no stack trace captured per 503.
  readonly #queueFull: GraygateError;
  readonly #noReadyWorker = new GraygateError('no_ready_worker');

  constructor(options: AdmissionOptions<W>) {
    this.#options = options;
    this.#queueFull = new GraygateError('queue_full', undefined, { retryAfterS: options.retryAfterS ?? 1 });
  }

  get queued(): number {
    return this.#waiters.size;
  }

  /** Requests this master has in flight to `worker` (its leases not yet released). */
  inflight(worker: W): number {
    return this.#inflight.get(worker) ?? 0;
  }

  /** Resolves once nothing is in flight to `worker`, or after timeoutMs (a drain's deadline). */
  whenIdle(worker: W, timeoutMs: number): Promise<void> {
    if (this.inflight(worker) === 0) return Promise.resolve();
    return new Promise((resolve) => {
      let waiters = this.#idleWaiters.get(worker);
      if (waiters === undefined) this.#idleWaiters.set(worker, (waiters = new Set()));
      const owned = waiters;
      const waiter: IdleWaiter = {
        resolve,
        timer: setTimeout(() => {
          owned.delete(waiter);
          resolve();
        }, timeoutMs),
      };
      owned.add(waiter);
    });
  }

  /**
   * The synchronous fast path, taken by every request: a slot at once, a
   * refusal at once, or undefined when the request must wait (then `wait`).
   * Under a flood most requests end here, so it allocates nothing on refusal.
   */
  tryAcquire(prefer?: (worker: W) => boolean): Lease<W> | GraygateError | undefined {
    if (this.#closedWith !== undefined) return this.#closedWith;
    const workers = this.#options.workers();
    const free = this.#pickFree(workers, prefer);
    if (free !== undefined) return this.#lease(free);
    if (!workers.some((w) => w.isAccepting)) return this.#noReadyWorker;
    if (this.#waiters.size >= this.#options.maxQueue) return this.#queueFull;
    return undefined;
  }

  /**
   * Queues for a slot; call only after tryAcquire() returned undefined, or with `isFirst` for a request admitted
   * before that never reached its worker (it waits first in line, past the queue's bound and with no worker ready:
   * the version's next one takes it).
   */
  wait(signal: AbortSignal, isFirst = false): Promise<Lease<W>> {
    if (signal.aborted) return Promise.reject(signal.reason);
    const retryAfterS = this.#options.retryAfterS ?? 1;
    return new Promise<Lease<W>>((resolve, reject) => {
      const waiter: Waiter<W> = {
        resolve,
        reject,
        timer: setTimeout(() => {
          this.#remove(waiter);
          reject(new GraygateError('queue_timeout', undefined, { retryAfterS }));
        }, this.#options.queueTimeoutMs),
        disposeAbort: () => signal.removeEventListener('abort', onAbort),
      };
      const onAbort = (): void => {
        this.#remove(waiter);
        reject(signal.reason);
      };
      signal.addEventListener('abort', onAbort, { once: true });
      if (!isFirst) return this.#waiters.add(waiter);
      const behind = [...this.#waiters];
      this.#waiters.clear();
      for (const w of [waiter, ...behind]) this.#waiters.add(w);
    });
  }

  /** Hands free slots to waiters; call when a worker becomes ready. */
  pump(): void {
    while (this.#waiters.size > 0) {
      const free = this.#pickFree(this.#options.workers());
      if (free === undefined) return;
      const waiter = this.#waiters.values().next().value as Waiter<W>;
      this.#remove(waiter);
      waiter.resolve(this.#lease(free));
    }
  }

  /** Refuses new requests with `err` (the version is removed); those waiting are served as slots free. */
  close(err: GraygateError): void {
    this.#closedWith = err;
  }

  /** Answers every waiting request with `err` (the master's shutdown deadline: they will not be served). */
  refuseWaiting(err: unknown): void {
    for (const waiter of [...this.#waiters]) {
      this.#remove(waiter);
      waiter.reject(err);
    }
  }

  /** Resolves once no request waits (each waits at most queueTimeoutMs): a removed version serves its queue first. */
  whenQueueEmpty(): Promise<void> {
    if (this.#waiters.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#onQueueEmpty.push(resolve));
  }

  #remove(waiter: Waiter<W>): void {
    this.#waiters.delete(waiter);
    clearTimeout(waiter.timer);
    waiter.disposeAbort();
    if (this.#waiters.size > 0 || this.#onQueueEmpty.length === 0) return;
    const resolvers = this.#onQueueEmpty;
    this.#onQueueEmpty = [];
    for (const resolve of resolvers) resolve();
  }

  /**
   * Least in-flight among accepting workers with a free slot (issue 2 part 6). With `prefer` (limits.directStreams:
   * the workers that hold the request's client connection), a preferred worker with a free slot wins unless the least
   * loaded has fewer in flight by more than preferredSlack(): a connection keeps to the worker that holds it, as
   * node:cluster keeps a connection on one worker, and the load still spreads.
   */
  #pickFree(workers: readonly W[], prefer?: (worker: W) => boolean): W | undefined {
    let best: W | undefined;
    let bestInflight = Infinity;
    let preferred: W | undefined;
    let preferredInflight = Infinity;
    for (const w of workers) {
      const inflight = this.#inflight.get(w) ?? 0;
      if (!w.isAccepting || inflight >= this.#options.maxSocketsPerWorker) continue;
      if (inflight < bestInflight) {
        best = w;
        bestInflight = inflight;
      }
      if (prefer !== undefined && inflight < preferredInflight && prefer(w)) {
        preferred = w;
        preferredInflight = inflight;
      }
    }
    if (preferred !== undefined && preferredInflight <= bestInflight + preferredSlack(bestInflight)) return preferred;
    return best;
  }

  #lease(worker: W): Lease<W> {
    this.#inflight.set(worker, (this.#inflight.get(worker) ?? 0) + 1);
    let isReleased = false;
    return {
      worker,
      release: () => {
        if (isReleased) return;
        isReleased = true;
        const left = (this.#inflight.get(worker) ?? 1) - 1;
        if (left > 0) this.#inflight.set(worker, left);
        else {
          this.#inflight.delete(worker);
          this.#notifyIdle(worker);
        }
        this.pump();
      },
    };
  }

  #notifyIdle(worker: W): void {
    const waiters = this.#idleWaiters.get(worker);
    if (waiters === undefined) return;
    this.#idleWaiters.delete(worker);
    for (const w of waiters) {
      clearTimeout(w.timer);
      w.resolve();
    }
  }
}
