import { COMPONENTS, ODDS_RATIOS, TILTS } from './e-process.js';

// The two-sample e-process for error rates (issue 13 part 3): tests
// "p_c ≤ r·p_b + m" (canary rate at most maxRatio × the baseline's plus a
// margin) while the baseline's rate p_b is unknown, using both versions'
// requests of the step. Exact for every p_b, from counts only.
//
// Component j (odds ratio R = e^λ of the grid in e-process.ts) is the
// product over requests of one factor each: exp(λ·Y − ψ_c(λ)) for a canary
// request, exp(−μ·Z − ψ_b(−μ)) for a baseline one (Y, Z ∈ {0, 1} errors;
// ψ_c(λ) = ln(1 + p_c(e^λ − 1)), ψ_b(−μ) = ln(1 − p_b·B) with B = 1 − e^(−μ),
// the Bernoulli cumulant generating functions). Every factor has expectation
// 1, so the product is a test martingale, whichever version each request
// went to and however the tilt μ of the baseline's factors is chosen, as
// long as it is fixed before the requests it applies to (predictable). Its
// ln is λ·x_c − Σ μ·Z − n_c·ψ_c(λ) − Σ ln(1 − p_b·B); we cannot compute the
// last two terms (p_c, p_b unknown), so we subtract their largest value
// under the null instead:
//   C = max over p ∈ [0, (1 − m)/r] of  n_c·ln(1 + (r·p + m)(e^λ − 1)) + n_b·ln(1 − p·B̄)
// with B̄ the baseline requests' average B. Under the null ψ_c(λ) is at most
// its value at rate r·p_b + m (λ > 0), and by Jensen's inequality (ln(1 − pB)
// is concave in B) Σ ln(1 − p_b·B_i) ≤ n_b·ln(1 − p_b·B̄): so C is at least the
// true compensator and exp(λ·x_c − Σ μ·Z − C) is at most the test martingale.
// Taking the worst baseline rate makes the nuisance harmless without
// estimating it (a profile over p_b, exact rather than asymptotic). Both
// terms of C are concave in p, so the maximum is where the derivative
// vanishes: a linear equation, solved in closed form.
//
// Power needs the baseline's errors to cancel the baseline-rate term of C:
// μ·n_b·p_b ≈ λ·r·n_c·p_b, i.e. B ≈ ρ·r·(e^λ − 1)/(1 + (r·p̄ + m)(e^λ − 1)) with
// ρ = n_c/n_b. A fixed ρ (the configured share) is not enough: a realised
// share of 7 % or 13 % at a 10 % step leaves a term linear in n that takes
// all the power away. So each batch of requests between two judge() calls
// gets the B of the ratio realised before it (predictable: it depends on
// earlier counts only), and the state keeps Σ μ·Δx_b and Σ Δn_b·B.

export interface PairedCounts {
  canaryTrials: number;
  canarySuccesses: number;
  baselineTrials: number;
  baselineSuccesses: number;
}

export interface PairedNull {
  /** The null: canary rate ≤ maxRatio · baseline rate + marginAbs. */
  maxRatio: number;
  marginAbs: number;
}

/** What the e-process keeps during one step: the counts seen so far and two sums per component. Plain numbers. */
export interface PairedState extends PairedCounts {
  /** Per component: Σ over batches of μ_j · (baseline successes in the batch). */
  baselinePenalty: number[];
  /** Per component: Σ over batches of (baseline trials in the batch) · (1 − e^(−μ_j)). */
  baselineTiltedTrials: number[];
}

// Baseline rate assumed when tuning μ: a typical error rate (only power depends on it).
const NOMINAL_BASELINE_RATE = 0.02;
// Largest 1 − e^(−μ): a baseline error then costs at most ln 20 ≈ 3 nats, so a few baseline
// errors cannot wipe out a component that is accumulating evidence.
const MAX_BASELINE_TILT = 0.95;

export function emptyPairedState(): PairedState {
  return {
    canaryTrials: 0,
    canarySuccesses: 0,
    baselineTrials: 0,
    baselineSuccesses: 0,
    baselinePenalty: new Array<number>(COMPONENTS).fill(0),
    baselineTiltedTrials: new Array<number>(COMPONENTS).fill(0),
  };
}

