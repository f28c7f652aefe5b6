import type { PairedState } from './paired-e-process.js';

// What the judge decides per step and metric (SPEC §11 `decisions`), and the
// per-metric evidence it carries from call to call. Plain JSON-safe data: the
// controller returns decisions from the admin API as they are.

export type CanaryMetric =
  'error_rate' | 'first_token_p99' | 'response_time_p99' | 'time_per_token_p99' | 'max_error_rate';

export const CANARY_METRICS: readonly CanaryMetric[] = [
  'error_rate',
  'first_token_p99',
  'response_time_p99',
  'time_per_token_p99',
  'max_error_rate',
];

/** fail: the sequential test rejected (roll back); pass: may advance; not_yet: keep watching. */
export type MetricVerdict = 'pass' | 'fail' | 'not_yet';

export const METRIC_VERDICTS: readonly MetricVerdict[] = ['pass', 'not_yet', 'fail'];

export interface Decision {
  /** The step index the controller passed in. */
  step: number;
  metric: CanaryMetric;
  /**
   * The reference the canary was compared with: this step's baseline
   * requests, or at a step where the canary has 100 % the baseline's
   * requests of all earlier steps. value: error rate (0–1) or p99 (ms);
   * null when n is 0. (max_error_rate does not compare: the baseline's rate is there to read.)
   */
  baseline: { n: number; value: number | null };
  /** The canary's requests at this step (for latencies: those that had that latency). */
  canary: { n: number; value: number | null };
  verdict: MetricVerdict;
  /**
   * ln of the metric's e-value, accumulated across steps: the test rejects
   * (verdict fail) once it reaches ln(2·M/alpha) for M metrics switched on
   * (ln 800 = 6.68 with the defaults). Negative values are normal for a healthy canary.
   */
  statistic: number;
}

/** Per metric, what the judge carries between calls (see e-process.ts carryIntoNextStep). */
export interface MetricEvidence {
  /** Per mixture component: ln of its weight carried into the current step. */
  carriedLog: number[];
  /** Per mixture component: ln of the current step's factor at the last call. */
  stepLog: number[];
  /** error_rate while the baseline serves part of the traffic: the step's two-sample state; otherwise null. */
  paired: PairedState | null;
}

/** One metric's judgement at one call. */
export interface MetricJudgement {
  decision: Decision;
  /** The updated evidence of this metric. */
  evidence: MetricEvidence;
  /**
   * One sentence for the judge's reason: numbers, limit and test state.
   * A function because formatting costs more than judging, and a controller
   * calling judge() every few requests reads few of the reasons.
   */
  explain: () => string;
}

/** What every metric evaluation needs to know about the call. */
export interface MetricContext {
  step: number;
  /** The canary's share of the pair's traffic at this step, 0 < share ≤ 1. */
  canaryShare: number;
  /** All the canary's requests at this step (the minRequests gate). */
  canaryRequests: number;
  /** All the reference's requests: the baseline's at this step, or at the earlier steps when the canary has 100 %. */
  referenceRequests: number;
  minRequests: number;
  requireNonInferiority: boolean;
  /** ln(1/α) at which the metric's e-value rejects. */
  canaryLogThreshold: number;
  /** ln(1/α) of the baseline's confidence sequences at this step. */
  baselineLogThreshold: number;
}
