import { onAbort, type Disposer } from '../../shared/abort.js';
import { GraygateError } from '../../shared/errors.js';

// SPEC §2/§5, STYLE §12: upstream deadlines enforced by aborting the request,
// so undici closes the socket; no timer ever just stops waiting and leaves it
// open. One signal combines the causes, each with its own error.
//
// The client's signal reaches that one signal through a listener removed at
// dispose(), not AbortSignal.any (a signal of its own, WeakRefs to it and to
// each source): on Node 20 a call's Deadlines cost 14–18 µs of CPU this way
// and 25–34 µs with `any` (scripts/bench/per-call.ts; docs/BENCHMARKS.md,
// "Two signals a call fewer").

export type TimeoutPhase = 'connect' | 'first-byte' | 'idle' | 'total';

/** upstream_timeout (504) with the phase that ran out, as data (STYLE §7). */
export class UpstreamTimeoutError extends GraygateError {
  readonly phase: TimeoutPhase;
  readonly limitMs: number;

  constructor(phase: TimeoutPhase, limitMs: number, options: { cause?: unknown } = {}) {
    super('upstream_timeout', `the upstream did not answer in time (${phase} timeout, ${limitMs} ms)`, options);
    this.phase = phase;
    this.limitMs = limitMs;
  }
}

export interface DeadlinesOptions {
  /** The client's signal: aborted when the client disconnects. */
  signal: AbortSignal;
  /** Request dispatched → first response body byte, in ms. 0 disables. */
  firstByteMs: number;
  /** Longest silence between response body bytes, in ms. 0 disables. Paused while the client is the slow side. */
  idleMs: number;
  /** Request dispatched → body end, in ms. 0 disables. Paused by nothing. */
  totalMs: number;
}

export class Deadlines {
  /** Pass this to the upstream request: it aborts on client disconnect or any deadline. */
  readonly signal: AbortSignal;
  /** Aborted by a deadline with its typed reason, or by the client's signal with the client's reason. */
  readonly #combined = new AbortController();
  readonly #options: DeadlinesOptions;
  /** Removes the listener on the client's signal. */
  readonly #disposeClient: Disposer;
  #timer: NodeJS.Timeout | undefined;
  // Not AbortSignal.timeout(totalMs): its timer cannot be cleared, so every
  // finished request would leave one behind for up to totalMs (10 min by
  // default), thousands of them under load. A cleared setTimeout aborting the
  // same controller gives the same signal with nothing left over.
  #totalTimer: NodeJS.Timeout | undefined;
  #hasBytes = false;

  constructor(options: DeadlinesOptions) {
    this.#options = options;
    this.signal = this.#combined.signal;
    this.#disposeClient = onAbort(options.signal, (reason) => this.#combined.abort(reason));
    if (options.totalMs > 0) this.#totalTimer = setTimeout(this.#abortPhase, options.totalMs, 'total', options.totalMs);
    if (options.firstByteMs > 0)
      this.#timer = setTimeout(this.#abortPhase, options.firstByteMs, 'first-byte', options.firstByteMs);
  }

  /**
   * Body bytes arrived: the first switches from the first-byte to the idle
   * deadline, later ones restart it. Allocation-free after the first.
   */
  onBytes(): void {
    if (this.#hasBytes) {
      this.#timer?.refresh();
      return;
    }
    this.#hasBytes = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.#armIdle();
  }

  /** The client is not reading: upstream silence is our doing, so the idle deadline stops (the total one does not). */
  pause(): void {
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  resume(): void {
    if (this.#hasBytes && this.#timer === undefined) this.#armIdle();
  }

  /** Clears the timers and the client listener; always called when the request is over. */
  dispose(): void {
    clearTimeout(this.#timer);
    clearTimeout(this.#totalTimer);
    this.#timer = undefined;
    this.#disposeClient();
  }

  /** The error to report for a failure seen while this signal was in use: the abort's typed reason if one fired. */
  explain(err: unknown): unknown {
    if (!this.signal.aborted) return err;
    if (this.#options.signal.aborted) return this.#options.signal.reason;
    return this.signal.reason;
  }

  #armIdle(): void {
    if (this.#options.idleMs > 0)
      this.#timer = setTimeout(this.#abortPhase, this.#options.idleMs, 'idle', this.#options.idleMs);
  }

  readonly #abortPhase = (phase: TimeoutPhase, limitMs: number): void => {
    this.#combined.abort(new UpstreamTimeoutError(phase, limitMs));
  };
}
