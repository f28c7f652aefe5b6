import { rateUpperBound } from './confidence-sequence.js';
import type { CanaryMetric, MetricContext, MetricEvidence, MetricJudgement, MetricVerdict } from './decision.js';
import { boundedLogFactors, countLowerBound, countUpperBound, logMixture } from './e-process.js';
import type { ResolvedLatencyCriterion } from './judge-options.js';
import type { LatencySketchView } from './sketch.js';

// The p99 judgement of one step (first-token time of streams, response time
// of the rest): "canary p99 ≤ maxRatio × baseline p99" (SPEC §11), tested by
// exceedances (issue 13 part 3). An optional marginMs is added to every limit
// below (maxRatio·Q + marginMs); the argument is the same, the threshold only
// moves up by a constant.
//
// Under the null, the canary's p99 is at most maxRatio·Q, Q the baseline's
// p99, so at most 1 % of canary requests take longer than maxRatio·Q and
// their count is binomial with a rate ≤ 1 %: the one-sample mixture SPRT of
// e-process.ts (boundedLogFactors) applies. Q is unknown, so the threshold
// is maxRatio·U with U an upper confidence bound of Q: if at least L of the
// baseline's requests took Q or longer, the L-th largest is ≥ Q, and a
// one-sided mixture SPRT on the baseline's count at rate 1 %
// (countLowerBound) says how large an L may be claimed at every n at once.
// While U ≥ Q (the baseline's half of the metric's alpha covers the rest),
// the threshold is ≥ maxRatio·Q, so the canary's count above it is ≤ its
// count above maxRatio·Q, and the e-value, increasing in that count, is ≤
// the one at the true threshold: a test supermartingale. The sketch rounds
// U up and the count down to bucket edges, both on the safe side.
//
// The price is data: there is no U until the baseline has ~860–1050
// requests of the kind at the step (alpha 0.01, 4 metrics) (ln(1/α)/0.01 and the mixture's cost),
// and the canary is flagged only when its tail is clearly beyond maxRatio·U,
// somewhat above maxRatio·Q. At a step where the canary has 100 % the
// reference is the baseline's sketch over all earlier steps, assuming its
// latency still holds.

/** The share of requests above a p99. */
const TAIL_RATE = 0.01;
const QUANTILE = 1 - TAIL_RATE;

export interface LatencyObservations {
  /** The baseline's values at this step. */
  baseline: LatencySketchView;
  /** The canary's values at this step. */
  canary: LatencySketchView;
  /** The baseline's values at all earlier steps (the reference when the canary has 100 %). */
  baselinePreviousSteps: LatencySketchView;
}

/** A count of streams per side of a step. */
export interface StreamCounts {
  baseline: number;
  canary: number;
  baselinePreviousSteps: number;
}

/** Below this many expected canary answers of a kind, none at all is chance (Poisson: e^-5 < 1 %), not a sign. */
const MIN_EXPECTED_COUNT = 5;

/** The canary answers of a kind the reference's mix predicts for the canary's requests at this step. */
function expectedCanaryCount(ctx: MetricContext, referenceCount: number): number {
  return ctx.referenceRequests > 0 ? (ctx.canaryRequests * referenceCount) / ctx.referenceRequests : 0;
}

function ms(value: number | null): string {
  return value === null ? '–' : `${value.toFixed(value < 10 ? 2 : 0)} ms`;
}

function orNull(value: number): number | null {
  return Number.isFinite(value) ? value : null;
}

