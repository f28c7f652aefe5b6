import {
  CANARY_METRICS,
  type CanaryMetric,
  type Decision,
  type MetricContext,
  type MetricEvidence,
  type MetricJudgement,
} from './decision.js';
import { rateUpperBound } from './confidence-sequence.js';
import { carryIntoNextStep, COMPONENTS, logStartWeight } from './e-process.js';
import { judgeErrorRate, type ErrorObservations } from './error-rate-metric.js';
import {
  baselineLogThreshold,
  canaryLogThreshold,
  enabledMetrics,
  type ResolvedJudgeOptions,
} from './judge-options.js';
import { judgeLatency, type LatencyObservations, type StreamCounts } from './latency-metric.js';
import { judgeMaxErrorRate } from './max-error-rate-metric.js';

// The canary judge (SPEC §11, issue 13 part 3): one pure function the
// controller calls after each batch of observations. No clock, no
// randomness, no I/O: everything it knows is in its input, everything it
// must remember is in the evidence it returns (plain numbers).
//
// Guarantee: if at every step the canary is within every criterion switched
// on (error rate ≤ maxRatio × the baseline's + marginAbs, p99 ≤ maxRatio ×
// the baseline's), in particular if both versions are the same, the
// probability that judge() EVER answers 'rollback' during the whole canary
// is ≤ alpha, however often it is called and whenever the controller stops.
// It assumes, per version and step, independent outcomes with a fixed error
// rate and latency distribution, and at a step where the canary has 100 %,
// a baseline that behaves as in the earlier steps.
//
// Methods (each file says why it is sound):
// - error rate: a two-sample mixture SPRT, exact whatever the baseline's
//   rate, on both versions' requests of the step (paired-e-process.ts);
// - p99s: a mixture SPRT on the count of canary requests above maxRatio × an
//   upper confidence bound of the baseline's p99 (latency-metric.ts);
// - across steps: a mixture, over the step where evidence starts, of
//   products of per-step factors (e-process.ts carryIntoNextStep);
// - alpha: alpha/M per metric switched on, half for its e-value, half for
//   the baseline's confidence bounds, spent 1/(k(k+1)) at the k-th step
//   (judge-options.ts).
// A plainly broken canary needs no rule of its own, which would need a share
// of alpha: the mixture includes alternatives up to 200× the odds of the
// limit, so 10 errors in the first 20 canary requests (baseline ~1 %) reject
// at once, and 50 % errors are rolled back after ~10 canary requests.
//
// How the controller uses it:
//   const options = resolveJudgeOptions(body.criteria…);  // once; RangeError → 400 invalid_request
//   let evidence = createCanaryEvidence();
//   // per version: { requests, errors } and three LatencySketch (firstTokenMs, responseMs, timePerTokenMs) for the
//   // current step, and the same for the baseline over all previous steps
//   every ~100–250 ms:
//     const result = judge({ step, canaryPercent, observations, evidence, options });
//     evidence = result.evidence;                          // always, whatever the verdict
//     rollback → weights at once; advance → only once stepMs has passed (else keep calling);
//     wait → keep calling until maxStepMs, then onInconclusive
//   on advancing: merge the baseline's step counts and sketches into the
//   previous-steps ones, reset the step ones, and pass the next step index.
// Caveats:
// - Counts and sketches are the step's, cumulative: they never go down
//   within a step (RangeError). A step's evidence is settled as it stood at
//   the last call of the step, so call judge() once more before advancing
//   if observations came in since (an 'advance' verdict already is that call).
// - "Within a second" for a plainly broken canary needs calls at least every
//   ~250 ms (and enough canary traffic: 10 requests at 50 % errors).
// - A p99 test can reject only once the step's baseline has ~860–1050
//   requests of that kind (alpha 0.01, the 4 default metrics, step 1–3;
//   ~830–1020 with 3; fewer with a larger alpha): no upper bound of a p99 is
//   possible earlier. Switch off the criteria that do not apply (no streams:
//   firstTokenP99 and timePerTokenP99).
// - The point-estimate rule for advancing has no error control: with small
//   steps (a few hundred requests) the p99 estimates are noisy, and an equal
//   canary may wait until maxStepMs (6–8 % at 200-request steps, 0 % at 6000).
//   With onInconclusive "rollback" those become rollbacks that alpha does not cover.
// - At 100 % the reference is baselinePreviousSteps; with no earlier
//   baseline at all (steps [100]) there is nothing to compare with: 'wait'.

