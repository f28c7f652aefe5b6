// The one-sample e-processes of the judge, and how its evidence is mixed and
// carried across steps. An e-process is a nonnegative process whose
// expectation stays ≤ 1 under the null at every stopping time, so by Ville's
// inequality (Ville 1939; Ramdas, Grünwald, Vovk & Shafer, "Game-theoretic
// statistics and safe anytime-valid inference", Statist. Sci. 2023)
// P(∃ n: E_n ≥ 1/α) ≤ α however often the judge looks. All of the judge's are
// mixtures of Wald's exponential likelihood ratios ("mixture SPRT": Wald
// 1945; Robbins 1970; Johari, Koomen, Pekelis & Walsh, "Always valid
// inference", Oper. Res. 2022) over one fixed grid of tilts
// λ_j = ln(odds ratio_j), with equal weights (the two-sample one is in
// paired-e-process.ts).
//
// A grid rather than a conjugate prior because each component must stay a
// valid factor when the null boundary changes from step to step (the
// baseline is re-measured at every step): component j's evidence is a sum
// over steps of ln-factors, each computed against that step's boundary, and
// a product of factors with expectation ≤ 1 over consecutive steps still has
// expectation ≤ 1 (steps start and end at stopping times). Averaging the
// components costs at most ln(J) = ln 13 ≈ 2.6 nats against the best one.

/** Odds ratios of the alternatives mixed: from 15 % worse than the null boundary to plainly broken. */
export const ODDS_RATIOS: readonly number[] = [1.15, 1.3, 1.5, 1.75, 2, 2.5, 3.2, 4.5, 7, 12, 25, 60, 200];
/** λ_j = ln(odds ratio_j). */
export const TILTS: readonly number[] = ODDS_RATIOS.map((r) => Math.log(r));
export const COMPONENTS = ODDS_RATIOS.length;

/** ln of the equally weighted mixture of components whose ln-values are carried[j] + step[j]. */
export function logMixture(carried: readonly number[], step: readonly number[]): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = 0; j < COMPONENTS; j++) max = Math.max(max, carried[j]! + step[j]!);
  if (max === Number.NEGATIVE_INFINITY) return max;
  let sum = 0;
  for (let j = 0; j < COMPONENTS; j++) sum += Math.exp(carried[j]! + step[j]! - max);
  return max + Math.log(sum / COMPONENTS);
}

/**
 * Weight of the evidence that starts at the k-th step judged (k = 1, 2, …):
 * 1/(k(k+1)), which sums to 1 over all k.
 */
export function logStartWeight(stepOrdinal: number): number {
  return -Math.log(stepOrdinal * (stepOrdinal + 1));
}

/**
 * Carries each component into the next step. Component j's carried value is
 * a mixture over the step s at which its evidence started, weighted
 * 1/(s(s+1)), of the product of its factors since s:
 *   W_j(k+1) = W_j(k) · F_j(k) + 1/((k+1)(k+2)).
 * Every term is a test supermartingale that is 1 until its start, so the
 * mixture is one too (the weights of steps not yet started are simply left
 * out, which only lowers it). Evidence accumulates across steps (the k = 1
 * term multiplies all of them, so a slightly worse canary is caught at a
 * later, larger step), yet a canary that only turns bad at a later step
 * is not held back by the clean steps before it (the term starting there
 * costs ln(k(k+1)) nats instead of the earlier steps' deficit).
 */
export function carryIntoNextStep(carried: readonly number[], step: readonly number[], nextOrdinal: number): number[] {
  const fresh = logStartWeight(nextOrdinal);
  const out = new Array<number>(COMPONENTS);
  for (let j = 0; j < COMPONENTS; j++) {
    const kept = carried[j]! + step[j]!;
    const max = Math.max(kept, fresh);
    out[j] = max + Math.log(Math.exp(kept - max) + Math.exp(fresh - max));
  }
  return out;
}

/**
 * One-sample factors, ln, per component: `successes` of `trials` tested
 * against "the success rate is ≤ nullRate". Component j is
 * exp(λ_j·x − n·ln(1 − p0 + p0·e^λ_j)), the likelihood ratio of
 * p1 = p0·R/(1 − p0 + p0·R) (R = e^λ_j) against p0; for any true rate
 * p ≤ p0 each trial multiplies it by a factor of expectation
 * 1 + (R − 1)(p − p0)/(1 − p0 + p0·R) ≤ 1 — a test supermartingale for the whole
 * composite null. It is decreasing in p0 and increasing in x, which is what
 * lets the judge plug in conservative values for both (a baseline upper
 * bound for p0, a rounded-down count for x).
 */
