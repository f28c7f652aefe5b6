import type { Logger } from '../shared/log.js';
import type { VersionState } from './version-state.js';
import { CUT_GRACE_MS, type WorkerHandle } from './worker-handle.js';

// Workers and versions on their way out (SPEC §6): an old build's workers
// drain (the master's own requests finish, within limits.drainTimeoutMs) and
// stop; a removed version serves what waits for it, drains, and is forgotten:
// the master's per-name state (metrics, retired totals) goes only once no
// version of that name serves any more. version-registry.ts owns one.

export interface RetirementOptions {
  log: Logger;
  /** limits.drainTimeoutMs of the running config. */
  drainTimeoutMs(): number;
  /** A version of that name is routed now (added again while an older one drains). */
  isRouted(name: string): boolean;
  /**
   * Called once a removed version's workers are gone (metrics drop its series), unless a version of the same
   * name was added while they drained: the name's series are that version's then.
   */
  onRemoved?: ((name: string) => void) | undefined;
}

export class Retirement {
  readonly #options: RetirementOptions;
  /** Removed versions by name not yet forgotten (their workers still serve): the name's metrics stay till the last. */
  readonly #retiring = new Map<string, number>();

  constructor(options: RetirementOptions) {
    this.#options = options;
  }

  /** A version of that name left routing; retireRemoved forgets it. */
  unrouted(name: string): void {
    this.#retiring.set(name, (this.#retiring.get(name) ?? 0) + 1);
  }

  /**
   * A removed version's end (SPEC §6: stop routing, drain, stop): the requests already waiting for it are served by
   * its workers (each waits at most queueTimeoutMs), then they drain and stop, and the version is forgotten.
   */
  async retireRemoved(state: VersionState): Promise<void> {
    await state.admission.whenQueueEmpty();
    await this.retire(state, state.workers);
    // And the old builds of its swaps still draining (a removal need not wait for them to start): its name is kept
    // (metrics, retired totals) while any of its workers serves.
    await state.whenDrained();
    this.#forget(state);
  }

  /**
   * Drains workers that are no longer current: the master's own requests finish first, within limits.drainTimeoutMs
   * (SPEC §6: a swap cuts no request; the SIGTERM's shorter shutdownTimeoutMs stops what is left then), then the
   * process stops.
   */
  async retire(state: VersionState, workers: readonly WorkerHandle[]): Promise<void> {
    const deadlineMs = this.#options.drainTimeoutMs();
    await Promise.all(
      workers.map(async (w) => {
        state.draining.add(w);
        w.drain();
        const started = performance.now();
        await state.admission.whenIdle(w, deadlineMs);
        // Still answering at the deadline: the worker ends those answers as failed ones end (a stream with its final
        // event, which it alone can write to a connection it holds), within a second, before it stops; stopped now, its
        // streams were cut (the master's agent destroyed under them; a direct one mid-body, without a word).
        if (state.admission.inflight(w) > 0 && w.cutAnswers('drain')) await state.admission.whenIdle(w, CUT_GRACE_MS);
        await w.stop(Math.max(0, deadlineMs - (performance.now() - started)));
        state.drained(w);
      }),
    );
  }

  #forget(state: VersionState): void {
    const { log } = this.#options;
    const retiring = (this.#retiring.get(state.name) ?? 1) - 1;
    if (retiring > 0) this.#retiring.set(state.name, retiring);
    else this.#retiring.delete(state.name);
    // An earlier version of that name, removed before it was added again, still drains (limits.drainTimeoutMs): the
    // name's metrics and retired totals are kept until that one is gone too (a review: they were dropped under it).
    if (retiring > 0) {
      log.info({ version: state.name }, 'version removed; another of its name still drains, the name is kept');
      return;
    }
    // What the master keys by name (metrics, retired totals) is the re-added version's now; it is forgotten when
    // that one is removed.
    if (this.#options.isRouted(state.name)) {
      log.info({ version: state.name }, 'version removed; its name was added again meanwhile and is kept');
      return;
    }
    log.info({ version: state.name }, 'version removed');
    this.#options.onRemoved?.(state.name);
  }
}
