import type { Logger } from '../../shared/log.js';
import { CanaryOutcomes } from './outcomes.js';
import { createCanaryEvidence, judge, nextStepWaitsFor, type CanaryEvidence, type Decision } from './statistics.js';
import type { CanaryPlan } from './plan.js';
import type { ResolvedErrorRateCriterion, ResolvedLatencyCriterion } from './judge-options.js';

// One canary (SPEC §11): a state machine over the pair's weights, driven by
// tick(). Each tick judges the current step on the outcomes recorded since it
// began (statistics.ts); a rollback verdict ends it at once, an advance verdict
// moves to the next step once stepMs has passed, and a step with no verdict
// by maxStepMs follows onInconclusive. Weights only go up the steps, or
// straight to 0: no flapping (the first step never lowers the share the
// canary already had). Only the two versions' weights change, and their
// sum is kept. A held canary keeps its traffic, so it stays watched: it is
// still judged and rolled back if it starts failing, and it can be aborted,
// but it does not advance by itself. An operator holds a running canary by
// hand (pause), or its plan pauses it as it reaches a step in `pauseAt` (a
// manual gate), and lets a held one step on again (resume), as Argo Rollouts'
// `pause`, its `pause: {}` step and `promote` of a paused rollout do. The
// clock is passed in (STYLE §15), so tests drive it.

export type CanaryState = 'running' | 'promoted' | 'rolled_back' | 'aborted' | 'held';
export const CANARY_STATES: readonly CanaryState[] = ['running', 'promoted', 'rolled_back', 'aborted', 'held'];

/** How the controller changes weights: the version registry's, and a version's current weight. */
export interface WeightsPort {
  weightOf(name: string): number | undefined;
  /**
   * The pair's weights, at every step and at the end: the pair is routed in two levels (weighted-choice.ts), so only
   * its own users move between the two. Ended, it stays so until a weight of either is changed another way; rolled
   * back, that routes as the baseline alone did.
   */
  setPairWeights(canary: string, baseline: string, weights: Readonly<Record<string, number>>): void;
}

export interface CanaryStatus {
  version: string;
  baseline: string;
  state: CanaryState;
  /** Index of the current (or last) step in `steps`. */
  step: number;
  /** The canary's share of the pair as the canary set it: now while it runs (or is held), as it left it once ended. */
  canaryPercent: number;
  steps: readonly number[];
  pauseAt: readonly number[];
  stepMs: number;
  maxStepMs: number;
  minRequests: number;
  /** The rest of what it was started with (defaults filled in), in the POST body's shape: what the judge applies. */
  onInconclusive: 'hold' | 'rollback';
  alpha: number;
  requireNonInferiority: boolean;
  criteria: {
    errorRate: ResolvedErrorRateCriterion | false;
    firstTokenP99: ResolvedLatencyCriterion | false;
    responseTimeP99: ResolvedLatencyCriterion | false;
    timePerTokenP99: ResolvedLatencyCriterion | false;
    /** The canary's error rate may be at most this, whatever the baseline's; false: off (the default). */
    maxErrorRate: number | false;
  };
  startedAt: string;
  stepStartedAt: string;
  endedAt: string | null;
  /** Why it is where it is: the judge's last reason, or what ended it. */
  reason: string;
  /**
   * Held by hand (pause) or at a step of `pauseAt`, until resumed, promoted or ended: held so, it waits for the
   * operator, not the judge.
   */
  paused: boolean;
  /** The current step's requests so far, per version. */
  observed: { baseline: { requests: number; errors: number }; canary: { requests: number; errors: number } };
  /** Per step and metric: the last judgement of every step reached (SPEC §11). */
  decisions: Decision[];
}

export interface CanaryControllerOptions {
  plan: CanaryPlan;
  weights: WeightsPort;
  log: Logger;
  /** Monotonic ms at start (performance.now()). */
  nowMs: number;
  /** Wall clock at start, for startedAt. */
  wallMs: number;
}

/**
 * A step's weight, cleaned of float noise (90 % of 0.7 is 0.6299999999999999) to 12 significant digits: relative,
 * so that no weight > 0 becomes 0 (rounding to 1e-6 made a pair weighted 4e-7 route nobody, its users moved to the
 * other versions; a probe).
 */
const round = (w: number): number => Number(w.toPrecision(12));

