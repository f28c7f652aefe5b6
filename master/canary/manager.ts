import { performance } from 'node:perf_hooks';
import { GraygateError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { CanaryController, type CanaryState, type CanaryStatus, type WeightsPort } from './controller.js';
import { parseCanaryPlan } from './plan.js';

/** A canary's two versions, as an abort reports them (the admin answers' `abortedCanary`, a reload's `applied`). */
export interface CanaryPair {
  canary: string;
  baseline: string;
}

function pairOf(controller: CanaryController): CanaryPair {
  return { canary: controller.plan.canary, baseline: controller.plan.baseline };
}

// Every canary of the master (SPEC §11): starts them, runs one timer that
// ticks the active ones (running or held: both have traffic), routes each
// finished request's outcome to the canary that watches its version, and ends
// canaries when their versions are redeployed, removed or the config is
// reloaded. At most one active canary per version, as canary or as baseline.
// The last canary of each version stays readable after it ends, until the
// version is removed.

/** The states a canary ends in (graygate_canary_ended_total). */
const ENDED_STATES: readonly CanaryState[] = ['promoted', 'rolled_back', 'aborted'];

/** How often running canaries are judged, ms: a plainly broken one is rolled back within a second. */
const CANARY_TICK_MS = 200;

export interface CanaryVersions extends WeightsPort {
  /** 404 unknown_version when the version does not exist. */
  require(name: string): { readonly isDeploying: boolean; readonly draining: ReadonlySet<unknown> };
  readonly config: { readonly routing: { readonly default: string } };
  /**
   * 409 deploy_in_progress while a reload starts builds: its commit ends every canary (acknowledged, then ended);
   * 503 shutting_down once the master stops.
   */
  refuseChangesNow(): void;
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
  /** The last canary each version was in, as canary or baseline, running or ended (/admin/status). */
  readonly #lastOf = new Map<string, CanaryController>();
  /** Running canaries by each of their two versions: the request path's lookup. */
  readonly #watching = new Map<string, CanaryController>();
  /** Canaries ended, by canary version and end state, since the master started (graygate_canary_ended_total). */
  readonly #ended = new Map<string, Map<CanaryState, number>>();
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
    this.#versions.refuseChangesNow();
    const plan = parseCanaryPlan(name, raw, this.#versions.config.routing.default);
    for (const version of [plan.canary, plan.baseline]) {
      // A canary must judge one build of each version: one that starts mid-deploy would judge the old
      // build, then the new one, as one; while an old build drains, its last requests still end.
      const target = this.#versions.require(version);
      if (target.isDeploying || target.draining.size > 0)
        throw new GraygateError(
          'deploy_in_progress',
          `a deploy of ${version} is running (or its old build is draining); start the canary once it finishes`,
        );
      const running = this.#watching.get(version);
      if (running !== undefined) {
        throw new GraygateError(
          'canary_in_progress',
          `version "${version}" is in the ${running.state} canary of ${running.plan.canary} (baseline ${running.plan.baseline})`,
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
    // A canary that would start at its last step (100 %) has no baseline traffic, now or before, to judge it
    // against: it could never be rolled back, and would end held with all the traffic.
    if (controller.firstStep === plan.steps.length - 1) {
      const share = controller.currentShare;
      throw new GraygateError(
        'invalid_request',
        plan.steps.length === 1
          ? 'steps: a canary needs a step below 100, where it is judged against the baseline'
          : (this.#versions.weightOf(plan.baseline) ?? 0) > 0
            ? `${plan.canary} already has ${share} % of the pair's weight, above every step below 100; ` +
              'lower its weight, or give steps above its share'
            : `${plan.baseline} has weight 0: ${plan.canary} already has the pair's whole weight, with no baseline traffic to judge it against`,
      );
    }
    controller.begin();
    // Its end states' series exist from its start, at 0: Prometheus' increase() sees nothing in a counter born at 1,
    // so an alert on the first rollback of a version never fired (a probe, with promtool).
    const ended = this.#ended.get(name) ?? new Map<CanaryState, number>();
    for (const state of ENDED_STATES) if (!ended.has(state)) ended.set(state, 0);
    this.#ended.set(name, ended);
    this.#byCanary.set(name, controller);
    this.#lastOf.set(plan.canary, controller);
    this.#lastOf.set(plan.baseline, controller);
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

  /**
   * The active (running or held) canary `name` belongs to, as canary or baseline, if any: PUT /admin/weights on it is
   * 409 canary_in_progress.
   */
  activeFor(name: string): CanaryStatus | undefined {
    return this.#watching.get(name)?.status();
  }

  /**
   * The canary `name` is in, as canary or baseline, for /admin/status (SPEC §11: "the same state is in GET
   * /admin/status"): the active one, else the last one it was in, in the state it ended (Argo Rollouts' status shows
   * the last rollout's end too). Undefined when it has been in none since it was added.
   */
  lastFor(name: string): CanaryStatus | undefined {
    return this.#lastOf.get(name)?.status();
  }

  /** DELETE /admin/versions/:name/canary, running or held: the canary's weight goes back to 0 at once. */
  abort(name: string): CanaryStatus {
    return this.#byHand(name, (c) => c.abort(`aborted by DELETE /admin/versions/${name}/canary`, this.#now()));
  }

  /**
   * POST /admin/versions/:name/canary/promote, running or held: the canary gets the pair's whole weight at once
   * (Argo Rollouts' `promote --full`). As for a promotion by the judge, a reload or restart applies the file's weights.
   */
  promote(name: string): CanaryStatus {
    return this.#byHand(name, (c) => c.promote(`POST /admin/versions/${name}/canary/promote`, this.#now()));
  }

  /**
   * POST /admin/versions/:name/canary/pause: a running canary held where it is until resumed (weights kept, still
   * judged); one held already stays so.
   */
  pause(name: string): CanaryStatus {
    return this.#byHand(name, (c) => void c.pause(`POST /admin/versions/${name}/canary/pause`));
  }

  /**
   * POST /admin/versions/:name/canary/resume: a held canary (paused, or held for want of a verdict) steps on again from
   * its step; a running one goes on as it was.
   */
  resume(name: string): CanaryStatus {
    return this.#byHand(name, (c) => void c.resume(`POST /admin/versions/${name}/canary/resume`, this.#now()));
  }

  /** An operator's abort, promote, pause or resume: the running or held canary of `name` (404 without one), `end`ed. */
  #byHand(name: string, end: (controller: CanaryController) => void): CanaryStatus {
    this.#versions.require(name);
    // A promotion during a reload was answered 200, then undone by the reload's commit, as a weight change would be.
    this.#versions.refuseChangesNow();
    const controller = this.#byCanary.get(name);
    if (controller === undefined || !controller.isActive) {
      // The baseline's name (a review: "no running or held canary" when one was running, against it).
      const canary = this.#watching.get(name)?.plan.canary;
      throw new GraygateError(
        'not_found',
        `version "${name}" has no running or held canary${endedHint(controller, canary)}`,
      );
    }
    end(controller);
    this.#settle();
    return controller.status();
  }

  /** The pair's weights once the canary `name` is in is aborted (empty when it is in none). */
  weightsAfterAbort(name: string): Record<string, number> {
    return this.#watching.get(name)?.abortWeights ?? {};
  }

  /** A version is being redeployed, rolled back or removed: the canary it is in is aborted, and returned to say so. */
  abortFor(name: string, reason: string): CanaryPair | undefined {
    const controller = this.#watching.get(name);
    controller?.abort(reason, this.#now());
    this.#settle();
    return controller === undefined ? undefined : pairOf(controller);
  }

  /**
   * A reload commits: every active canary is aborted, then the file's weights apply over them. Returns the canaries
   * it ended, for the caller to say so.
   */
  abortAll(reason: string): CanaryPair[] {
    const ended = [...new Set(this.#watching.values())];
    for (const controller of ended) controller.abort(reason, this.#now());
    this.#settle();
    return ended.map(pairOf);
  }

  /** A version is gone: its last canary goes from GET /admin/canaries and /metrics, its ended totals too. */
  forget(name: string): void {
    if (this.#byCanary.get(name)?.isActive === false) this.#byCanary.delete(name);
    // A version added later under that name has been in no canary (its old self was in this one).
    if (this.#lastOf.get(name)?.isActive === false) this.#lastOf.delete(name);
    // Its ended canary leaves its baseline's status as it left GET /admin/canaries (a README walk-through: graygate
    // status went on showing it, pointing at `canary status NAME`, which answered 404).
    for (const [version, controller] of this.#lastOf)
      if (!controller.isActive && controller.plan.canary === name) this.#lastOf.delete(version);
    // Its series leave with it, as every series of a removed version does (a version added later under that name
    // starts at 0, as its request counters do).
    this.#ended.delete(name);
  }

  /** The request path (gateway finish): one Map lookup when no canary watches the version. */
  record(version: string, isError: boolean, firstTokenMs: number, responseMs: number, timePerTokenMs: number): void {
    this.#watching.get(version)?.record(version, isError, firstTokenMs, responseMs, timePerTokenMs);
  }

  recordWait(version: string, isStream: boolean, waitedMs: number): void {
    this.#watching.get(version)?.recordWait(version, isStream, waitedMs);
  }

  /** Stops judging (the master is shutting down; the file's weights apply at the next start). */
  close(): void {
    clearInterval(this.#timer);
    this.#timer = undefined;
    // The master is stopping (SPEC §11: the canary lives in its memory): each running one's last line says so, or a
    // log read afterwards shows a canary step and no end (a probe).
    for (const controller of new Set(this.#watching.values())) {
      if (!controller.isActive) continue;
      const { canary, baseline } = controller.plan;
      const { state, step, canaryPercent } = controller.status();
      this.#log.info(
        { canary, baseline, state, step, canaryPercent },
        'canary left where it was: the master is stopping, and a restarted one starts from the file’s weights',
      );
    }
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
        controller.abort(`internal error: ${(err as Error).message}`, now);
      }
    }
    this.#settle();
  }

  /** Canaries ended since the master started, by version and end state (promoted, rolled_back, aborted). */
  *endedTotals(): Iterable<{ version: string; state: CanaryState; count: number }> {
    for (const [version, states] of this.#ended) for (const [state, count] of states) yield { version, state, count };
  }

  /** Forgets ended canaries in the request path's map (counting each end once); stops the timer when none runs. */
  #settle(): void {
    for (const [version, controller] of this.#watching) {
      if (controller.isActive) continue;
      this.#watching.delete(version);
      if (version !== controller.plan.canary) continue;
      const states = this.#ended.get(version) ?? new Map<CanaryState, number>();
      states.set(controller.state, (states.get(controller.state) ?? 0) + 1);
      this.#ended.set(version, states);
    }
    if (this.#watching.size === 0) this.close();
  }
}

/**
 * Why there is nothing to end, past "no running or held canary": the canary of `name` named when `name` is its
 * baseline; else how its last canary ended, when it had one (an operator's abort just after the judge promoted said
 * only "no running or held canary", as if it had never run).
 */
function endedHint(last: CanaryController | undefined, canaryOfBaseline: string | undefined): string {
  if (canaryOfBaseline !== undefined)
    return `: it is the baseline of the canary of "${canaryOfBaseline}", named so here`;
  if (last === undefined) return '';
  const { state, endedAt, reason } = last.status();
  return `: its last one ended ${state} at ${endedAt ?? 'an unknown time'} (${reason})`;
}