export type { CanaryMetric, Decision, MetricEvidence, MetricVerdict } from './decision.js';
export type { ErrorCounts, ErrorObservations } from './error-rate-metric.js';
export type { LatencyObservations } from './latency-metric.js';
export { resolveJudgeOptions } from './judge-options.js';
export type {
  ErrorRateCriterion,
  JudgeCriteria,
  JudgeOptions,
  LatencyCriterion,
  ResolvedJudgeOptions,
} from './judge-options.js';

export type JudgeVerdict = 'advance' | 'wait' | 'rollback';

/** What judge() carries from one call to the next: plain JSON-safe numbers, created by createCanaryEvidence(). */
export interface CanaryEvidence {
  /** The step index of the last call; null before the first call. */
  step: number | null;
  /** Steps judged so far, the current one included (1 during the first step). */
  stepOrdinal: number;
  metrics: Record<CanaryMetric, MetricEvidence>;
}

export interface StepObservations {
  /** Every request counts here, streams or not. */
  errors: ErrorObservations;
  /** Streams only: ms from the request to the first content event relayed. */
  firstTokenMs: LatencyObservations;
  /** Non-streams only: ms from the request to the end of the response. */
  responseMs: LatencyObservations;
  /** Streams that ended well with two content events or more: mean ms between content events after the first. */
  timePerTokenMs: LatencyObservations;
  /**
   * Streams that ended well (not failed, not left by their client), with or without a time per token; absent: not
   * known (then a side with no time per token is never "not measured"). A stream its client left has none.
   */
  streamsEnded?: StreamCounts;
  /** Streams their clients left after their first content, with no time per token; absent: not known. */
  streamsLeft?: StreamCounts;
}

export interface JudgeInput {
  /**
   * The current step's index in the canary's steps. A value different from
   * the previous call's starts a new step (it must not go down): the
   * evidence of the step before is settled as it stood at the last call.
   */
  step: number;
  /** The canary's percentage of the pair's weight at this step, 0 < canaryPercent ≤ 100. */
  canaryPercent: number;
  observations: StepObservations;
  /** createCanaryEvidence() at the first call, then the evidence the previous call returned. */
  evidence: CanaryEvidence;
  /**
   * resolveJudgeOptions(the canary's options), resolved once when the canary
   * starts (it throws a RangeError naming every bad field: a 400) and passed
   * unchanged at every call: alpha is spent for one fixed set of tests.
   */
  options: ResolvedJudgeOptions;
}

/**
 * What judge() answers. A class only so that `reason`, which costs more to
 * format than the judgement itself, is formatted when first read; toJSON()
 * includes it.
 */
export class JudgeResult {
  /** rollback: some test rejected; advance: every metric switched on passed; wait: otherwise. */
  readonly verdict: JudgeVerdict;
  /** One per metric switched on, for this step (SPEC §11 decisions). */
  readonly decisions: Decision[];
  /** Pass it to the next call. */
  readonly evidence: CanaryEvidence;
  readonly #explain: () => string;
  #reason: string | undefined;

  constructor(verdict: JudgeVerdict, decisions: Decision[], evidence: CanaryEvidence, explain: () => string) {
    this.verdict = verdict;
    this.decisions = decisions;
    this.evidence = evidence;
    this.#explain = explain;
  }

  /** One line for the log and the status: the deciding metric(s) with their numbers. */
  get reason(): string {
    this.#reason ??= this.#explain();
    return this.#reason;
  }

  toJSON(): { verdict: JudgeVerdict; reason: string; decisions: Decision[]; evidence: CanaryEvidence } {
    return { verdict: this.verdict, reason: this.reason, decisions: this.decisions, evidence: this.evidence };
  }
}

function freshMetricEvidence(): MetricEvidence {
  return {
    carriedLog: new Array<number>(COMPONENTS).fill(logStartWeight(1)),
    stepLog: new Array<number>(COMPONENTS).fill(0),
    paired: null,
  };
}

