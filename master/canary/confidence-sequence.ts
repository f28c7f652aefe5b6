import { logGamma } from './log-gamma.js';

// Time-uniform confidence sequences for a binomial rate, from Robbins' (1970)
// beta-binomial mixture martingale as presented by Howard, Ramdas, McAuliffe
// & Sekhon, "Time-uniform, nonparametric, nonasymptotic confidence sequences"
// (Ann. Statist. 2021; its beta-binomial mixture): for i.i.d. Bernoulli(p) outcomes,
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
// one, which tightens the bounds for error rates of a few percent by about
// ln π(p) ≈ 1 nat. (Counts at a known rate, for the p99s, use the one-sided
// mixtures of e-process.ts instead.)
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

// Solves logLikelihood(p) = target for p in [lo, hi], where logLikelihood is
// concave in p and crosses target exactly once there (rising when isRising).
// Newton's method, safeguarded by bisection whenever a step leaves the
// bracket, in a handful of steps; the result is rounded outward by 1e-12
// (down for a lower bound, up for an upper one).
const TOLERANCE = 1e-12;

function solve(counts: RateCounts, target: number, lo: number, hi: number, isRising: boolean): number {
  const { successes: x, trials: n } = counts;
  let p = 0.5 * (lo + hi);
  for (let i = 0; i < 200 && hi - lo > TOLERANCE; i++) {
    const excess = logLikelihood(x, n, p) - target;
    if (excess > 0 === isRising) hi = p;
    else lo = p;
    const next = p - excess / (x / p - (n - x) / (1 - p));
    if (Math.abs(next - p) < TOLERANCE) {
      p = next;
      break;
    }
    p = next > lo && next < hi ? next : 0.5 * (lo + hi);
  }
  return isRising ? Math.max(lo, p - TOLERANCE) : Math.min(hi, p + TOLERANCE);
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
