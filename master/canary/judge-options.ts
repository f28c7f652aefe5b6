import type { CanaryMetric } from './decision.js';

// The judge's options (SPEC §11 canary body: alpha, minRequests,
// requireNonInferiority, criteria) with their defaults, and how alpha is
// spent. Pass the same options at every call of one canary: the false-alarm
// guarantee is computed for one fixed set of tests.

export interface ErrorRateCriterion {
  /** The canary's error rate may be at most maxRatio × the baseline's (+ marginAbs). ≥ 1. Default 1.2. */
  maxRatio?: number;
  /** Absolute margin added to the limit, as a fraction (0.01 = 1 point). 0 ≤ marginAbs < 1. Default 0.01. */
  marginAbs?: number;
}

export interface LatencyCriterion {
  /** The canary's p99 may be at most maxRatio × the baseline's p99 (+ marginMs). ≥ 1. Default 1.2. */
  maxRatio?: number;
  /**
   * Milliseconds added to the limit, ≥ 0. Default 0. A fast service's p99 is noisy in absolute terms (a few ms of
   * scheduling on a 20 ms p99 is already 1.2×): a margin keeps equal builds from being held there.
   */
  marginMs?: number;
}

export interface JudgeCriteria {
  /** All requests: 5xx, refusals routed to the version, streams ended by an error event. false: off. */
  errorRate?: ErrorRateCriterion | false;
  /** Streams: time to the first content event. false: off. */
  firstTokenP99?: LatencyCriterion | false;
  /** Non-streams: time to the whole response. false: off. */
  responseTimeP99?: LatencyCriterion | false;
  /**
   * Streams that ended well with two content events or more: the mean time between content events after the first
   * (an LLM's time per output token, TPOT), one value per stream. false: off.
   */
  timePerTokenP99?: LatencyCriterion | false;
  /**
   * All requests: the canary's error rate may be at most this, whatever the baseline's (0 < max < 1; 0.05 = 5 %).
   * Default false: off (the other criteria are relative to the baseline).
   */
  maxErrorRate?: number | false;
}

export interface JudgeOptions {
  /**
   * Probability that a canary no worse than the criteria is ever rolled back,
   * over the whole canary (all steps, all metrics, however often judge() is
   * called). 0 < alpha < 0.5. Default 0.01.
   */
  alpha?: number;
  /** Canary requests needed at a step before it may advance. Integer ≥ 1. Default 200 (SPEC §11). */
  minRequests?: number;
  /**
   * false (default): a step may advance when its point estimates are within
   * the criteria and no test has rejected. true: it waits until a confidence
   * bound shows each metric within its criterion (hundreds of requests or more per step).
   */
  requireNonInferiority?: boolean;
  /** Defaults: error rate ≤ 1.2 × baseline + 0.01; the three p99s ≤ 1.2 × baseline (+ 0 ms). */
  criteria?: JudgeCriteria;
}

const JUDGE_DEFAULTS = {
  alpha: 0.01,
  minRequests: 200,
  requireNonInferiority: false,
  errorRate: { maxRatio: 1.2, marginAbs: 0.01 },
  latency: { maxRatio: 1.2, marginMs: 0 },
} as const;

export interface ResolvedErrorRateCriterion {
  maxRatio: number;
  marginAbs: number;
}

export interface ResolvedMaxErrorRateCriterion {
  max: number;
}

export interface ResolvedLatencyCriterion {
  maxRatio: number;
  marginMs: number;
}

export interface ResolvedJudgeOptions {
  alpha: number;
  minRequests: number;
  requireNonInferiority: boolean;
  /** null: switched off. */
  criteria: {
    error_rate: ResolvedErrorRateCriterion | null;
    first_token_p99: ResolvedLatencyCriterion | null;
    response_time_p99: ResolvedLatencyCriterion | null;
    time_per_token_p99: ResolvedLatencyCriterion | null;
    max_error_rate: ResolvedMaxErrorRateCriterion | null;
  };
}

function checkRatio(path: string, value: number, problems: string[]): void {
  if (!(Number.isFinite(value) && value >= 1)) problems.push(`${path}: must be a number ≥ 1`);
}