export class CanaryController {
  readonly plan: CanaryPlan;
  readonly outcomes = new CanaryOutcomes();
  #state: CanaryState = 'running';
  #step = 0;
  #reason = 'starting';
  #evidence: CanaryEvidence = createCanaryEvidence();
  /** Decisions of completed steps, then the current step's latest. */
  #settled: Decision[] = [];
  #current: Decision[] = [];
  readonly #pairWeight: number;
  readonly #weights: WeightsPort;
  readonly #log: Logger;
  readonly #startMs: number;
  readonly #wallAtStartMs: number;
  #stepStartMs: number;
  /** What the step's maxStepMs counts from: its start, or a resume after it was held. */
  #verdictDueFromMs: number;
  #endedAtMs: number | null = null;
  /** Why it was held (maxStepMs ran out, or a pause by hand), kept at the head of its reason while it is judged. */
  #heldReason = '';
  #isPaused = false;

  constructor(options: CanaryControllerOptions) {
    const { plan } = options;
    this.plan = plan;
    this.#weights = options.weights;
    this.#log = options.log.child({ canary: plan.canary, baseline: plan.baseline });
    this.#startMs = options.nowMs;
    this.#stepStartMs = options.nowMs;
    this.#verdictDueFromMs = options.nowMs;
    this.#wallAtStartMs = options.wallMs;
    this.#pairWeight = (options.weights.weightOf(plan.baseline) ?? 0) + (options.weights.weightOf(plan.canary) ?? 0);
  }

