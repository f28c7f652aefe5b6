import { rateUpperBound } from './confidence-sequence.js';
import type { MetricContext, MetricEvidence, MetricJudgement, MetricVerdict } from './decision.js';
import { boundedLogFactors, logMixture } from './e-process.js';
import { percent, type ErrorObservations } from './error-rate-metric.js';
import type { ResolvedMaxErrorRateCriterion } from './judge-options.js';

// An absolute gate on the canary's error rate, whatever the baseline's (Flagger's `thresholdRange.max`, an Argo
// Rollouts `successCondition`): "canary rate ≤ max". Off unless asked (criteria.maxErrorRate): SPEC §11 judges
// against the baseline, and a canary failing 17 % beat a baseline failing 25 % (a probe).
//
// The test is the one-sample mixture SPRT of e-process.ts on the canary's errors at null rate `max`
// (boundedLogFactors): for any true rate ≤ max each request multiplies every component by a factor of expectation
// ≤ 1, a test supermartingale, so alpha holds however often it is looked at; evidence carries across steps as the
// other metrics' does. The baseline is not needed, so it judges alike at a step where the canary has 100 %.

export function judgeMaxErrorRate(
  ctx: MetricContext,
  obs: ErrorObservations,
  criterion: ResolvedMaxErrorRateCriterion,
  evidence: MetricEvidence,
): MetricJudgement {
  const { max } = criterion;
  const { canary } = obs;
  const reference = ctx.canaryShare < 1 ? obs.baseline : obs.baselinePreviousSteps;
  const stepLog = boundedLogFactors(canary.errors, canary.requests, max);
  const statistic = logMixture(evidence.carriedLog, stepLog);
  const canaryRate = canary.requests > 0 ? canary.errors / canary.requests : null;

  let verdict: MetricVerdict = 'not_yet';
  let why: string;
  if (statistic >= ctx.canaryLogThreshold) {
    verdict = 'fail';
    why = 'above the limit';
  } else if (ctx.canaryRequests < ctx.minRequests) {
    why = '';
  } else if (canaryRate! > max) {
    why = 'estimate above the limit';
  } else if (ctx.requireNonInferiority) {
    const upper = rateUpperBound({
      successes: canary.errors,
      trials: canary.requests,
      logThreshold: ctx.canaryLogThreshold,
    });
    if (upper <= max) verdict = 'pass';
    why = `upper bound ${percent(upper)} ${upper <= max ? '' : 'not yet '}within ${percent(max)}`;
  } else {
    verdict = 'pass';
    why = 'within the limit';
  }
  const explain = (): string =>
    `max_error_rate: canary ${percent(canaryRate)} (${canary.errors}/${canary.requests}), limit ${percent(max)} ` +
    `whatever the baseline's, log e-value ${statistic.toFixed(2)} of ${ctx.canaryLogThreshold.toFixed(2)}: ` +
    (why || `${ctx.canaryRequests} of ${ctx.minRequests} canary requests`);

  return {
    decision: {
      step: ctx.step,
      metric: 'max_error_rate',
      // The baseline's rate, for the reader: the gate itself does not use it.
      baseline: { n: reference.requests, value: reference.requests > 0 ? reference.errors / reference.requests : null },
      canary: { n: canary.requests, value: canaryRate },
      verdict,
      statistic,
    },
    evidence: { carriedLog: evidence.carriedLog, stepLog, paired: null },
    explain,
  };
}