/** The evidence before a canary's first call. */
export function createCanaryEvidence(): CanaryEvidence {
  return {
    step: null,
    stepOrdinal: 1,
    metrics: {
      error_rate: freshMetricEvidence(),
      first_token_p99: freshMetricEvidence(),
      response_time_p99: freshMetricEvidence(),
      time_per_token_p99: freshMetricEvidence(),
      max_error_rate: freshMetricEvidence(),
    },
  };
}

function enterStep(evidence: CanaryEvidence, step: number): CanaryEvidence {
  if (evidence.step === step) return evidence;
  if (evidence.step === null) return { step, stepOrdinal: evidence.stepOrdinal, metrics: evidence.metrics };
  if (step < evidence.step) throw new RangeError(`step: went down from ${evidence.step} to ${step}`);
  const stepOrdinal = evidence.stepOrdinal + 1;
  const metrics = {} as Record<CanaryMetric, MetricEvidence>;
  for (const m of CANARY_METRICS) {
    const e = evidence.metrics[m];
    metrics[m] = {
      carriedLog: carryIntoNextStep(e.carriedLog, e.stepLog, stepOrdinal),
      stepLog: new Array<number>(COMPONENTS).fill(0),
      paired: null,
    };
  }
  return { step, stepOrdinal, metrics };
}

function isCounts(c: { requests: number; errors: number }): boolean {
  return Number.isInteger(c.requests) && Number.isInteger(c.errors) && c.errors >= 0 && c.errors <= c.requests;
}

function checkInput(input: JudgeInput): void {
  const problems: string[] = [];
  if (!Number.isInteger(input.step) || input.step < 0) problems.push('step: must be an integer ≥ 0');
  if (!(input.canaryPercent > 0 && input.canaryPercent <= 100)) problems.push('canaryPercent: must be > 0 and ≤ 100');
  const e = input.observations.errors;
  if (!isCounts(e.baseline)) problems.push('observations.errors.baseline: must be integers with 0 ≤ errors ≤ requests');
  if (!isCounts(e.canary)) problems.push('observations.errors.canary: must be integers with 0 ≤ errors ≤ requests');
  if (!isCounts(e.baselinePreviousSteps))
    problems.push('observations.errors.baselinePreviousSteps: must be integers with 0 ≤ errors ≤ requests');
  if (problems.length > 0) throw new RangeError(`invalid judge input: ${problems.join('; ')}`);
}

/** How far above its point estimate the last step's error-rate limit may lie, for that step to judge a canary alone. */
const LAST_STEP_MAX_SLACK = 0.1;

/**
 * Whether the step where the canary has 100 % could judge its error rate, with `baseline` (the baseline's requests of
 * every step before it) as the only reference. There the limit is maxRatio × an upper confidence bound of the
 * baseline's rate + marginAbs; after a few dozen baseline requests that bound is so wide that a canary failing half
 * its requests is rolled back late or never (0 errors in 20 baseline requests: never). So the controller enters that
 * step only once the limit is within 10 points of its point estimate (about 130–150 error-free baseline requests with
 * the default criteria). Undefined when it may; else why not.
 */
export function lastStepWaitsFor(
  baseline: { requests: number; errors: number },
  evidence: CanaryEvidence,
  options: ResolvedJudgeOptions,
): string | undefined {
  const criterion = options.criteria.error_rate;
  if (criterion === null) return undefined;
  const upper = rateUpperBound({
    successes: baseline.errors,
    trials: baseline.requests,
    logThreshold: baselineLogThreshold(options.alpha, enabledMetrics(options).length, evidence.stepOrdinal + 1),
  });
  const rate = baseline.requests > 0 ? baseline.errors / baseline.requests : 0;
  // Limits at or above 100 % all mean the same (no error rate can exceed them): capped, the slack is what matters.
  const limit = (r: number): number => Math.min(1, criterion.maxRatio * r + criterion.marginAbs);
  const slack = limit(upper) - limit(rate);
  if (slack <= LAST_STEP_MAX_SLACK) return undefined;
  return (
    `the last step judges the canary against the baseline's ${baseline.requests} requests so far, too few: ` +
    `its error-rate limit would be ${(100 * slack).toFixed(1)} points above the estimate (needs ≤ ${100 * LAST_STEP_MAX_SLACK})`
  );
}

/**
 * At `step` of `stepCount`: when the next step is the last (100 %), lastStepWaitsFor over the baseline's requests
 * so far (this step's and the earlier ones'); else undefined. The controller and the simulation both ask it.
 */
