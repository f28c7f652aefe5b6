// Abort listeners and timeouts that always clean up after themselves (STYLE
// §11–§13, undici `addAbortListener`): each helper returns a disposer, and a
// caller that is done calls it, so no listener or timer outlives the work it
// guarded — thousands of finished requests must leave nothing behind.

/** Removes what a helper registered. Idempotent. */
export type Disposer = () => void;

const NOOP: Disposer = () => undefined;

/**
 * Calls `onAbort(signal.reason)` once when `signal` aborts — at once (synchronously)
 * if it already has. Returns a disposer that removes the listener.
 */
export function onAbort(signal: AbortSignal, onAbort: (reason: unknown) => void): Disposer {
  if (signal.aborted) {
    onAbort(signal.reason);
    return NOOP;
  }
  const listener = (): void => onAbort(signal.reason);
  signal.addEventListener('abort', listener, { once: true });
  return () => signal.removeEventListener('abort', listener);
}

/**
 * A timer that fires `onTimeout` after `ms` of inactivity; `touch()` restarts the
 * count without allocating (Timeout#refresh), `clear()` disposes it. `ms` 0
 * disables it (every method is then a no-op). The process does not stay alive for it.
 */
export class IdleTimer {
  #timer: NodeJS.Timeout | undefined;

  constructor(ms: number, onTimeout: () => void) {
    if (ms > 0) {
      this.#timer = setTimeout(onTimeout, ms);
      this.#timer.unref();
    }
  }

  /** Activity: the full period starts again. */
  touch(): void {
    this.#timer?.refresh();
  }

  clear(): void {
    if (this.#timer === undefined) return;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  get isActive(): boolean {
    return this.#timer !== undefined;
  }
}
