import { LatencySketch } from '../../master/canary/sketch.js';
import {
  createCanaryEvidence,
  judge,
  nextStepWaitsFor,
  type CanaryEvidence,
  type CanaryMetric,
  resolveJudgeOptions,
  type JudgeOptions,
  type JudgeResult,
  type ResolvedJudgeOptions,
} from '../../master/canary/statistics.js';

// A simulated canary for the judge (issue 13 part 3): a pair of versions with
// given error rates and lognormal latencies, traffic split by the step's
// weight, and a controller that calls judge() every few requests and
// advances when the judge says so and the step's time is up, exactly as
// SPEC §11 describes. Used by test/master/canary/statistics.test.ts (false
// alarms over 10,000 canaries, power) and scripts/bench/canary-sim.ts.
// The per-request loop allocates nothing: the sketches are reused and reset.

/** mulberry32 (Tommy Ettinger, public domain): a seeded 32-bit PRNG, plenty for Monte Carlo. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) | 0;
    let t = Math.imul(a ^ (a >>> 15), 1 | a);
    t = (t + Math.imul(t ^ (t >>> 7), 61 | t)) ^ t;
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Standard normal variates by Box–Muller, using both values of each pair. */
export function normalSampler(random: () => number): () => number {
  let spare = Number.NaN;
  return () => {
    if (!Number.isNaN(spare)) {
      const z = spare;
      spare = Number.NaN;
      return z;
    }
    const radius = Math.sqrt(-2 * Math.log(1 - random())); // 1 − u ∈ (0, 1]: never ln 0
    const angle = 2 * Math.PI * random();
    spare = radius * Math.sin(angle);
    return radius * Math.cos(angle);
  };
}

export interface LognormalMs {
  /** Median, ms. */
  medianMs: number;
  /** Standard deviation of ln(ms); 0.5 makes the p99 3.2× the median. */
  sigma: number;
}

export interface VersionModel {
  /** Probability that a request is an error. */
  errorRate: number;
  /** First-token time of streams. */
  firstToken: LognormalMs;
  /** Response time of non-streams. */
  response: LognormalMs;
  /** Added to every first-token time, ms. Default 0. */
  addedFirstTokenMs?: number;
  /** Mean time between content events of a stream (time per token); none recorded when absent. */
  timePerToken?: LognormalMs;
}

export interface Scenario {
  /** Canary percent of the pair's traffic per step; the last is 100. */
  steps: readonly number[];
  /** Requests per second to the pair. */
  requestsPerSecond: number;
  /** Minimum time at a step (SPEC §11 stepMs). */
  stepMs: number;
  /** Longest time at a step before the canary is held (SPEC §11 maxStepMs, onInconclusive "hold"). */
  maxStepMs: number;
  /** The controller calls judge() after every this many requests (of both versions). */
  judgeEveryRequests: number;
  /** Share of requests that are streams (judged on first-token time; the rest on response time). */
  streamShare: number;
  baseline: VersionModel;
  canary: VersionModel;
  /** The judge's options (alpha, minRequests, criteria, requireNonInferiority). */
  options: JudgeOptions;
}

export interface CanaryOutcome {
  result: 'promoted' | 'rolled_back' | 'held';
  /** Requests of both versions until the result. */
  requests: number;
  /** Canary requests until the result. */
  canaryRequests: number;
  /** Simulated time until the result, ms. */
  elapsedMs: number;
  /** The metric that rejected first, for rollbacks. */
  metric: CanaryMetric | null;
}

class VersionRecorder {
  requests = 0;
  errors = 0;
  readonly firstTokenMs = new LatencySketch();
  readonly responseMs = new LatencySketch();
  readonly timePerTokenMs = new LatencySketch();

  reset(): void {
    this.requests = 0;
    this.errors = 0;
    this.firstTokenMs.reset();
    this.responseMs.reset();
    this.timePerTokenMs.reset();
  }

  mergeInto(previous: VersionRecorder): void {
    previous.requests += this.requests;
    previous.errors += this.errors;
    previous.firstTokenMs.merge(this.firstTokenMs);
    previous.responseMs.merge(this.responseMs);
    previous.timePerTokenMs.merge(this.timePerTokenMs);
  }
}

/** Runs canaries of one scenario; reuse it across runs so that its sketches are reused. */
export class CanarySimulator {
  readonly #scenario: Scenario;
  readonly #options: ResolvedJudgeOptions;
  readonly #random: () => number;
  readonly #normal: () => number;
  readonly #baseline = new VersionRecorder();
  readonly #canary = new VersionRecorder();
  readonly #previous = new VersionRecorder();

  constructor(scenario: Scenario, seed: number) {
    this.#scenario = scenario;
    this.#options = resolveJudgeOptions(scenario.options);
    this.#random = mulberry32(seed);
    this.#normal = normalSampler(this.#random);
  }