export function boundedLogFactors(successes: number, trials: number, nullRate: number): number[] {
  const cumulants = cumulantsAt(Math.min(1, Math.max(0, nullRate)), true);
  const out = new Array<number>(COMPONENTS);
  for (let j = 0; j < COMPONENTS; j++) out[j] = TILTS[j]! * successes - trials * cumulants[j]!;
  return out;
}

// ln(1 − p + p·R) per component, R the odds ratio (isUp) or its inverse: the Bernoulli cumulant
// generating function at the tilt. Remembered for the last rate asked, in each direction: the
// judge asks for the same few rates (1 % for the p99s) at every call.
const lastCumulants = {
  up: { rate: Number.NaN, values: new Float64Array(COMPONENTS) },
  down: { rate: Number.NaN, values: new Float64Array(COMPONENTS) },
};

function cumulantsAt(rate: number, isUp: boolean): Float64Array {
  const last = isUp ? lastCumulants.up : lastCumulants.down;
  if (last.rate !== rate) {
    for (let j = 0; j < COMPONENTS; j++)
      last.values[j] = Math.log1p(rate * ((isUp ? ODDS_RATIOS[j]! : 1 / ODDS_RATIOS[j]!) - 1));
    last.rate = rate;
  }
  return last.values;
}

export interface CountBoundInput {
  /** Trials observed so far. Integer ≥ 0. */
  trials: number;
  /** The hypothesised success rate, e.g. 0.01 for the share of requests above a p99. */
  rate: number;
  /** ln(1/α). */
  logThreshold: number;
}

/**
 * ln of the mixture, over the grid, of the one-sided likelihood ratios of a
 * count: tilted up (alternatives above `rate`, an e-process when the true
 * rate is ≤ rate) or down (below; when it is ≥ rate).
 */
export function logCountMixture(count: number, trials: number, rate: number, isUp: boolean): number {
  // Streaming log-sum-exp: no array, as the bounds call this a dozen times per judgement.
  const cumulants = cumulantsAt(rate, isUp);
  let max = Number.NEGATIVE_INFINITY;
  let sum = 0;
  for (let j = 0; j < COMPONENTS; j++) {
    const value = (isUp ? TILTS[j]! : -TILTS[j]!) * count - trials * cumulants[j]!;
    if (value > max) {
      sum = sum * Math.exp(max - value) + 1;
      max = value;
    } else {
      sum += Math.exp(value - max);
    }
  }
  return max + Math.log(sum / COMPONENTS);
}

/**
 * The smallest count of successes among `trials` that the one-sided mixture
 * SPRT for "rate ≥ `rate`" does not reject: with probability ≥ 1 − α the true
 * count stays ≥ this bound at every n at once, whatever the true rate ≥ rate
 * (each component's factor per trial has expectation
 * (1 − p + p/R)/(1 − rate + rate/R) ≤ 1; Ville). Used for the baseline's p99:
 * if at least L requests took the p99 or longer, the L-th largest value is an
 * upper confidence bound for it. 0: no bound yet. Compared with the two-sided
 * beta mixture of confidence-sequence.ts it spends nothing on rates above
 * `rate`: the bound is 5–15 % tighter, and the canary's threshold lower.
 */
export function countLowerBound(input: CountBoundInput): number {
  const { trials, rate, logThreshold } = input;
  // The mixture is at most its largest component, the one tilted furthest down.
  if (-trials * cumulantsAt(rate, false)[COMPONENTS - 1]! < logThreshold) return 0;
  if (logCountMixture(0, trials, rate, false) < logThreshold) return 0;
  let lo = 0; // rejected
  let hi = Math.ceil(trials * rate); // kept: every component's ln-factor is ≤ 0 there
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (logCountMixture(mid, trials, rate, false) < logThreshold) hi = mid;
    else lo = mid;
  }
  return hi;
}

/**
 * The largest count the mirror-image SPRT for "rate ≤ `rate`" does not
 * reject: with probability ≥ 1 − α the true count stays ≤ it at every n.
 * Used for a lower confidence bound of the baseline's p99 (requireNonInferiority).
 */
export function countUpperBound(input: CountBoundInput): number {
  const { trials, rate, logThreshold } = input;
  if (logCountMixture(trials, trials, rate, true) < logThreshold) return trials;
  let lo = Math.floor(trials * rate); // kept
  let hi = trials; // rejected
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (logCountMixture(mid, trials, rate, true) < logThreshold) lo = mid;
    else hi = mid;
  }
  return lo;
}