/**
 * Folds in the requests since `state`: `counts` are the step's cumulative
 * counts, which never go down. `expectedRatio` (canary requests per baseline
 * request the weights should give) tunes the first batch of the step, before
 * any ratio has been seen. Returns a new state.
 */
export function advancePairedState(
  state: PairedState,
  counts: PairedCounts,
  nul: PairedNull,
  expectedRatio: number,
): PairedState {
  const newTrials = counts.baselineTrials - state.baselineTrials;
  const newSuccesses = counts.baselineSuccesses - state.baselineSuccesses;
  if (newTrials === 0 && counts.canaryTrials === state.canaryTrials) return state;
  const ratio =
    state.canaryTrials > 0 && state.baselineTrials > 0 ? state.canaryTrials / state.baselineTrials : expectedRatio;
  const tilts = baselineTilts(ratio, nul);
  const baselinePenalty = new Array<number>(COMPONENTS);
  const baselineTiltedTrials = new Array<number>(COMPONENTS);
  for (let j = 0; j < COMPONENTS; j++) {
    baselinePenalty[j] = state.baselinePenalty[j]! + tilts.mu[j]! * newSuccesses;
    baselineTiltedTrials[j] = state.baselineTiltedTrials[j]! + tilts.b[j]! * newTrials;
  }
  return {
    canaryTrials: counts.canaryTrials,
    canarySuccesses: counts.canarySuccesses,
    baselineTrials: counts.baselineTrials,
    baselineSuccesses: counts.baselineSuccesses,
    baselinePenalty,
    baselineTiltedTrials,
  };
}

// The ratio is rounded to a grid 2^(1/16) apart (±2 % of balance, immaterial for power) so that
// consecutive batches, whose ratios barely move, reuse the last tilts instead of 13 logarithms.
const RATIO_GRID = 16 / Math.LN2;
const lastTilts = {
  key: Number.NaN,
  maxRatio: Number.NaN,
  marginAbs: Number.NaN,
  b: new Float64Array(COMPONENTS),
  mu: new Float64Array(COMPONENTS),
};

function baselineTilts(ratio: number, nul: PairedNull): { b: Float64Array; mu: Float64Array } {
  const key = Math.round(Math.log(ratio) * RATIO_GRID);
  if (key !== lastTilts.key || nul.maxRatio !== lastTilts.maxRatio || nul.marginAbs !== lastTilts.marginAbs) {
    const rounded = Math.exp(key / RATIO_GRID);
    const { maxRatio: r, marginAbs: m } = nul;
    for (let j = 0; j < COMPONENTS; j++) {
      const a = ODDS_RATIOS[j]! - 1;
      lastTilts.b[j] = Math.min(MAX_BASELINE_TILT, (rounded * r * a) / (1 + (r * NOMINAL_BASELINE_RATE + m) * a));
      lastTilts.mu[j] = -Math.log1p(-lastTilts.b[j]!);
    }
    Object.assign(lastTilts, { key, maxRatio: r, marginAbs: m });
  }
  return lastTilts;
}

/** ln of each component's value for the step so far. */
export function pairedLogFactors(state: PairedState, nul: PairedNull): number[] {
  const { canaryTrials: nc, canarySuccesses: xc, baselineTrials: nb } = state;
  const { maxRatio: r, marginAbs: m } = nul;
  const pMax = (1 - m) / r;
  const out = new Array<number>(COMPONENTS);
  for (let j = 0; j < COMPONENTS; j++) {
    const a = ODDS_RATIOS[j]! - 1;
    const b = nb > 0 ? state.baselineTiltedTrials[j]! / nb : 0;
    // d/dp of C is 0 at p = (n_c·r·a − n_b·b·(1 + m·a)) / (r·a·b·(n_b + n_c)); with b = 0, C only grows with p.
    let p = b > 0 ? (nc * r * a - nb * b * (1 + m * a)) / (r * a * b * (nb + nc)) : pMax;
    p = Math.min(pMax, Math.max(0, p));
    const compensator = nc * Math.log1p((r * p + m) * a) + nb * Math.log1p(-p * b);
    out[j] = TILTS[j]! * xc - state.baselinePenalty[j]! - compensator;
  }
  return out;
}