  #serve(model: VersionModel, into: VersionRecorder): void {
    const s = this.#scenario;
    into.requests++;
    if (this.#random() < model.errorRate) into.errors++;
    if (this.#random() < s.streamShare) {
      const ms = model.firstToken.medianMs * Math.exp(model.firstToken.sigma * this.#normal());
      into.firstTokenMs.record(ms + (model.addedFirstTokenMs ?? 0));
      const perToken = model.timePerToken;
      if (perToken !== undefined)
        into.timePerTokenMs.record(perToken.medianMs * Math.exp(perToken.sigma * this.#normal()));
    } else {
      into.responseMs.record(model.response.medianMs * Math.exp(model.response.sigma * this.#normal()));
    }
  }

  #judge(step: number, evidence: CanaryEvidence): JudgeResult {
    const b = this.#baseline;
    const c = this.#canary;
    const p = this.#previous;
    return judge({
      step,
      canaryPercent: this.#scenario.steps[step]!,
      evidence,
      options: this.#options,
      observations: {
        errors: {
          baseline: { requests: b.requests, errors: b.errors },
          canary: { requests: c.requests, errors: c.errors },
          baselinePreviousSteps: { requests: p.requests, errors: p.errors },
        },
        firstTokenMs: { baseline: b.firstTokenMs, canary: c.firstTokenMs, baselinePreviousSteps: p.firstTokenMs },
        responseMs: { baseline: b.responseMs, canary: c.responseMs, baselinePreviousSteps: p.responseMs },
        timePerTokenMs: {
          baseline: b.timePerTokenMs,
          canary: c.timePerTokenMs,
          baselinePreviousSteps: p.timePerTokenMs,
        },
      },
    });
  }

  /** One canary from its first step to promotion, rollback or hold. */
  run(): CanaryOutcome {
    const s = this.#scenario;
    const msPerRequest = 1000 / s.requestsPerSecond;
    const stepRequests = Math.ceil(s.stepMs / msPerRequest);
    const maxStepRequests = Math.ceil(s.maxStepMs / msPerRequest);
    this.#previous.reset();
    let evidence = createCanaryEvidence();
    let requests = 0;
    let canaryRequests = 0;
    for (let step = 0; step < s.steps.length; step++) {
      const share = s.steps[step]! / 100;
      this.#baseline.reset();
      this.#canary.reset();
      for (let i = 1; i <= maxStepRequests; i++) {
        requests++;
        if (this.#random() < share) {
          canaryRequests++;
          this.#serve(s.canary, this.#canary);
        } else {
          this.#serve(s.baseline, this.#baseline);
        }
        if (i % s.judgeEveryRequests !== 0 && i !== maxStepRequests) continue;
        const result = this.#judge(step, evidence);
        evidence = result.evidence;
        if (result.verdict === 'rollback') {
          const metric = result.decisions.find((d) => d.verdict === 'fail')!.metric;
          return { result: 'rolled_back', requests, canaryRequests, elapsedMs: requests * msPerRequest, metric };
        }
        // As the controller: the step to 100 % waits for a baseline history that can judge the canary alone.
        const errors = { baseline: this.#baseline, canary: this.#canary, baselinePreviousSteps: this.#previous };
        const isReady = nextStepWaitsFor(step, s.steps.length, errors, evidence, this.#options) === undefined;
        if (result.verdict === 'advance' && i >= stepRequests && isReady) break;
        if (i === maxStepRequests)
          return { result: 'held', requests, canaryRequests, elapsedMs: requests * msPerRequest, metric: null };
      }
      this.#baseline.mergeInto(this.#previous);
    }
    return { result: 'promoted', requests, canaryRequests, elapsedMs: requests * msPerRequest, metric: null };
  }
}

export interface ScenarioSummary {
  runs: number;
  rolledBack: number;
  promoted: number;
  held: number;
  /** Median requests (both versions) to a rollback; NaN when none. */
  medianRequestsToRollback: number;
  /** Median canary requests to a rollback. */
  medianCanaryRequestsToRollback: number;
  medianMsToRollback: number;
  /** Median simulated time to promotion, ms. */
  medianMsToPromotion: number;
  /** Rollbacks per metric that rejected. */
  rollbacksByMetric: Partial<Record<CanaryMetric, number>>;
}

function median(values: number[]): number {
  if (values.length === 0) return Number.NaN;
  values.sort((a, b) => a - b);
  return values[(values.length - 1) >> 1]!;
}

/** Runs `runs` canaries of a scenario with a seeded PRNG and summarises them. */
export function simulateScenario(scenario: Scenario, runs: number, seed: number): ScenarioSummary {
  const simulator = new CanarySimulator(scenario, seed);
  const toRollback: CanaryOutcome[] = [];
  const promotionMs: number[] = [];
  const byMetric: Partial<Record<CanaryMetric, number>> = {};
  let held = 0;
  for (let run = 0; run < runs; run++) {
    const outcome = simulator.run();
    if (outcome.result === 'rolled_back') {
      toRollback.push(outcome);
      byMetric[outcome.metric!] = (byMetric[outcome.metric!] ?? 0) + 1;
    } else if (outcome.result === 'promoted') promotionMs.push(outcome.elapsedMs);
    else held++;
  }
  return {
    runs,
    rolledBack: toRollback.length,
    promoted: promotionMs.length,
    held,
    medianRequestsToRollback: median(toRollback.map((o) => o.requests)),
    medianCanaryRequestsToRollback: median(toRollback.map((o) => o.canaryRequests)),
    medianMsToRollback: median(toRollback.map((o) => o.elapsedMs)),
    medianMsToPromotion: median(promotionMs),
    rollbacksByMetric: byMetric,
  };
}
