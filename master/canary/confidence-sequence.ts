import { logGamma } from './log-gamma.js';

// Time-uniform confidence sequences for a binomial rate, from Robbins' (1970)
// beta-binomial mixture martingale as presented by Howard, Ramdas, McAuliffe
// & Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences"
// (Ann. Statist. 2021, §3.2 and Prop. 6): for i.i.d. Bernoulli(p) outcomes,
//
//   E_n(p) = ∫ q^x (1−q)^(n−x) Beta(q; ½, ½) dq  /  p^x (1−p)^(n−x)
//
// (x successes in n trials) is a nonnegative martingale with E_0 = 1 under p,
// so by Ville's inequality P(∃n: E_n(p) ≥ 1/α) ≤ α. The set
// {p : ln E_n(p) < ln(1/α)} is therefore a confidence sequence: it holds the
// true p at every n simultaneously with probability ≥ 1 − α, however often it
// is looked at and whenever the looking stops. It depends on the counts only.
//
// The Beta(½, ½) (Jeffreys) mixing prior puts more mass near 0 than a uniform
// one, which tightens the bounds for rates of a few percent (error rates,
// the 1 % tail above a p99) by about ln π(p) ≈ 1 nat.
//
// Callers pass `logThreshold` = ln(1/α).

const LOG_BETA_HALF_HALF = Math.log(Math.PI); // ln B(½, ½)

function logLikelihood(successes: number, trials: number, rate: number): number {
  // 0 · ln 0 = 0: a rate of 0 or 1 is not impossible when no outcome contradicts it.
  const failures = trials - successes;
  return (successes > 0 ? successes * Math.log(rate) : 0) + (failures > 0 ? failures * Math.log1p(-rate) : 0);
}

function logMixtureLikelihood(successes: number, trials: number): number {
  return logGamma(successes + 0.5) + logGamma(trials - successes + 0.5) - logGamma(trials + 1) - LOG_BETA_HALF_HALF;
}

/** ln E_n(rate): the log mixture likelihood ratio of `successes` in `trials` against the point rate. */
export function logMixtureRatio(successes: number, trials: number, rate: number): number {
  return logMixtureLikelihood(successes, trials) - logLikelihood(successes, trials, rate);
}

export interface RateCounts {
  /** Outcomes counted (errors, exceedances). Integer, 0 ≤ successes ≤ trials. */
  successes: number;
  /** Trials observed so far. Integer ≥ 0. */
  trials: number;
  /** ln(1/α) of the confidence sequence. */
  logThreshold: number;
}

// Solves logLikelihood(p) = target on [lo, hi], where logLikelihood is concave in p and target is
// crossed exactly once in the interval; `isRising` says whether logLikelihood − target goes from
// negative to positive on [lo, hi]. Bisection: 60 halvings reach 1e-18, cheap next to logGamma.
function solve(counts: RateCounts, target: number, lo: number, hi: number, isRising: boolean): number {
  for (let i = 0; i < 60 && hi - lo > 1e-12; i++) {
    const mid = 0.5 * (lo + hi);
    const isAbove = logLikelihood(counts.successes, counts.trials, mid) > target;
    if (isAbove === isRising) hi = mid;
    else lo = mid;
  }
  return isRising ? lo : hi;
}

/**
 * Upper end of the confidence sequence for the rate: with probability ≥ 1 − α
 * it stays above the true rate at every n. 1 when there are no trials.
 */
export function rateUpperBound(counts: RateCounts): number {
  const { successes, trials } = counts;
  if (trials === 0 || successes >= trials) return 1;
  // Outside the sequence ⇔ logLikelihood(p) ≤ logMixtureLikelihood − logThreshold.
  const target = logMixtureLikelihood(successes, trials) - counts.logThreshold;
  // Rounded outward (towards 1): the bisection returns its upper bracket.
  return solve(counts, target, successes / trials, 1, false);
}

/** Lower end of the confidence sequence for the rate. 0 when there are no trials. */
export function rateLowerBound(counts: RateCounts): number {
  const { successes, trials } = counts;
  if (trials === 0 || successes <= 0) return 0;
  const target = logMixtureLikelihood(successes, trials) - counts.logThreshold;
  return solve(counts, target, 0, successes / trials, true);
}

export interface CountBoundInput {
  /** Trials observed so far. Integer ≥ 0. */
  trials: number;
  /** The hypothesised rate, e.g. 0.01 for the share of requests above a p99. */
  rate: number;
  /** ln(1/α) of the confidence sequence. */
  logThreshold: number;
}

/**
 * The smallest count of successes the sequence still allows among `trials`
 * when the success rate is at least `rate`: with probability ≥ 1 − α the
 * actual count is ≥ this bound at every n at once. A composite null is fine
 * here: for counts below trials·rate, ln E_n(p) only grows as p moves above
 * `rate` (the likelihood falls away from its peak at count/trials), so the
 * bound computed at `rate` holds for every p ≥ rate.
 * Used for the baseline's p99: if at least L requests exceed it, the L-th
 * largest value is an upper confidence bound for it. 0 means "no bound yet".
 */
export function countLowerBound(input: CountBoundInput): number {
  const { trials, rate, logThreshold } = input;
  // ln E is convex in the count and falls towards trials·rate: the counts kept form an interval.
  let hi = Math.floor(trials * rate); // kept: ln E there is ≤ 0 < logThreshold
  if (logMixtureRatio(0, trials, rate) < logThreshold) return 0;
  let lo = 0; // rejected
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (logMixtureRatio(mid, trials, rate) < logThreshold) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * The largest count the sequence still allows when the success rate is at
 * most `rate` (the mirror image of countLowerBound): with probability ≥ 1 − α
 * the actual count is ≤ this bound at every n. Used for a lower confidence
 * bound of the baseline's p99 (requireNonInferiority).
 */
export function countUpperBound(input: CountBoundInput): number {
  const { trials, rate, logThreshold } = input;
  let lo = Math.ceil(trials * rate); // kept
  if (logMixtureRatio(trials, trials, rate) < logThreshold) return trials;
  let hi = trials; // rejected
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (logMixtureRatio(mid, trials, rate) < logThreshold) lo = mid;
    else hi = mid;
  }
  return lo;
}