/** Fills in the defaults; throws a RangeError naming every problem (`criteria.errorRate.maxRatio: must be …`). */
export function resolveJudgeOptions(options: JudgeOptions = {}): ResolvedJudgeOptions {
  const problems: string[] = [];
  const alpha = options.alpha ?? JUDGE_DEFAULTS.alpha;
  if (!(alpha > 0 && alpha < 0.5)) problems.push('alpha: must be > 0 and < 0.5');
  const minRequests = options.minRequests ?? JUDGE_DEFAULTS.minRequests;
  if (!(Number.isInteger(minRequests) && minRequests >= 1)) problems.push('minRequests: must be an integer ≥ 1');
  const c = options.criteria ?? {};

  let errorRate: ResolvedErrorRateCriterion | null = null;
  if (c.errorRate !== false) {
    errorRate = {
      maxRatio: c.errorRate?.maxRatio ?? JUDGE_DEFAULTS.errorRate.maxRatio,
      marginAbs: c.errorRate?.marginAbs ?? JUDGE_DEFAULTS.errorRate.marginAbs,
    };
    checkRatio('criteria.errorRate.maxRatio', errorRate.maxRatio, problems);
    if (!(errorRate.marginAbs >= 0 && errorRate.marginAbs < 1))
      problems.push('criteria.errorRate.marginAbs: must be ≥ 0 and < 1');
  }
  let maxErrorRate: ResolvedMaxErrorRateCriterion | null = null;
  if (c.maxErrorRate !== undefined && c.maxErrorRate !== false) {
    maxErrorRate = { max: c.maxErrorRate };
    if (!(c.maxErrorRate > 0 && c.maxErrorRate < 1)) problems.push('criteria.maxErrorRate: must be > 0 and < 1');
  }
  const latency = (path: string, value: LatencyCriterion | false | undefined): ResolvedLatencyCriterion | null => {
    if (value === false) return null;
    const maxRatio = value?.maxRatio ?? JUDGE_DEFAULTS.latency.maxRatio;
    checkRatio(`${path}.maxRatio`, maxRatio, problems);
    const marginMs = value?.marginMs ?? JUDGE_DEFAULTS.latency.marginMs;
    if (!(Number.isFinite(marginMs) && marginMs >= 0)) problems.push(`${path}.marginMs: must be a number ≥ 0`);
    return { maxRatio, marginMs };
  };
  const criteria = {
    error_rate: errorRate,
    first_token_p99: latency('criteria.firstTokenP99', c.firstTokenP99),
    response_time_p99: latency('criteria.responseTimeP99', c.responseTimeP99),
    time_per_token_p99: latency('criteria.timePerTokenP99', c.timePerTokenP99),
    max_error_rate: maxErrorRate,
  };
  if (problems.length > 0) throw new RangeError(`invalid judge options: ${problems.join('; ')}`);
  return {
    alpha,
    minRequests,
    requireNonInferiority: options.requireNonInferiority ?? JUDGE_DEFAULTS.requireNonInferiority,
    criteria,
  };
}

export function enabledMetrics(options: ResolvedJudgeOptions): CanaryMetric[] {
  return (Object.keys(options.criteria) as CanaryMetric[]).filter((m) => options.criteria[m] !== null);
}

// How alpha is spent (Bonferroni, then Ville): each of the M metrics switched
// on gets alpha/M. Half of that bounds the metric's e-value (it rejects at
// 2M/alpha); the other half covers the baseline's confidence sequences, spent
// over the steps as 1/(k(k+1)) of it at the k-th step judged (which sums to
// 1 however many steps there are). A rollback happens only if some metric's
// e-value crosses its threshold or some baseline bound is wrong, so
// P(any false rollback) ≤ Σ_metrics (alpha/2M + Σ_k alpha/(2M·k(k+1))) = alpha.

// Each a difference of logs, not the log of a quotient: an alpha below ~1e-308 (accepted: > 0) made the quotient
// Infinity, and a canary that failed every request was never rolled back (a probe).

/** ln(1/α) at which a metric's e-value rejects. */
export function canaryLogThreshold(alpha: number, metricCount: number): number {
  return Math.log(2 * metricCount) - Math.log(alpha);
}

/** ln(1/α) of the baseline's confidence sequences at the k-th step judged (k ≥ 1). */
export function baselineLogThreshold(alpha: number, metricCount: number, stepOrdinal: number): number {
  return Math.log(2 * metricCount * stepOrdinal * (stepOrdinal + 1)) - Math.log(alpha);
}
