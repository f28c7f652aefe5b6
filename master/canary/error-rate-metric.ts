import { rateLowerBound, rateUpperBound } from './confidence-sequence.js';
import type { MetricContext, MetricEvidence, MetricJudgement, MetricVerdict } from './decision.js';
import { boundedLogFactors, logMixture } from './e-process.js';
import { advancePairedState, emptyPairedState, pairedLogFactors, type PairedState } from './paired-e-process.js';
import type { ResolvedErrorRateCriterion } from './judge-options.js';

// The error-rate judgement of one step: "canary rate ≤ maxRatio × baseline
// rate + marginAbs" (SPEC §11), where the baseline's rate is itself unknown.
//
// While the baseline serves part of the traffic, the test is the two-sample
// e-process of paired-e-process.ts: exact for any baseline rate without
// estimating it, and weighing both versions' noise together. Chosen over:
// - a conditional binomial test on how the errors split between the
//   versions: exact only for a pure ratio (marginAbs = 0) at a known split;
// - plugging in the baseline's rate with a conservative correction (the
//   upper end of its confidence sequence, Howard et al. 2021, and a union
//   bound): sound, but the canary must then beat maxRatio × an upper bound,
//   which takes most of the power when the gap is a few points — 4 % against
//   59 % for 5 % → 10 % errors in the same simulation;
// - universal inference (Wasserman, Ramdas & Balakrishnan, PNAS 2020) with
//   beta mixtures over both rates: sound and self-balancing, but it pays
//   ~½ ln n nats per rate and step, ~8 nats at 3000 requests per version,
//   against ln 13 ≈ 2.6 once for the grid.
// At a step where the canary has 100 % the baseline serves nothing, so that
// plug-in is what remains: the canary's rate is tested against maxRatio ×
// the upper end of the baseline's confidence sequence over all earlier
// steps + marginAbs (the baseline's half of the metric's alpha covers that
// sequence being wrong), assuming the baseline's rate has not changed.

export interface ErrorCounts {
  /** Requests that finished (answered, refused or failed). Integer ≥ 0. */
  requests: number;
  /** Of which errors: 5xx, refusals routed to the version, streams ended by an error event. */
  errors: number;
}

export interface ErrorObservations {
  /** The baseline's requests at this step. */
  baseline: ErrorCounts;
  /** The canary's requests at this step. */
  canary: ErrorCounts;
  /** The baseline's requests at all earlier steps of this canary (the reference when the canary has 100 %). */
  baselinePreviousSteps: ErrorCounts;
}

/** A rate for the judge's reasons: `7.14 %`, or `–` for none. */
export function percent(rate: number | null): string {
  return rate === null ? '–' : `${(100 * rate).toFixed(2)} %`;
}

export function judgeErrorRate(
  ctx: MetricContext,
  obs: ErrorObservations,
  criterion: ResolvedErrorRateCriterion,
  evidence: MetricEvidence,
): MetricJudgement {
  const { maxRatio, marginAbs } = criterion;
  const { canary } = obs;
  const isConcurrent = ctx.canaryShare < 1;
  const reference = isConcurrent ? obs.baseline : obs.baselinePreviousSteps;

  let paired: PairedState | null = null;
  let stepLog: number[];
  if (isConcurrent) {
    const previous = evidence.paired ?? emptyPairedState();
    if (canary.requests < previous.canaryTrials || reference.requests < previous.baselineTrials) {
      throw new RangeError('observations.errors: counts went down within a step');
    }
    const counts = {
      canaryTrials: canary.requests,
      canarySuccesses: canary.errors,
      baselineTrials: reference.requests,
      baselineSuccesses: reference.errors,
    };
    paired = advancePairedState(previous, counts, criterion, ctx.canaryShare / (1 - ctx.canaryShare));
    stepLog = pairedLogFactors(paired, criterion);
  } else {
    const baselineUpper = rateUpperBound({
      successes: reference.errors,
      trials: reference.requests,
      logThreshold: ctx.baselineLogThreshold,
    });
    stepLog = boundedLogFactors(canary.errors, canary.requests, maxRatio * baselineUpper + marginAbs);
  }
  const statistic = logMixture(evidence.carriedLog, stepLog);

  const canaryRate = canary.requests > 0 ? canary.errors / canary.requests : null;
  const baselineRate = reference.requests > 0 ? reference.errors / reference.requests : null;
  const limit = baselineRate === null ? null : maxRatio * baselineRate + marginAbs;
  let verdict: MetricVerdict = 'not_yet';
  let why: string;
  if (statistic >= ctx.canaryLogThreshold) {
    verdict = 'fail';
    why = 'worse than the limit';
  } else if (ctx.canaryRequests < ctx.minRequests) {
    why = ''; // the most frequent answer: formatted only if explained
  } else if (limit === null) {
    why = 'no baseline requests to compare with';
  } else if (canaryRate! > limit) {
    why = 'estimate above the limit';
  } else if (ctx.requireNonInferiority) {
    const canaryUpper = rateUpperBound({
      successes: canary.errors,
      trials: canary.requests,
      logThreshold: ctx.canaryLogThreshold,
    });
    const boundLimit =
      maxRatio *
        rateLowerBound({
          successes: reference.errors,
          trials: reference.requests,
          logThreshold: ctx.baselineLogThreshold,
        }) +
      marginAbs;
    const isShown = canaryUpper <= boundLimit;
    if (isShown) verdict = 'pass';
    why = `upper bound ${percent(canaryUpper)} ${isShown ? '' : 'not yet '}within ${percent(boundLimit)}`;
  } else {
    verdict = 'pass';
    why = 'within the limit';
  }
  const explain = (): string =>
    `error_rate: canary ${percent(canaryRate)} (${canary.errors}/${canary.requests}) vs baseline ${percent(baselineRate)} ` +
    `(${reference.errors}/${reference.requests}${isConcurrent ? '' : ', earlier steps'}), limit ${percent(limit)}, ` +
    `log e-value ${statistic.toFixed(2)} of ${ctx.canaryLogThreshold.toFixed(2)}: ` +
    (why || `${ctx.canaryRequests} of ${ctx.minRequests} canary requests`);

  return {
    decision: {
      step: ctx.step,
      metric: 'error_rate',
      baseline: { n: reference.requests, value: baselineRate },
      canary: { n: canary.requests, value: canaryRate },
      verdict,
      statistic,
    },
    evidence: { carriedLog: evidence.carriedLog, stepLog, paired },
    explain,
  };
}