export function judgeLatency(
  ctx: MetricContext,
  metric: Exclude<CanaryMetric, 'error_rate' | 'max_error_rate'>,
  obs: LatencyObservations,
  criterion: ResolvedLatencyCriterion,
  evidence: MetricEvidence,
  /**
   * time_per_token_p99: the streams each side ended well (not failed, not left by their client), and those their
   * clients left after the first content. A side whose streams ended well and reported no time per token does not
   * measure it (a worker build older than this one, answers of one content event): not judged there, rather than held
   * for ever. Streams their clients left count for nothing there: a canary so slow that every client gives up
   * mid-stream must not pass as "not measured" (a probe), nor as "no such canary requests" (it had them).
   */
  streams?: { ended: StreamCounts; left?: StreamCounts | undefined },
): MetricJudgement {
  const streamsEnded = streams?.ended;
  const canaryStreamsLeft = streams?.left?.canary ?? 0;
  // Its clients left most of its streams that had begun (five at least: fewer is users stopping answers): how fast it
  // streams is not known. A few short answers of one content event among them (no time per token) do not make it
  // "not measured" (a review: one such stream beside 19 left passed the step).
  const isMostlyLeft = canaryStreamsLeft >= MIN_EXPECTED_COUNT && canaryStreamsLeft > (streamsEnded?.canary ?? 0);
  const { maxRatio, marginMs } = criterion;
  const { canary } = obs;
  const isConcurrent = ctx.canaryShare < 1;
  const reference = isConcurrent ? obs.baseline : obs.baselinePreviousSteps;

  const tailCount = countLowerBound({
    trials: reference.count,
    rate: TAIL_RATE,
    logThreshold: ctx.baselineLogThreshold,
  });
  const thresholdMs =
    maxRatio * (tailCount > 0 ? reference.upperBoundOfKthLargest(tailCount) : Number.POSITIVE_INFINITY) + marginMs;
  const exceedances = Number.isFinite(thresholdMs) ? canary.countAbove(thresholdMs) : 0;
  const stepLog = boundedLogFactors(exceedances, canary.count, TAIL_RATE);
  const statistic = logMixture(evidence.carriedLog, stepLog);

  const canaryP99 = orNull(canary.quantile(QUANTILE));
  const baselineP99 = orNull(reference.quantile(QUANTILE));
  const limit = baselineP99 === null ? null : maxRatio * baselineP99 + marginMs;
  let verdict: MetricVerdict = 'not_yet';
  let why: string;
  if (statistic >= ctx.canaryLogThreshold) {
    verdict = 'fail';
    why = 'too many canary requests above the limit';
  } else if (ctx.canaryRequests < ctx.minRequests) {
    why = ''; // the most frequent answer: formatted only if explained
  } else if (canary.count === 0 && isMostlyLeft) {
    // It had such streams, whatever the baseline's mix says (a baseline whose streams report few, or none, let a canary
    // whose clients all gave up pass; a busy box in CI).
    why = `no such canary answers: its clients left ${canaryStreamsLeft} streams before their end`;
  } else if (streamsEnded !== undefined && canary.count === 0 && streamsEnded.canary > 0) {
    verdict = 'pass';
    why = `not measured: ${streamsEnded.canary} canary streams ended and none reported it`;
  } else if (
    streamsEnded !== undefined &&
    reference.count === 0 &&
    (isConcurrent ? streamsEnded.baseline : streamsEnded.baselinePreviousSteps) > 0
  ) {
    verdict = 'pass';
    why = 'not measured: the baseline’s streams reported none';
  } else if (canary.count === 0 && expectedCanaryCount(ctx, reference.count) < MIN_EXPECTED_COUNT) {
    // Nothing of this kind was served by the canary at this step, and the traffic mix expects (almost) none.
    verdict = 'pass';
    why = 'no such canary requests';
  } else if (canary.count === 0) {
    // The baseline answered this kind and the canary answered none: all its requests failed some other way (a
    // 4xx for every one, say: a mistyped model), which must not pass as "nothing to judge".
    why = `no such canary answers, where the traffic mix expects ${expectedCanaryCount(ctx, reference.count).toFixed(0)}`;
  } else if (limit === null) {
    why = 'no baseline requests to compare with';
  } else if (canaryP99! > limit) {
    why = 'estimate above the limit';
  } else if (ctx.requireNonInferiority) {
    // Mirror image: a lower bound of the baseline's p99, counts rounded up, and an upper bound
    // of the canary's rate above maxRatio × it, which must be under 1 %.
    const maxTail = countUpperBound({
      trials: reference.count,
      rate: TAIL_RATE,
      logThreshold: ctx.baselineLogThreshold,
    });
    const lowMs = maxRatio * reference.lowerBoundOfKthLargest(maxTail + 1) + marginMs;
    const upper = rateUpperBound({
      successes: canary.countPossiblyAbove(lowMs),
      trials: canary.count,
      logThreshold: ctx.canaryLogThreshold,
    });
    if (upper < TAIL_RATE) {
      verdict = 'pass';
      why = `at most ${(100 * upper).toFixed(2)} % above ${ms(lowMs)}`;
    } else {
      why = `up to ${(100 * upper).toFixed(2)} % may be above ${ms(lowMs)} (needs < 1 %)`;
    }
  } else {
    verdict = 'pass';
    why = 'within the limit';
  }
  const explain = (): string =>
    `${metric}: canary ${ms(canaryP99)} (n ${canary.count}) vs baseline ${ms(baselineP99)} ` +
    `(n ${reference.count}${isConcurrent ? '' : ', earlier steps'}), limit ${ms(limit)}, ` +
    `${exceedances} above ${Number.isFinite(thresholdMs) ? ms(thresholdMs) : '(no baseline bound yet)'}, ` +
    `log e-value ${statistic.toFixed(2)} of ${ctx.canaryLogThreshold.toFixed(2)}: ` +
    (why || `${ctx.canaryRequests} of ${ctx.minRequests} canary requests`);

  return {
    decision: {
      step: ctx.step,
      metric,
      baseline: { n: reference.count, value: baselineP99 },
      canary: { n: canary.count, value: canaryP99 },
      verdict,
      statistic,
    },
    evidence: { carriedLog: evidence.carriedLog, stepLog, paired: null },
    explain,
  };
}