  get state(): CanaryState {
    return this.#state;
  }
  /** Running or held: it has traffic, is judged, and an abort gives the baseline the pair's sum. */
  get isActive(): boolean {
    return this.#state === 'running' || this.#state === 'held';
  }
  get canaryPercent(): number {
    if (this.#state === 'promoted') return 100; // by the judge at the last step, or by hand from any step
    return this.#state === 'running' || this.#state === 'held' ? this.plan.steps[this.#step]! : 0;
  }
  /** The pair's combined weight, kept through the whole canary. */
  get pairWeight(): number {
    return this.#pairWeight;
  }

  /** The canary's share of the pair now, percent. */
  get currentShare(): number {
    return round(((this.#weights.weightOf(this.plan.canary) ?? 0) / this.#pairWeight) * 100);
  }

  /** The step begin() starts at: steps below the canary's current share are skipped, so it never goes down. */
  get firstStep(): number {
    const share = this.currentShare;
    const { steps } = this.plan;
    let step = 0;
    while (step < steps.length - 1 && steps[step]! < share) step++;
    return step;
  }

  /** Sets the first step's weights (firstStep). */
  begin(): void {
    const share = this.currentShare;
    const { steps, pauseAt } = this.plan;
    this.#step = this.firstStep;
    if (this.#step > 0)
      this.#reason = `started at step ${this.#step + 1} (${steps[this.#step]} %): the canary already had ${share} % of the pair`;
    this.#applyStep();
    // A gate at a step it skips still holds it, at its first step: it asks for the operator before the canary goes past
    // that share (a review: pauseAt [25] from 30 % went on from 50 % to 100 % without it, saying nothing).
    const skipped = pauseAt.filter((percent) => percent < steps[this.#step]!);
    if (skipped.length > 0) this.#pause(`paused by its plan (pauseAt ${skipped.join('/')} %, started past it)`);
  }

  /** The pair's weights an abort sets: the canary 0, the baseline the whole sum (SPEC §11). */
  get abortWeights(): Record<string, number> {
    return { [this.plan.canary]: 0, [this.plan.baseline]: this.#pairWeight };
  }

  /** One request of either version ended (the gateway's hot path: counters only). */
  record(version: string, isError: boolean, firstTokenMs: number, responseMs: number, timePerTokenMs: number): void {
    if (!this.isActive) return;
    const tally = version === this.plan.canary ? this.outcomes.canary : this.outcomes.baseline;
    tally.record(isError, firstTokenMs, responseMs, timePerTokenMs);
  }

  /** A request of either version its client gave up on before its first token or answer, after waiting this long. */
  recordWait(version: string, isStream: boolean, waitedMs: number): void {
    if (!this.isActive) return;
    (version === this.plan.canary ? this.outcomes.canary : this.outcomes.baseline).recordWait(isStream, waitedMs);
  }

  /** Judges the current step; moves on, ends, or waits. */
  tick(nowMs: number): void {
    if (!this.isActive) return;
    const result = judge({
      step: this.#step,
      canaryPercent: this.plan.steps[this.#step]!,
      observations: this.outcomes.observations(),
      evidence: this.#evidence,
      options: this.plan.judge,
    });
    this.#evidence = result.evidence;
    this.#current = result.decisions;
    const elapsedMs = nowMs - this.#stepStartMs;
    if (result.verdict === 'rollback') return this.#end('rolled_back', result.reason, nowMs);
    // Held: SPEC §11 is silent; like a paused Argo rollout, whose analysis keeps running, it is
    // watched while it has traffic, but moving on is the operator's call (abort, or a new canary).
    if (this.#state === 'held') {
      // Why it was held stays first; what the judge sees now follows, as it is still judged.
      this.#reason = `${this.#heldReason}; judged since: ${result.reason}`;
      return;
    }
    const waitsFor = result.verdict === 'advance' ? this.#nextStepWaitsFor() : undefined;
    if (result.verdict === 'advance' && waitsFor === undefined) {
      this.#reason = result.reason;
      if (elapsedMs < this.plan.stepMs) return;
      if (this.#step === this.plan.steps.length - 1) return this.#end('promoted', result.reason, nowMs);
      this.#settled.push(...this.#current);
      this.#current = [];
      this.#step++;
      this.#stepStartMs = nowMs;
      this.#verdictDueFromMs = nowMs;
      this.outcomes.nextStep();
      this.#applyStep();
      return;
    }
    this.#reason = waitsFor ?? result.reason;
    if (nowMs - this.#verdictDueFromMs >= this.plan.maxStepMs) {
      const why = `no verdict within maxStepMs (${this.plan.maxStepMs} ms): ${this.#reason}`;
      if (this.plan.onInconclusive === 'hold') this.#heldReason = why;
      this.#end(this.plan.onInconclusive === 'rollback' ? 'rolled_back' : 'held', why, nowMs);
    }
  }

  /** Before the step where the canary has 100 %: why the baseline's requests so far cannot judge it there, if so. */
  #nextStepWaitsFor(): string | undefined {
    const { steps, judge: options } = this.plan;
    return nextStepWaitsFor(this.#step, steps.length, this.outcomes.observations().errors, this.#evidence, options);
  }

  /**
   * Ends a running or held canary from outside: the canary's weight goes back to 0 at once and
   * the baseline gets the pair's sum (a reload then applies the file's weights over them).
   */
  abort(reason: string, nowMs: number): void {
    if (!this.isActive) return;
    this.#end('aborted', reason, nowMs);
  }

  /**
   * Promotes a running or held canary by hand, from whatever step it is at (Argo Rollouts' `promote --full`): the
   * canary gets the pair's sum at once and the baseline 0, without waiting for the judge. It ends `promoted`; its
   * reason says it was by hand and keeps what the judge had said.
   */
  promote(by: string, nowMs: number): void {
    if (!this.isActive) return;
    const { steps } = this.plan;
    const held = this.#isPaused ? ', paused' : ', held';
    const at = `step ${this.#step + 1} (${steps[this.#step]} %)${this.#state === 'held' ? held : ''}`;
    this.#end('promoted', `promoted by hand (${by}) at ${at}; the judge had said: ${this.#reason}`, nowMs);
  }

  /**
   * Holds a running canary by hand where it is (Argo Rollouts' `pause`): its weights stay, it is still judged and
   * rolled back if it starts failing, but it does not advance until it is resumed, promoted or aborted. Returns false
   * when it was held already (by hand, or by the judge's maxStepMs): nothing changes then.
   */
  pause(by: string): boolean {
    return this.#pause(`paused by hand (${by})`);
  }

  /** `why`: who paused it ("paused by hand (…)", "paused by its plan (…)"); the step follows. */
  #pause(why: string): boolean {
    if (this.#state !== 'running') return false;
    const { steps } = this.plan;
    this.#state = 'held';
    this.#isPaused = true;
    this.#heldReason = `${why} at step ${this.#step + 1} (${steps[this.#step]} %)`;
    this.#reason = this.#heldReason;
    this.#log.info({ state: this.#state, step: this.#step, reason: this.#reason }, 'canary paused');
    return true;
  }

  /**
   * Lets a held canary (paused by hand, or held for want of a verdict) step on again from the step it is at, with the
   * outcomes that step has gathered: the judge again has maxStepMs for a verdict there, counted from now (Argo
   * Rollouts' `promote` of a paused rollout, which goes on with its steps). Returns false when it was running.
   */
  resume(by: string, nowMs: number): boolean {
    if (this.#state !== 'held') return false;
    const { steps } = this.plan;
    const was = this.#isPaused ? 'paused' : 'held';
    this.#state = 'running';
    this.#isPaused = false;
    this.#heldReason = '';
    this.#verdictDueFromMs = nowMs;
    this.#reason = `resumed by hand (${by}) at step ${this.#step + 1} (${steps[this.#step]} %), ${was} before`;
    this.#log.info({ state: this.#state, step: this.#step, reason: this.#reason }, 'canary resumed');
    return true;
  }

  status(): CanaryStatus {
    const { plan } = this;
    const iso = (monoMs: number): string => new Date(this.#wallAtStartMs + (monoMs - this.#startMs)).toISOString();
    const { baseline, canary } = this.outcomes;
    return {
      version: plan.canary,
      baseline: plan.baseline,
      state: this.#state,
      step: this.#step,
      canaryPercent: this.canaryPercent,
      steps: plan.steps,
      pauseAt: plan.pauseAt,
      stepMs: plan.stepMs,
      maxStepMs: plan.maxStepMs,
      minRequests: plan.judge.minRequests,
      onInconclusive: plan.onInconclusive,
      alpha: plan.judge.alpha,
      requireNonInferiority: plan.judge.requireNonInferiority,
      criteria: {
        errorRate: copyOrFalse(plan.judge.criteria.error_rate),
        firstTokenP99: copyOrFalse(plan.judge.criteria.first_token_p99),
        responseTimeP99: copyOrFalse(plan.judge.criteria.response_time_p99),
        timePerTokenP99: copyOrFalse(plan.judge.criteria.time_per_token_p99),
        maxErrorRate: plan.judge.criteria.max_error_rate?.max ?? false,
      },
      startedAt: iso(this.#startMs),
      stepStartedAt: iso(this.#stepStartMs),
      endedAt: this.#endedAtMs === null ? null : iso(this.#endedAtMs),
      reason: this.#reason,
      paused: this.#isPaused,
      observed: {
        baseline: { requests: baseline.requests, errors: baseline.errors },
        canary: { requests: canary.requests, errors: canary.errors },
      },
      decisions: [...this.#settled, ...this.#current],
    };
  }

  #applyStep(): void {
    const percent = this.plan.steps[this.#step]!;
    // At 100 % exactly the pair's sum and 0: a relative rounding keeps the noise of a sum such as 0.7 + 0.1 (a review:
    // the baseline's weight was -1.1e-16 at the last step).
    const canaryWeight = percent === 100 ? this.#pairWeight : round((this.#pairWeight * percent) / 100);
    const baselineWeight = percent === 100 ? 0 : Math.max(0, round(this.#pairWeight - canaryWeight));
    const weights = { [this.plan.canary]: canaryWeight, [this.plan.baseline]: baselineWeight };
    this.#weights.setPairWeights(this.plan.canary, this.plan.baseline, weights);
    this.#log.info({ step: this.#step, canaryPercent: percent, weights }, 'canary step');
    // A manual gate: the weights are set, the step is judged, and it goes on when the operator resumes it.
    if (this.plan.pauseAt.includes(percent)) this.#pause('paused by its plan (pauseAt)');
  }

  #end(state: CanaryState, reason: string, nowMs: number): void {
    this.#state = state;
    // Held by the judge, or ended: no longer waiting for the operator.
    this.#isPaused = false;
    this.#reason = reason;
    // Held is not an end: it is still judged, and ends when it is rolled back, promoted or aborted (or resumed).
    if (state !== 'held') this.#endedAtMs = nowMs;
    // A held canary is still judged at its step: that step's decisions stay current.
    if (state !== 'held') {
      this.#settled.push(...this.#current);
      this.#current = [];
    }
    let weights: Record<string, number> | undefined;
    if (state === 'rolled_back' || state === 'aborted') weights = this.abortWeights;
    else if (state === 'promoted') weights = { [this.plan.canary]: this.#pairWeight, [this.plan.baseline]: 0 };
    // Still as a pair: promoted, the canary keeps exactly the pair's users; rolled back, the baseline has them all.
    if (weights !== undefined) this.#weights.setPairWeights(this.plan.canary, this.plan.baseline, weights);
    const line = { state, step: this.#step, reason, weights, decisions: [...this.#settled, ...this.#current] };
    if (state === 'rolled_back') this.#log.warn(line, 'canary verdict');
    else this.#log.info(line, 'canary verdict');
  }
}

/** A criterion as the status shows it: a copy (the plan's stays the judge's), or false when it is off. */
function copyOrFalse<T extends object>(criterion: T | null): T | false {
  return criterion === null ? false : { ...criterion };
}
