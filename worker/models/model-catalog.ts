import { performance } from 'node:perf_hooks';
import { GraygateError } from '../../shared/errors.js';
import { UpstreamTimeoutError } from '../upstream/timeouts.js';
import { configuredModel, type ModelEntry } from './model-list.js';

// The version's models (SPEC §12): `upstream.model` when configured (it wins,
// and the upstream is never asked), else the upstream's own list, cached:
//  - a fresh list (younger than ttlMs) is served as is;
//  - a stale one is served at once while one background fetch renews it, so
//    an upstream that went down keeps its last good list being served;
//  - with nothing cached, callers wait for one shared fetch; if it fails they
//    get its error (a 502/504 in the catalogue's upstream codes), and for
//    failureTtlMs after, the same error without a new attempt.
// `peek()` never waits: the master's deploy probe is answered from it
// (models/models-handler.ts), so a deploy never depends on the upstream.

export interface ModelCatalogOptions {
  /** upstream.model: when set, the one model listed, and no upstream call is ever made. */
  configuredModel: string | undefined;
  /** `owned_by` of the configured model. */
  ownedBy: string;
  /** One fetch of the upstream's list (models/fetch-models.ts); must end when `signal` aborts. */
  fetch: (signal: AbortSignal) => Promise<ModelEntry[]>;
  /** How long a fetched list is served without asking again, ms. Default 60 000. */
  ttlMs?: number;
  /**
   * After a failed fetch with nothing cached, how long callers
   * get that failure without a new attempt, ms. Default 2000.
   */
  failureTtlMs?: number;
  /** Longest one fetch may take, ms; then upstream_timeout. Default 10 000. */
  fetchTimeoutMs?: number;
  /** A fetch failed (once per fetch, however many callers waited). */
  onFetchError?: (err: unknown) => void;
  /** Monotonic clock, ms. Default performance.now. */
  now?: () => number;
}

const DEFAULT_MODELS_TTL_MS = 60_000;
const DEFAULT_MODELS_FAILURE_TTL_MS = 2000;
const DEFAULT_MODELS_FETCH_TIMEOUT_MS = 10_000;

export class ModelCatalog {
  readonly #options: ModelCatalogOptions;
  readonly #now: () => number;
  readonly #closed = new AbortController();
  readonly #configured: ModelEntry[] | undefined;
  #cached: { models: ModelEntry[]; atMs: number } | undefined;
  #failure: { err: unknown; atMs: number } | undefined;
  #inFlight: Promise<ModelEntry[]> | undefined;

  constructor(options: ModelCatalogOptions) {
    this.#options = options;
    const { configuredModel: id } = options;
    // One list, made once: its JSON is made once too (models-handler.ts keys it by the list).
    this.#configured = id === undefined ? undefined : [configuredModel(id, options.ownedBy)];
    this.#now = options.now ?? (() => performance.now());
  }

  /**
   * What is known now, without waiting: the configured model, else
   * the last fetched list (any age); undefined when neither.
   */
  peek(): ModelEntry[] | undefined {
    return this.#configured ?? this.#cached?.models;
  }

  /** Starts a background fetch when the list is missing or stale (and none runs). */
  warm(): void {
    if (this.#options.configuredModel !== undefined || this.#isFresh()) return;
    this.#refresh().catch(() => undefined); // reported through onFetchError
  }

  /**
   * The list a client sees; rejects with the upstream's error when nothing
   * is known, or with `signal`'s reason when the caller leaves.
   */
  list(options: { signal: AbortSignal }): Promise<ModelEntry[]> {
    const known = this.peek();
    if (known !== undefined) {
      this.warm();
      return Promise.resolve(known);
    }
    const failure = this.#failure;
    if (
      failure !== undefined &&
      this.#now() - failure.atMs < (this.#options.failureTtlMs ?? DEFAULT_MODELS_FAILURE_TTL_MS)
    )
      return Promise.reject(failure.err);
    return raceAbort(this.#refresh(), options.signal);
  }

  /** Aborts a fetch in flight; callers waiting for it get shutting_down. Idempotent. */
  close(): void {
    this.#closed.abort(new GraygateError('shutting_down'));
  }

  #isFresh(): boolean {
    return (
      this.#cached !== undefined && this.#now() - this.#cached.atMs < (this.#options.ttlMs ?? DEFAULT_MODELS_TTL_MS)
    );
  }

  /** The one fetch in flight, started if none is. */
  #refresh(): Promise<ModelEntry[]> {
    if (this.#closed.signal.aborted) return Promise.reject(this.#closed.signal.reason);
    if (this.#inFlight !== undefined) return this.#inFlight;
    const fetching = this.#fetchOnce();
    this.#inFlight = fetching;
    const clear = (): void => {
      if (this.#inFlight === fetching) this.#inFlight = undefined;
    };
    fetching.then(clear, clear);
    return fetching;
  }

  async #fetchOnce(): Promise<ModelEntry[]> {
    const timeoutMs = this.#options.fetchTimeoutMs ?? DEFAULT_MODELS_FETCH_TIMEOUT_MS;
    const deadline = new AbortController();
    const timer = setTimeout(() => deadline.abort(new UpstreamTimeoutError('total', timeoutMs)), timeoutMs);
    try {
      const models = await this.#options.fetch(AbortSignal.any([deadline.signal, this.#closed.signal]));
      this.#cached = { models, atMs: this.#now() };
      this.#failure = undefined;
      return models;
    } catch (err) {
      this.#failure = { err, atMs: this.#now() };
      this.#options.onFetchError?.(err);
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }
}

/** `promise`, or `signal`'s reason if it aborts first; the listener is always removed. */
function raceAbort<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = (): void => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
  });
}