export function nextStepWaitsFor(
  step: number,
  stepCount: number,
  errors: ErrorObservations,
  evidence: CanaryEvidence,
  options: ResolvedJudgeOptions,
): string | undefined {
  if (step + 1 !== stepCount - 1) return undefined;
  const { baseline, baselinePreviousSteps: previous } = errors;
  const history = { requests: baseline.requests + previous.requests, errors: baseline.errors + previous.errors };
  return lastStepWaitsFor(history, evidence, options);
}

/** Judges the canary on the current step's observations; see JudgeInput and JudgeResult. */
export function judge(input: JudgeInput): JudgeResult {
  checkInput(input);
  const { options } = input;
  const evidence = enterStep(input.evidence, input.step);
  const metrics = enabledMetrics(options);
  const ctx: MetricContext = {
    step: input.step,
    canaryShare: input.canaryPercent / 100,
    canaryRequests: input.observations.errors.canary.requests,
    referenceRequests:
      input.canaryPercent < 100
        ? input.observations.errors.baseline.requests
        : input.observations.errors.baselinePreviousSteps.requests,
    minRequests: options.minRequests,
    requireNonInferiority: options.requireNonInferiority,
    canaryLogThreshold: canaryLogThreshold(options.alpha, metrics.length),
    baselineLogThreshold: baselineLogThreshold(options.alpha, metrics.length, evidence.stepOrdinal),
  };

  const judgements: MetricJudgement[] = [];
  const updated: Record<CanaryMetric, MetricEvidence> = {
    error_rate: evidence.metrics.error_rate,
    first_token_p99: evidence.metrics.first_token_p99,
    response_time_p99: evidence.metrics.response_time_p99,
    time_per_token_p99: evidence.metrics.time_per_token_p99,
    max_error_rate: evidence.metrics.max_error_rate,
  };
  const { errors, firstTokenMs, responseMs, timePerTokenMs, streamsEnded, streamsLeft } = input.observations;
  const latencies = {
    first_token_p99: firstTokenMs,
    response_time_p99: responseMs,
    time_per_token_p99: timePerTokenMs,
  } as const;
  for (const metric of metrics) {
    const j =
      metric === 'error_rate'
        ? judgeErrorRate(ctx, errors, options.criteria.error_rate!, evidence.metrics[metric])
        : metric === 'max_error_rate'
          ? judgeMaxErrorRate(ctx, errors, options.criteria.max_error_rate!, evidence.metrics[metric])
          : judgeLatency(
              ctx,
              metric,
              latencies[metric],
              options.criteria[metric]!,
              evidence.metrics[metric],
              // A time per token is the worker's report: streams that ended well and reported none are not measured.
              metric === 'time_per_token_p99' && streamsEnded !== undefined
                ? { ended: streamsEnded, left: streamsLeft }
                : undefined,
            );
    judgements.push(j);
    updated[metric] = j.evidence;
  }

  const failed = judgements.filter((j) => j.decision.verdict === 'fail');
  const waiting = judgements.filter((j) => j.decision.verdict === 'not_yet');
  const isShort = ctx.canaryRequests < ctx.minRequests; // only decisive with every criterion switched off
  const verdict: JudgeVerdict = failed.length > 0 ? 'rollback' : waiting.length > 0 || isShort ? 'wait' : 'advance';
  const explain = (list: MetricJudgement[]): string => list.map((j) => j.explain()).join('; ');
  const next: CanaryEvidence = { step: evidence.step, stepOrdinal: evidence.stepOrdinal, metrics: updated };
  return new JudgeResult(
    verdict,
    judgements.map((j) => j.decision),
    next,
    () =>
      verdict === 'rollback'
        ? `step ${input.step + 1} (${input.canaryPercent} %): roll back: ${explain(failed)}`
        : verdict === 'advance'
          ? `step ${input.step + 1} (${input.canaryPercent} %): every criterion met${judgements.length > 0 ? `: ${explain(judgements)}` : ''}`
          : `step ${input.step + 1} (${input.canaryPercent} %): not yet: ${waiting.length > 0 ? explain(waiting) : `${ctx.canaryRequests} of ${ctx.minRequests} canary requests`}`,
  );
}
