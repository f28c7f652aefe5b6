// The e-processes behind the judge's rollbacks: nonnegative processes whose
// expectation stays ≤ 1 under the null at every stopping time, so by Ville's
// inequality (Ville 1939; Ramdas, Grünwald, Vovk & Shafer, "Game-theoretic
// statistics and safe anytime-valid inference", Statist. Sci. 2023)
// P(∃ n: E_n ≥ 1/α) ≤ α however often the judge looks. Both are mixtures of
// Wald's exponential likelihood ratios ("mixture SPRT", Wald 1945; Robbins
// 1970; Johari, Koomen, Pekelis & Walsh, "Always valid inference", Oper. Res.
// 2022) over a fixed grid of tilts λ_j = ln(odds ratio), with equal weights.
//
// A grid rather than a conjugate prior because each component must stay a
// valid factor when the null boundary changes from step to step (the
// baseline is re-measured at every step): component j's evidence is a sum
// over steps of ln-factors, each computed against that step's boundary, and
// the product over steps of factors with expectation ≤ 1 still has
// expectation ≤ 1 (steps start and end at stopping times). Averaging the
// components costs at most ln(J) = ln 13 ≈ 2.6 nats against the best one.

/** Odds ratios of the alternatives mixed: from 15 % worse than the null boundary to plainly broken. */
export const ODDS_RATIOS: readonly number[] = [1.15, 1.3, 1.5, 1.75, 2, 2.5, 3.2, 4.5, 7, 12, 25, 60, 200];
const TILTS = ODDS_RATIOS.map((r) => Math.log(r));
const EXCESS_ODDS = ODDS_RATIOS.map((r) => r - 1);
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
  const p0 = Math.min(1, Math.max(0, nullRate));
  const out = new Array<number>(COMPONENTS);
  for (let j = 0; j < COMPONENTS; j++) out[j] = TILTS[j]! * successes - trials * Math.log1p(p0 * EXCESS_ODDS[j]!);
  return out;
}

export interface PairedCounts {
  canaryTrials: number;
  canarySuccesses: number;
  baselineTrials: number;
  baselineSuccesses: number;
}

export interface PairedNull {
  /** Null: canary rate ≤ maxRatio · baseline rate + marginAbs. */
  maxRatio: number;
  marginAbs: number;
  /** The canary's share of the pair's traffic at this step, 0 < share < 1. Fixed for the step. */
  canaryShare: number;
}

// Baseline rate assumed when tuning each component's baseline weight μ (below): a typical error rate.
const NOMINAL_BASELINE_RATE = 0.02;
// Largest 1 − e^(−μ): a baseline error then costs at most ln 20 ≈ 3 nats, so a few baseline
// errors cannot wipe out a component that is accumulating evidence.
const MAX_BASELINE_TILT = 0.95;

/**
 * Two-sample factors, ln, per component, for the null
 * "p_c ≤ r·p_b + m" where the baseline's rate p_b is unknown.
 *
 * Component j is exp(λ·x_c − μ·x_b − C) with the compensator
 *   C = max over p ∈ [0, (1 − m)/r] of  n_c·ln(1 + (r·p + m)(e^λ − 1)) + n_b·ln(1 − p(1 − e^(−μ))).
 * For the true (p_c, p_b), exp(λ·x_c − n_c·ψ_c(λ) − μ·x_b − n_b·ψ_b(−μ)) is a
 * product of one factor of expectation 1 per request (ψ the Bernoulli
 * cumulant generating functions), whichever arm each request went to. Under
 * the null ψ_c(λ) ≤ ψ at rate r·p_b + m (λ > 0), so that product's exponent is
 * at least ours: C takes the worst baseline rate, which makes the nuisance
 * p_b harmless without estimating it (a profile over the nuisance, exact
 * rather than asymptotic). Both terms of C are concave in p, so the maximum
 * is where the derivative vanishes — a linear equation in p, solved in closed form.
 *
 * μ is chosen per component so that the baseline's errors cancel the
 * baseline-rate term, μ·n_b·p_b ≈ λ·n_c·r·p_b: 1 − e^(−μ) = ρ·r·(e^λ − 1) /
 * (1 + (r·p̄ + m)(e^λ − 1)) with ρ = share/(1 − share) the expected n_c/n_b
 * and p̄ a nominal baseline rate. This only tunes power; any fixed μ is valid,
 * which is why it depends on the configured share, not on the counts.
 */
export function pairedLogFactors(counts: PairedCounts, nul: PairedNull): number[] {
  const { canaryTrials: nc, canarySuccesses: xc, baselineTrials: nb, baselineSuccesses: xb } = counts;
  const { maxRatio: r, marginAbs: m } = nul;
  const rho = nul.canaryShare / (1 - nul.canaryShare);
  const pMax = (1 - m) / r;
  const out = new Array<number>(COMPONENTS);
  for (let j = 0; j < COMPONENTS; j++) {
    const a = EXCESS_ODDS[j]!;
    const b = Math.min(MAX_BASELINE_TILT, (rho * r * a) / (1 + (r * NOMINAL_BASELINE_RATE + m) * a));
    const mu = -Math.log1p(-b);
    let p = nb + nc > 0 ? (nc * r * a - nb * b * (1 + m * a)) / (r * a * b * (nb + nc)) : 0;
    p = Math.min(pMax, Math.max(0, p));
    const compensator = nc * Math.log1p((r * p + m) * a) + nb * Math.log1p(-p * b);
    out[j] = TILTS[j]! * xc - mu * xb - compensator;
  }
  return out;
}
