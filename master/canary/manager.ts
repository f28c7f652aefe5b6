import { performance } from 'node:perf_hooks';
import { GraygateError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { CanaryController, type CanaryStatus, type WeightsPort } from './controller.js';
import { parseCanaryPlan } from './plan.js';

// Every canary of the master (SPEC §11): starts them, runs one timer that
// ticks the running ones, routes each finished request's outcome to the
// canary that watches its version, and ends canaries when their versions are
// redeployed, removed or the config is reloaded. At most one running canary
// per version, as canary or as baseline. The last canary of each version stays
// readable after it ends.

/** How often running canaries are judged, ms: a plainly broken one is rolled back within a second. */
const CANARY_TICK_MS = 200;

export interface CanaryVersions extends WeightsPort {
  /** 404 unknown_version when the version does not exist. */
  require(name: string): unknown;
  readonly config: { readonly routing: { readonly default: string } };
}

export interface CanaryManagerOptions {
  versions: CanaryVersions;
  log: Logger;
  /** Default CANARY_TICK_MS. */
  tickMs?: number;
  /** Monotonic clock, ms; default performance.now. */
  now?: () => number;
}

export class CanaryManager {
  readonly #versions: CanaryVersions;
  readonly #log: Logger;
  readonly #now: () => number;
  readonly #tickMs: number;
  /** The last canary of each canary version, running or ended. */
  readonly #byCanary = new Map<string, CanaryController>();
  /** Running canaries by each of their two versions: the request path's lookup. */
  readonly #watching = new Map<string, CanaryController>();
  #timer: NodeJS.Timeout | undefined;

  constructor(options: CanaryManagerOptions) {
    this.#versions = options.versions;
    this.#log = options.log;
    this.#now = options.now ?? (() => performance.now());
    this.#tickMs = options.tickMs ?? CANARY_TICK_MS;
  }

  /** POST /admin/versions/:name/canary → 202 with its status. */
  start(name: string, raw: unknown): CanaryStatus {
    this.#versions.require(name);
    const plan = parseCanaryPlan(name, raw, this.#versions.config.routing.default);
    this.#versions.require(plan.baseline);
    for (const version of [plan.canary, plan.baseline]) {
      const running = this.#watching.get(version);
      if (running !== undefined) {
        throw new GraygateError(
          'canary_in_progress',
          `version "${version}" is in the running canary of ${running.plan.canary} (baseline ${running.plan.baseline})`,
        );
      }
    }
    const pair = (this.#versions.weightOf(plan.baseline) ?? 0) + (this.#versions.weightOf(plan.canary) ?? 0);
    if (!(pair > 0))
      throw new GraygateError(
        'invalid_request',
        `${plan.baseline} and ${plan.canary} have no weight between them to share`,
      );
    const controller = new CanaryController({
      plan,
      weights: this.#versions,
      log: this.#log,
      nowMs: this.#now(),
      wallMs: Date.now(),
    });
    controller.begin();
    this.#byCanary.set(name, controller);
    this.#watching.set(plan.canary, controller);
    this.#watching.set(plan.baseline, controller);
    this.#ensureTimer();
    return controller.status();
  }

  /** GET /admin/versions/:name/canary: the last canary of that version. */
  get(name: string): CanaryStatus {
    this.#versions.require(name);
    const controller = this.#byCanary.get(name);
    if (controller === undefined) throw new GraygateError('not_found', `version "${name}" has had no canary`);
    return controller.status();
  }

  /** GET /admin/canaries. */
  list(): CanaryStatus[] {
    return [...this.#byCanary.values()].map((c) => c.status());
  }

  /** The running canary `name` belongs to, as canary or baseline, if any. */
  runningFor(name: string): CanaryStatus | undefined {
    return this.#watching.get(name)?.status();
  }

  /** True when `name` is in a running canary (PUT /admin/weights on it is 409 canary_in_progress). */
  isWatched(name: string): boolean {
    return this.#watching.has(name);
  }

  /** DELETE /admin/versions/:name/canary: the canary's weight goes back to 0 at once. */
  abort(name: string): CanaryStatus {
    this.#versions.require(name);
    const controller = this.#byCanary.get(name);
    if (controller === undefined || !controller.isRunning)
      throw new GraygateError('not_found', `version "${name}" has no running canary`);
    controller.abort('aborted by DELETE /admin/versions/:name/canary', this.#now(), true);
    this.#settle();
    return controller.status();
  }

  /** A version was redeployed, rolled back or removed: the canary it is in ends, weights left to the caller. */
  abortFor(name: string, reason: string, restoreBaseline: boolean): void {
    this.#watching.get(name)?.abort(reason, this.#now(), restoreBaseline);
    this.#settle();
  }

  /** A reload or config change: every running canary ends and the file's weights apply. */
  abortAll(reason: string): void {
    for (const controller of new Set(this.#watching.values())) controller.abort(reason, this.#now(), false);
    this.#settle();
  }

  /** The request path (gateway finish): one Map lookup when no canary watches the version. */
  record(version: string, isError: boolean, firstTokenMs: number, responseMs: number): void {
    this.#watching.get(version)?.record(version, isError, firstTokenMs, responseMs);
  }

  /** Stops judging (the master is shutting down; the file's weights apply at the next start). */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  #ensureTimer(): void {
    if (this.#timer !== undefined) return;
    this.#timer = setInterval(() => this.#tick(), this.#tickMs);
    this.#timer.unref();
  }

  #tick(): void {
    const now = this.#now();
    for (const controller of new Set(this.#watching.values())) {
      try {
        controller.tick(now);
      } catch (err) {
        this.#log.error({ err, canary: controller.plan.canary }, 'canary judge failed; aborting the canary');
        controller.abort(`internal error: ${(err as Error).message}`, now, true);
      }
    }
    this.#settle();
  }

  /** Forgets ended canaries in the request path's map; stops the timer when none runs. */
  #settle(): void {
    for (const [version, controller] of this.#watching) if (!controller.isRunning) this.#watching.delete(version);
    if (this.#watching.size === 0) this.close();
  }
}
