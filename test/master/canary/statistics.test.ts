import t from 'tap';
import { logMixtureRatio, rateLowerBound, rateUpperBound } from '../../../master/canary/confidence-sequence.js';
import {
  boundedLogFactors,
  carryIntoNextStep,
  COMPONENTS,
  countLowerBound,
  countUpperBound,
  logCountMixture,
  logMixture,
  ODDS_RATIOS,
} from '../../../master/canary/e-process.js';
import {
  advancePairedState,
  emptyPairedState,
  pairedLogFactors,
  type PairedCounts,
} from '../../../master/canary/paired-e-process.js';
import { logGamma } from '../../../master/canary/log-gamma.js';
import { LatencySketch } from '../../../master/canary/sketch.js';
import {
  createCanaryEvidence,
  judge,
  resolveJudgeOptions,
  type CanaryEvidence,
  type ErrorCounts,
  type JudgeInput,
  type JudgeOptions,
} from '../../../master/canary/statistics.js';
import { mulberry32 } from '../../../scripts/bench/canary-simulation.js';

// Case tables for the pure pieces of the judge. The simulations (false alarms
// over 10,000 canaries, power) are in statistics-simulation.test.ts.

t.test('logGamma matches reference values', async (t) => {
  // Python math.lgamma
  const cases: Array<[x: number, expected: number]> = [
    [0.1, 2.2527126517342055],
    [0.5, 0.5723649429247004],
    [1, 0],
    [1.5, -0.12078223763524543],
    [2, 0],
    [10, 12.801827480081467],
    [100.5, 361.4355404677776],
    [1e6 + 0.5, 12815511.476902764],
  ];
  for (const [x, expected] of cases)
    t.ok(Math.abs(logGamma(x) - expected) <= 1e-12 * Math.max(1, Math.abs(expected)), `lnΓ(${x})`);
  t.ok(Number.isNaN(logGamma(0)) && Number.isNaN(logGamma(-1)), 'NaN outside x > 0');
});

t.test('rate bounds sit where the mixture ratio crosses ln(1/α)', async (t) => {
  const cases: Array<[successes: number, trials: number, logThreshold: number]> = [
    [0, 10, Math.log(100)],
    [1, 10, Math.log(100)],
    [5, 100, Math.log(1000)],
    [50, 1000, Math.log(20)],
    [999, 1000, Math.log(100)],
  ];
  for (const [successes, trials, logThreshold] of cases) {
    const counts = { successes, trials, logThreshold };
    const upper = rateUpperBound(counts);
    const lower = rateLowerBound(counts);
    const rate = successes / trials;
    t.ok(lower <= rate && rate <= upper, `${successes}/${trials}: ${lower} ≤ ${rate} ≤ ${upper}`);
    // Bisection to 1e-12 in the rate; ln E moves by up to 1/(1 − p) per unit of rate near 1.
    t.ok(
      Math.abs(logMixtureRatio(successes, trials, upper) - logThreshold) < 1e-4,
      `${successes}/${trials}: ln E at the upper bound is ln(1/α)`,
    );
    if (lower > 0)
      t.ok(
        Math.abs(logMixtureRatio(successes, trials, lower) - logThreshold) < 1e-4,
        `${successes}/${trials}: and at the lower`,
      );
    t.ok(logMixtureRatio(successes, trials, upper - 1e-6) < logThreshold, 'just inside is kept');
  }
  t.same(
    [
      rateUpperBound({ successes: 0, trials: 0, logThreshold: 5 }),
      rateLowerBound({ successes: 0, trials: 0, logThreshold: 5 }),
    ],
    [1, 0],
    'no data: [0, 1]',
  );
  t.equal(rateUpperBound({ successes: 7, trials: 7, logThreshold: 5 }), 1);
  t.equal(rateLowerBound({ successes: 0, trials: 7, logThreshold: 5 }), 0);
});

t.test('count bounds are the ends of the counts the one-sided tests keep', async (t) => {
  const cases: Array<[trials: number, logThreshold: number]> = [
    [500, Math.log(1000)],
    [1000, Math.log(1000)],
    [1200, Math.log(1000)],
    [3000, Math.log(1000)],
    [20_000, Math.log(5000)],
  ];
  for (const [trials, logThreshold] of cases) {
    const low = countLowerBound({ trials, rate: 0.01, logThreshold });
    const high = countUpperBound({ trials, rate: 0.01, logThreshold });
    const isKeptLow = (c: number): boolean => logCountMixture(c, trials, 0.01, false) < logThreshold;
    const isKeptHigh = (c: number): boolean => logCountMixture(c, trials, 0.01, true) < logThreshold;
    t.ok(low <= trials * 0.01 && high >= trials * 0.01, `n=${trials}: ${low} ≤ ${trials * 0.01} ≤ ${high}`);
    t.ok(isKeptLow(low) && (low === 0 || !isKeptLow(low - 1)), `n=${trials}: ${low} is the smallest kept count`);
    t.ok(isKeptHigh(high) && !isKeptHigh(high + 1), `n=${trials}: ${high} is the largest kept count`);
  }
  t.equal(
    countLowerBound({ trials: 700, rate: 0.01, logThreshold: Math.log(1000) }),
    0,
    'too few trials for any bound on a p99',
  );
  t.equal(
    countUpperBound({ trials: 3, rate: 0.01, logThreshold: Math.log(1000) }),
    2,
    '3 of 3 would be too many for 1 %',
  );
});

t.test('the count bounds hold at every n at once (≥ 1 − α)', async (t) => {
  // 500 sequences of 3000 trials at exactly 1 %, checked every 20 trials, α = 0.1 each side.
  // A count below the lower bound is one the downward test rejects (previous test), so check that.
  const random = mulberry32(12);
  const logThreshold = Math.log(10);
  let below = 0;
  let above = 0;
  for (let run = 0; run < 500; run++) {
    let count = 0;
    let isBelow = false;
    let isAbove = false;
    for (let n = 1; n <= 3000; n++) {
      if (random() < 0.01) count++;
      if (n % 20 !== 0) continue;
      isBelow ||= logCountMixture(count, n, 0.01, false) >= logThreshold;
      isAbove ||= logCountMixture(count, n, 0.01, true) >= logThreshold;
    }
    if (isBelow) below++;
    if (isAbove) above++;
  }
  const slack = 3 * Math.sqrt(0.09 / 500);
  t.ok(below / 500 <= 0.1 + slack, `${below} of 500 went below the lower bound`);
  t.ok(above / 500 <= 0.1 + slack, `${above} of 500 went above the upper bound`);
});

t.test('the confidence sequence covers the true rate at every n at once (≥ 1 − α)', async (t) => {
  // 1000 sequences of 1000 trials, checked after every trial, α = 0.1.
  const random = mulberry32(11);
  const logThreshold = Math.log(10);
  let escaped = 0;
  for (let run = 0; run < 1000; run++) {
    let successes = 0;
    for (let n = 1; n <= 1000; n++) {
      if (random() < 0.03) successes++;
      if (logMixtureRatio(successes, n, 0.03) >= logThreshold) {
        escaped++;
        break;
      }
    }
  }
  // Ville bounds the rate by α = 0.1; 3 standard errors of Monte Carlo slack.
  t.ok(escaped / 1000 <= 0.1 + 3 * Math.sqrt(0.09 / 1000), `${escaped} of 1000 ever left the sequence`);
});

/** ln P(k) of a binomial(n, p), for exact expectations by enumeration. */
function binomialLogPmf(n: number, p: number): number[] {
  const logPmf: number[] = [];
  for (let k = 0; k <= n; k++) {
    logPmf.push(
      logGamma(n + 1) -
        logGamma(k + 1) -
        logGamma(n - k + 1) +
        (k > 0 ? k * Math.log(p) : 0) +
        (n - k > 0 ? (n - k) * Math.log1p(-p) : 0),
    );
  }
  return logPmf;
}

t.test('one-sample factors have expectation ≤ 1 under the whole null (exact)', async (t) => {
  for (const [n, p0] of [
    [30, 0.01],
    [30, 0.07],
    [200, 0.01],
  ] as const) {
    for (const p of [0, p0 / 2, p0]) {
      const logPmf = binomialLogPmf(n, p);
      const expectation = new Array<number>(COMPONENTS).fill(0);
      for (let k = 0; k <= n; k++) {
        const f = boundedLogFactors(k, n, p0);
        for (let j = 0; j < COMPONENTS; j++) expectation[j]! += Math.exp(logPmf[k]! + f[j]!);
      }
      t.ok(Math.max(...expectation) <= 1 + 1e-9, `n=${n} p0=${p0} p=${p}: max E = ${Math.max(...expectation)}`);
    }
  }
  t.same(boundedLogFactors(0, 0, 0.05), new Array(COMPONENTS).fill(0), 'no trials: factor 1');
});

/**
 * The step's two-sample factors after one batch of `counts`, tuned for `ratio` canary requests per baseline request.
 */
function pairedOnce(counts: PairedCounts, ratio: number): number[] {
  const nul = { maxRatio: 1.2, marginAbs: 0.01 };
  return pairedLogFactors(advancePairedState(emptyPairedState(), counts, nul, ratio), nul);
}

t.test('two-sample factors have expectation ≤ 1 on the null boundary p_c = r·p_b + m (exact, one batch)', async (t) => {
  const r = 1.2;
  const m = 0.01;
  for (const [nc, nb, ratio] of [
    [20, 180, 1 / 9],
    [50, 50, 1],
    [40, 10, 1],
    [30, 30, 1 / 9],
    [10, 90, 1],
  ] as const) {
    for (const pb of [0, 0.01, 0.05, 0.3, 0.9]) {
      const pc = Math.min(1, r * pb + m);
      const logPmfC = binomialLogPmf(nc, pc);
      const logPmfB = binomialLogPmf(nb, pb);
      const expectation = new Array<number>(COMPONENTS).fill(0);
      for (let xc = 0; xc <= nc; xc++) {
        for (let xb = 0; xb <= nb; xb++) {
          const logWeight = logPmfC[xc]! + logPmfB[xb]!;
          if (logWeight < -700) continue; // impossible or negligible (also skips −∞ · 0)
          const f = pairedOnce(
            { canaryTrials: nc, canarySuccesses: xc, baselineTrials: nb, baselineSuccesses: xb },
            ratio,
          );
          for (let j = 0; j < COMPONENTS; j++) expectation[j]! += Math.exp(logWeight + f[j]!);
        }
      }
      const worst = Math.max(...expectation);
      if (!(worst <= 1 + 1e-9)) t.fail(`n_c=${nc} n_b=${nb} p_b=${pb}: E = ${worst}`);
    }
  }
  t.pass('every component, 5 sample sizes and tunings × 5 baseline rates, some tuned for the wrong ratio');
});

t.test(
  'two-sample e-process, judged every 10 requests with the tilt following the realised ratio: false alarms ≤ α',
  async (t) => {
    // On the null boundary, where it is hardest; α = 0.2 so that a broken bound would show in 200 runs.
    const nul = { maxRatio: 1.2, marginAbs: 0.01 };
    const random = mulberry32(13);
    const zero = new Array<number>(COMPONENTS).fill(0);
    for (const [pb, share] of [
      [0.05, 0.1],
      [0.01, 0.5],
    ] as const) {
      const pc = 1.2 * pb + 0.01;
      let alarms = 0;
      for (let run = 0; run < 200; run++) {
        let state = emptyPairedState();
        const counts = { canaryTrials: 0, canarySuccesses: 0, baselineTrials: 0, baselineSuccesses: 0 };
        for (let i = 1; i <= 1500; i++) {
          if (random() < share) {
            counts.canaryTrials++;
            if (random() < pc) counts.canarySuccesses++;
          } else {
            counts.baselineTrials++;
            if (random() < pb) counts.baselineSuccesses++;
          }
          if (i % 10 !== 0) continue;
          state = advancePairedState(state, counts, nul, share / (1 - share));
          if (logMixture(zero, pairedLogFactors(state, nul)) >= Math.log(1 / 0.2)) {
            alarms++;
            break;
          }
        }
      }
      t.ok(alarms / 200 <= 0.2 + 3 * Math.sqrt(0.16 / 200), `p_b=${pb}, share ${share}: ${alarms} of 200`);
    }
  },
);

t.test('two-sample factors grow with canary errors and shrink with baseline errors', async (t) => {
  const at = (xc: number, xb: number): number =>
    logMixture(
      new Array(COMPONENTS).fill(0),
      pairedOnce({ canaryTrials: 100, canarySuccesses: xc, baselineTrials: 900, baselineSuccesses: xb }, 1 / 9),
    );
  t.ok(at(20, 45) > at(10, 45) && at(10, 45) > at(5, 45), 'more canary errors: more evidence');
  t.ok(at(10, 90) < at(10, 45), 'more baseline errors: less evidence');
  t.ok(at(5, 45) < 0, 'as good as the baseline: evidence below 1');
  t.ok(at(30, 9) > Math.log(600), '30 % vs 1 %: rejected at the default threshold');
});

t.test('the baseline tilt follows the realised share, not the configured one', async (t) => {
  // A 10 % step where the canary really gets 5 %: 10 % errors vs 5 %, in batches of 200 requests.
  const nul = { maxRatio: 1.2, marginAbs: 0.01 };
  let state = emptyPairedState();
  for (let batch = 1; batch <= 200; batch++) {
    const counts = {
      canaryTrials: 10 * batch,
      canarySuccesses: batch,
      baselineTrials: 190 * batch,
      baselineSuccesses: 9.5 * batch,
    };
    state = advancePairedState(
      state,
      { ...counts, baselineSuccesses: Math.round(counts.baselineSuccesses) },
      nul,
      1 / 9,
    );
  }
  const adaptive = logMixture(new Array(COMPONENTS).fill(0), pairedLogFactors(state, nul));
  const fixed = logMixture(
    new Array(COMPONENTS).fill(0),
    pairedOnce({ canaryTrials: 2000, canarySuccesses: 200, baselineTrials: 38_000, baselineSuccesses: 1900 }, 1 / 9),
  );
  t.ok(adaptive > Math.log(600), `adapted: log e-value ${adaptive.toFixed(1)} rejects`);
  t.ok(fixed < 0, `tuned for the configured 10 %: ${fixed.toFixed(1)}, nothing`);
  t.equal(advancePairedState(state, state, nul, 1 / 9), state, 'nothing new: the same state');
});

t.test('carrying into the next step mixes in a fresh start', async (t) => {
  const zero = new Array<number>(COMPONENTS).fill(0);
  const low = new Array<number>(COMPONENTS).fill(-50);
  const carried = carryIntoNextStep(low, zero, 2);
  t.ok(
    carried.every((v) => Math.abs(v - Math.log(1 / 6)) < 1e-9),
    'a step that went badly for the alternative does not sink the next one below 1/(k(k+1))',
  );
  const kept = carryIntoNextStep(zero, new Array<number>(COMPONENTS).fill(3), 2);
  t.ok(
    kept.every((v) => Math.abs(v - Math.log(Math.exp(3) + 1 / 6)) < 1e-9),
    'evidence carries over',
  );
  t.equal(ODDS_RATIOS.length, COMPONENTS);
});

// ---- judge() ----

function sketchOf(values: readonly number[]): LatencySketch {
  const s = new LatencySketch();
  for (const v of values) s.record(v);
  return s;
}

/** n values spread evenly over [lo, hi]. */
function spread(n: number, lo: number, hi: number): number[] {
  return Array.from({ length: n }, (_, i) => lo + ((hi - lo) * (i + 0.5)) / n);
}

interface Case {
  step?: number;
  canaryPercent?: number;
  baseline?: ErrorCounts;
  canary?: ErrorCounts;
  previous?: ErrorCounts;
  baselineFirstToken?: number[];
  canaryFirstToken?: number[];
  previousFirstToken?: number[];
  baselineResponse?: number[];
  canaryResponse?: number[];
  baselinePerToken?: number[];
  canaryPerToken?: number[];
  previousPerToken?: number[];
  streamsEnded?: { baseline: number; canary: number; baselinePreviousSteps: number };
  streamsLeft?: { baseline: number; canary: number; baselinePreviousSteps: number };
  evidence?: CanaryEvidence;
  options?: JudgeOptions;
}

function makeInput(c: Case): JudgeInput {
  const none = { requests: 0, errors: 0 };
  return {
    step: c.step ?? 0,
    canaryPercent: c.canaryPercent ?? 10,
    evidence: c.evidence ?? createCanaryEvidence(),
    options: resolveJudgeOptions(c.options),
    observations: {
      errors: { baseline: c.baseline ?? none, canary: c.canary ?? none, baselinePreviousSteps: c.previous ?? none },
      firstTokenMs: {
        baseline: sketchOf(c.baselineFirstToken ?? []),
        canary: sketchOf(c.canaryFirstToken ?? []),
        baselinePreviousSteps: sketchOf(c.previousFirstToken ?? []),
      },
      responseMs: {
        baseline: sketchOf(c.baselineResponse ?? []),
        canary: sketchOf(c.canaryResponse ?? []),
        baselinePreviousSteps: sketchOf([]),
      },
      timePerTokenMs: {
        baseline: sketchOf(c.baselinePerToken ?? []),
        canary: sketchOf(c.canaryPerToken ?? []),
        baselinePreviousSteps: sketchOf(c.previousPerToken ?? []),
      },
      ...(c.streamsEnded === undefined ? {} : { streamsEnded: c.streamsEnded }),
      ...(c.streamsLeft === undefined ? {} : { streamsLeft: c.streamsLeft }),
    },
  };
}

const clean40: Case = {
  baseline: { requests: 360, errors: 4 },
  canary: { requests: 40, errors: 0 },
  baselineFirstToken: spread(180, 100, 200),
  canaryFirstToken: spread(20, 100, 190),
  baselineResponse: spread(180, 1000, 3000),
  canaryResponse: spread(20, 1000, 2900),
  options: { minRequests: 40 },
};

t.test('verdicts', async (t) => {
  const cases: Array<[name: string, c: Case, verdict: string, verdicts: string[], reason: RegExp]> = [
    [
      'no traffic at all: not yet, never a verdict',
      {},
      'wait',
      ['not_yet', 'not_yet', 'not_yet', 'not_yet'],
      /0 of 200 canary requests/,
    ],
    [
      'a clean step with 40 requests advances',
      clean40,
      'advance',
      ['pass', 'pass', 'pass', 'pass'],
      /every criterion met/,
    ],
    [
      '39 requests: not yet',
      { ...clean40, canary: { requests: 39, errors: 0 } },
      'wait',
      ['not_yet', 'not_yet', 'not_yet', 'not_yet'],
      /39 of 40/,
    ],
    [
      'error estimate above the limit, test not sure: wait',
      { ...clean40, canary: { requests: 40, errors: 1 } },
      'wait',
      ['not_yet', 'pass', 'pass', 'pass'],
      /estimate above the limit/,
    ],
    [
      'plainly broken: 10 errors in the first 20 canary requests',
      { ...clean40, canary: { requests: 20, errors: 10 }, baseline: { requests: 180, errors: 2 } },
      'rollback',
      ['fail', 'not_yet', 'not_yet', 'not_yet'],
      /roll back: error_rate.*worse than the limit/,
    ],
    [
      'no canary latency sample where the mix expects 20 of each: none of its requests succeeded (all 4xx): wait',
      { ...clean40, canaryFirstToken: [], canaryResponse: [] },
      'wait',
      ['pass', 'not_yet', 'not_yet', 'pass'],
      /first_token_p99: .*no such canary answers, where the traffic mix expects 20/,
    ],
    [
      'no canary latency sample of a kind the mix expects fewer than 5 of: nothing to hold it on',
      { ...clean40, baselineFirstToken: spread(30, 100, 200), canaryFirstToken: [] },
      'advance',
      ['pass', 'pass', 'pass', 'pass'],
      /first_token_p99: .*no such canary requests/,
    ],
    [
      'first token p99 estimate above 1.2 × the baseline: wait',
      { ...clean40, canaryFirstToken: [...spread(18, 100, 190), 400, 400] },
      'wait',
      ['pass', 'not_yet', 'pass', 'pass'],
      /first_token_p99.*estimate above the limit/,
    ],
    [
      'the same, with a 250 ms margin: within 1.2 × the baseline (198 ms) + 250 ms, advance',
      {
        ...clean40,
        canaryFirstToken: [...spread(18, 100, 190), 400, 400],
        options: { minRequests: 40, criteria: { firstTokenP99: { marginMs: 250 } } },
      },
      'advance',
      ['pass', 'pass', 'pass', 'pass'],
      /first_token_p99: .*limit 487 ms/,
    ],
    [
      'first token 400 ms slower, baseline with enough streams for a bound: rollback on latency',
      {
        ...clean40,
        baselineFirstToken: spread(1800, 100, 200),
        canaryFirstToken: spread(20, 500, 600),
        baseline: { requests: 3600, errors: 36 },
      },
      'rollback',
      ['pass', 'fail', 'pass', 'pass'],
      /first_token_p99.*too many canary requests above the limit/,
    ],
    [
      'the same canary while the baseline has too few streams for a bound: not yet',
      { ...clean40, canaryFirstToken: spread(20, 500, 600) },
      'wait',
      ['pass', 'not_yet', 'pass', 'pass'],
      /no baseline bound yet/,
    ],
    [
      'at 100 %, the baseline of earlier steps is the reference',
      {
        ...clean40,
        canaryPercent: 100,
        baseline: { requests: 0, errors: 0 },
        previous: { requests: 5000, errors: 50 },
        baselineFirstToken: [],
        previousFirstToken: spread(500, 100, 200),
        baselineResponse: [],
        canaryResponse: [],
      },
      'advance',
      ['pass', 'pass', 'pass', 'pass'],
      /earlier steps/,
    ],
    [
      'at 100 % with no earlier baseline: nothing to compare with',
      {
        ...clean40,
        canaryPercent: 100,
        baseline: { requests: 0, errors: 0 },
        baselineFirstToken: [],
        baselineResponse: [],
      },
      'wait',
      ['not_yet', 'not_yet', 'not_yet', 'pass'],
      /no baseline requests to compare with/,
    ],
    [
      'time per token p99 estimate above 1.2 × the baseline (the same first token, a slower stream): wait',
      { ...clean40, baselinePerToken: spread(180, 20, 30), canaryPerToken: [...spread(18, 20, 30), 240, 240] },
      'wait',
      ['pass', 'pass', 'pass', 'not_yet'],
      /time_per_token_p99.*estimate above the limit/,
    ],
    [
      'the canary’s streams ended well and report no time per token (an older worker build): not measured, not held',
      {
        ...clean40,
        baselinePerToken: spread(180, 20, 30),
        streamsEnded: { baseline: 180, canary: 20, baselinePreviousSteps: 0 },
      },
      'advance',
      ['pass', 'pass', 'pass', 'pass'],
      /time_per_token_p99: .*not measured: 20 canary streams ended and none reported it/,
    ],
    [
      'nor the baseline’s',
      {
        ...clean40,
        canaryPerToken: spread(20, 20, 30),
        streamsEnded: { baseline: 180, canary: 20, baselinePreviousSteps: 0 },
      },
      'advance',
      ['pass', 'pass', 'pass', 'pass'],
      /time_per_token_p99: .*not measured: the baseline’s streams reported none/,
    ],
    [
      'every canary stream left by its client mid-stream (a model too slow to wait for): not yet, never "not measured"',
      {
        ...clean40,
        baselinePerToken: spread(180, 20, 30),
        streamsEnded: { baseline: 180, canary: 0, baselinePreviousSteps: 0 },
      },
      'wait',
      ['pass', 'pass', 'pass', 'not_yet'],
      /time_per_token_p99: .*no such canary answers, where the traffic mix expects/,
    ],
    [
      'every canary stream left mid-stream, the baseline’s streams reporting none: not yet, never "not measured"',
      {
        ...clean40,
        streamsEnded: { baseline: 180, canary: 0, baselinePreviousSteps: 0 },
        streamsLeft: { baseline: 0, canary: 20, baselinePreviousSteps: 0 },
      },
      'wait',
      ['pass', 'pass', 'pass', 'not_yet'],
      /time_per_token_p99: .*no such canary answers: its clients left 20 streams before their end/,
    ],
    [
      // CI on a busy box: a baseline whose streams (five tokens written at once) mostly came as one content event
      // reported 7 times per token in 400 requests, and a canary whose clients all left was promoted.
      'at 100 %, every canary stream left, the earlier baseline reporting few: not yet, never "no such canary requests"',
      {
        ...clean40,
        canaryPercent: 100,
        canary: { requests: 8, errors: 0 },
        baseline: { requests: 0, errors: 0 },
        previous: { requests: 400, errors: 0 },
        baselineFirstToken: [],
        previousFirstToken: spread(400, 100, 200),
        canaryFirstToken: spread(8, 100, 150),
        baselineResponse: [],
        canaryResponse: [],
        previousPerToken: spread(7, 0.2, 0.3),
        streamsEnded: { baseline: 0, canary: 0, baselinePreviousSteps: 400 },
        streamsLeft: { baseline: 0, canary: 8, baselinePreviousSteps: 0 },
        options: { minRequests: 5 },
      },
      'wait',
      ['pass', 'pass', 'pass', 'not_yet'],
      /time_per_token_p99: .*no such canary answers: its clients left 8 streams/,
    ],
    [
      // A review: one short answer (one content event, no time per token) beside 19 streams left passed the step.
      'most canary streams left, one ended well with none: not yet, never "not measured"',
      {
        ...clean40,
        baselinePerToken: spread(180, 20, 30),
        streamsEnded: { baseline: 180, canary: 1, baselinePreviousSteps: 0 },
        streamsLeft: { baseline: 0, canary: 19, baselinePreviousSteps: 0 },
      },
      'wait',
      ['pass', 'pass', 'pass', 'not_yet'],
      /time_per_token_p99: .*no such canary answers: its clients left 19 streams before their end/,
    ],
    [
      'a version that reports none, a few of its streams left by users: "not measured" as before',
      {
        ...clean40,
        baselinePerToken: spread(180, 20, 30),
        streamsEnded: { baseline: 180, canary: 20, baselinePreviousSteps: 0 },
        streamsLeft: { baseline: 0, canary: 6, baselinePreviousSteps: 0 },
      },
      'advance',
      ['pass', 'pass', 'pass', 'pass'],
      /time_per_token_p99: .*not measured: 20 canary streams ended and none reported it/,
    ],
    [
      'a few canary streams left, none ended, a mix that expects none: "no such canary requests" as before',
      {
        ...clean40,
        baselinePerToken: spread(3, 20, 30),
        streamsEnded: { baseline: 3, canary: 0, baselinePreviousSteps: 0 },
        streamsLeft: { baseline: 0, canary: 4, baselinePreviousSteps: 0 },
      },
      'advance',
      ['pass', 'pass', 'pass', 'pass'],
      /time_per_token_p99: .*no such canary requests/,
    ],
    [
      'every stream 8× slower per token, baseline with enough streams for a bound: rollback on time per token',
      {
        ...clean40,
        baseline: { requests: 3600, errors: 36 },
        baselinePerToken: spread(1800, 20, 30),
        canaryPerToken: spread(20, 160, 240),
      },
      'rollback',
      ['pass', 'pass', 'pass', 'fail'],
      /roll back: time_per_token_p99.*too many canary requests above the limit/,
    ],
  ];
  for (const [name, c, verdict, verdicts, reason] of cases) {
    const result = judge(makeInput(c));
    t.equal(result.verdict, verdict, `${name}: verdict`);
    t.same(
      result.decisions.map((d) => d.verdict),
      verdicts,
      `${name}: per metric`,
    );
    t.match(result.reason, reason, `${name}: reason`);
  }
});

t.test('a tiny alpha, down to the smallest double, still rolls a plainly broken canary back', async (t) => {
  // A probe: an alpha below ~1e-308 made the thresholds ln(2M/α) Infinity, and nothing ever rolled back.
  for (const alpha of [0.01, 1e-12, 1e-320, Number.MIN_VALUE]) {
    const result = judge(
      makeInput({
        ...clean40,
        baseline: { requests: 18_000, errors: 180 },
        canary: { requests: 2000, errors: 2000 },
        options: { minRequests: 40, alpha },
      }),
    );
    t.equal(result.verdict, 'rollback', `alpha ${alpha}: ${result.reason}`);
  }
});

t.test('an absolute gate on the error rate (criteria.maxErrorRate), off by default', async (t) => {
  // A probe: a canary failing 17 % beat a baseline failing 25 % (every criterion is relative). Flagger's
  // thresholdRange.max, an Argo Rollouts successCondition: the canary must also stay under a rate of its own.
  const options: JudgeOptions = { minRequests: 40, criteria: { maxErrorRate: 0.1 } };
  const worse = judge(
    makeInput({
      ...clean40,
      options,
      baseline: { requests: 400, errors: 100 },
      canary: { requests: 600, errors: 102 },
    }),
  );
  t.equal(worse.verdict, 'rollback', worse.reason);
  t.same(
    worse.decisions.map((d) => [d.metric, d.verdict]),
    [
      ['error_rate', 'pass'],
      ['first_token_p99', 'pass'],
      ['response_time_p99', 'pass'],
      ['time_per_token_p99', 'pass'],
      ['max_error_rate', 'fail'],
    ],
    'better than its baseline, over its own limit',
  );
  t.match(worse.reason, /max_error_rate: canary 17\.00 % \(102\/600\), limit 10\.00 % whatever the baseline's/);
  const under = judge(makeInput({ ...clean40, options, canary: { requests: 40, errors: 2 } }));
  t.same([under.verdict, under.decisions.at(-1)!.verdict], ['wait', 'pass'], '5 %: within (the relative test waits)');
  const unsure = judge(makeInput({ ...clean40, options, canary: { requests: 40, errors: 5 } }));
  t.match([unsure.decisions.at(-1)!.verdict, unsure.reason], ['not_yet', /max_error_rate: .*estimate above the limit/]);
  t.equal(resolveJudgeOptions().criteria.max_error_rate, null, 'off by default');
  for (const bad of [0, 1, 1.5, -0.1, Number.NaN])
    t.throws(() => resolveJudgeOptions({ criteria: { maxErrorRate: bad } }), {
      message: /criteria.maxErrorRate: must be > 0 and < 1/,
    });
});

t.test('decisions carry the numbers of SPEC §11', async (t) => {
  const result = judge(makeInput({ ...clean40, step: 2 }));
  const [errors, firstToken] = result.decisions;
  t.match(errors, {
    step: 2,
    metric: 'error_rate',
    baseline: { n: 360, value: 4 / 360 },
    canary: { n: 40, value: 0 },
    verdict: 'pass',
  });
  t.equal(firstToken!.metric, 'first_token_p99');
  t.equal(firstToken!.baseline.n, 180);
  t.ok(Math.abs(firstToken!.baseline.value! - 199) < 3, 'baseline p99 in ms');
  t.ok(
    result.decisions.every((d) => Number.isFinite(d.statistic)),
    'statistic: a log e-value',
  );
  const json = JSON.parse(JSON.stringify(result)) as { reason: string; verdict: string };
  t.match(json, { verdict: 'advance', reason: /every criterion met/ }, 'JSON includes the reason');
});

t.test('switching criteria off', async (t) => {
  const noLatency = judge(
    makeInput({
      ...clean40,
      options: {
        minRequests: 40,
        criteria: { firstTokenP99: false, responseTimeP99: false, timePerTokenP99: false },
      },
    }),
  );
  t.same(
    noLatency.decisions.map((d) => d.metric),
    ['error_rate'],
  );
  t.match(noLatency.reason, /error_rate.*of 5\.30/, 'one metric: rejects at ln(2/0.01) = 5.30');
  const nothing = judge(
    makeInput({
      ...clean40,
      options: {
        minRequests: 40,
        criteria: { errorRate: false, firstTokenP99: false, responseTimeP99: false, timePerTokenP99: false },
      },
    }),
  );
  t.same([nothing.verdict, nothing.decisions], ['advance', []], 'no criteria: advance after minRequests');
  const short = judge(
    makeInput({
      ...clean40,
      canary: { requests: 3, errors: 0 },
      options: { criteria: { errorRate: false, firstTokenP99: false, responseTimeP99: false, timePerTokenP99: false } },
    }),
  );
  t.match([short.verdict, short.reason], ['wait', /3 of 200 canary requests/]);
});

t.test('requireNonInferiority waits for an upper bound within the limit', async (t) => {
  const options: JudgeOptions = {
    minRequests: 40,
    requireNonInferiority: true,
    criteria: { firstTokenP99: false, responseTimeP99: false, timePerTokenP99: false },
  };
  const small = judge(makeInput({ ...clean40, options }));
  t.match([small.verdict, small.reason], ['wait', /upper bound .* not yet within/], '40 clean requests prove little');
  const large = judge(
    makeInput({
      ...clean40,
      options,
      baseline: { requests: 20_000, errors: 200 },
      canary: { requests: 2000, errors: 10 },
    }),
  );
  t.match([large.verdict, large.reason], ['advance', /upper bound .* within/], '0.5 % of 2000 against a 2.2 % limit');

  const latency: JudgeOptions = {
    minRequests: 40,
    requireNonInferiority: true,
    criteria: { errorRate: false, responseTimeP99: false, timePerTokenP99: false },
  };
  const few = judge(makeInput({ ...clean40, options: latency }));
  t.match([few.verdict, few.reason], ['wait', /may be above/]);
  const many = judge(
    makeInput({
      ...clean40,
      options: latency,
      baselineFirstToken: spread(20_000, 100, 200),
      canaryFirstToken: spread(3000, 100, 180),
    }),
  );
  t.match(
    [many.verdict, many.reason],
    ['advance', /at most .* above/],
    'no canary value above 1.2 × a lower bound of the baseline p99',
  );
});

t.test('evidence accumulates across steps', async (t) => {
  // A canary at 10 % errors against a 5 % baseline (limit 7 %): not enough at one step, enough over three.
  const step = (index: number, evidence: CanaryEvidence) =>
    judge(
      makeInput({
        step: index,
        canaryPercent: 50,
        evidence,
        baseline: { requests: 1500, errors: 75 },
        canary: { requests: 1500, errors: 150 },
        options: { criteria: { firstTokenP99: false, responseTimeP99: false, timePerTokenP99: false } },
      }),
    );
  const first = step(0, createCanaryEvidence());
  t.equal(first.verdict, 'wait', 'one step: not sure yet');
  t.equal(first.evidence.stepOrdinal, 1);
  const second = step(1, first.evidence);
  t.equal(second.evidence.stepOrdinal, 2);
  t.ok(second.decisions[0]!.statistic > first.decisions[0]!.statistic, 'more evidence after the second step');
  const third = step(2, second.evidence);
  t.equal(second.verdict, 'wait', 'two steps: not yet');
  t.equal(third.verdict, 'rollback', 'caught at the third');
  t.same(step(0, first.evidence).evidence, first.evidence, 'the same call twice: the same evidence (pure)');
});

t.test('bad input is a programming error', async (t) => {
  const later = judge(makeInput({ step: 3 })).evidence;
  const counted = judge(makeInput({ ...clean40 })).evidence;
  t.throws(() => judge(makeInput({ ...clean40, canary: { requests: 30, errors: 0 }, evidence: counted })), {
    name: 'RangeError',
    message: /counts went down within a step/,
  });
  t.throws(() => judge(makeInput({ step: 2, evidence: later })), {
    name: 'RangeError',
    message: /went down from 3 to 2/,
  });
  t.throws(() => judge(makeInput({ canaryPercent: 0, canary: { requests: 1, errors: 2 } })), {
    name: 'RangeError',
    message: /canaryPercent: .*; observations.errors.canary: /,
  });
  t.throws(
    () =>
      resolveJudgeOptions({
        alpha: 0,
        minRequests: 1.5,
        criteria: {
          errorRate: { maxRatio: 0.5, marginAbs: -1 },
          firstTokenP99: { maxRatio: Number.NaN },
          responseTimeP99: { marginMs: -5 },
          timePerTokenP99: { maxRatio: 0.9 },
        },
      }),
    {
      name: 'RangeError',
      message:
        /alpha: .*; minRequests: .*; criteria.errorRate.maxRatio: .*; criteria.errorRate.marginAbs: .*; criteria.firstTokenP99.maxRatio: .*; criteria.responseTimeP99.marginMs: must be a number ≥ 0; criteria.timePerTokenP99.maxRatio: must be a number ≥ 1/,
    },
  );
  t.same(resolveJudgeOptions(), {
    alpha: 0.01,
    minRequests: 200,
    requireNonInferiority: false,
    criteria: {
      error_rate: { maxRatio: 1.2, marginAbs: 0.01 },
      first_token_p99: { maxRatio: 1.2, marginMs: 0 },
      response_time_p99: { maxRatio: 1.2, marginMs: 0 },
      time_per_token_p99: { maxRatio: 1.2, marginMs: 0 },
      max_error_rate: null,
    },
  });
});

t.test('at the limit is within it, and margins apply to the tests as to the estimates', async (t) => {
  const errorsOnly: JudgeOptions = {
    minRequests: 40,
    criteria: { firstTokenP99: false, responseTimeP99: false, timePerTokenP99: false },
  };
  // Baseline 0 %: the limit is 1.2 × 0 + 1 point, and 2 errors in 200 are exactly 1 %.
  const atLimit = judge(
    makeInput({ baseline: { requests: 200, errors: 0 }, canary: { requests: 200, errors: 2 }, options: errorsOnly }),
  );
  t.equal(atLimit.verdict, 'advance', atLimit.reason);
  const atMax = judge(
    makeInput({
      baseline: { requests: 200, errors: 10 },
      canary: { requests: 200, errors: 10 },
      options: { ...errorsOnly, criteria: { ...errorsOnly.criteria, maxErrorRate: 0.05 } },
    }),
  );
  t.same(
    atMax.decisions.map((d) => [d.metric, d.verdict]),
    [
      ['error_rate', 'pass'],
      ['max_error_rate', 'pass'],
    ],
    '5 % errors within a 5 % maxErrorRate',
  );
  // maxRatio 1: an equal canary's p99 is the baseline's, and passes.
  const same = spread(180, 1000, 3000);
  const equalP99 = judge(
    makeInput({
      baseline: { requests: 180, errors: 0 },
      canary: { requests: 180, errors: 0 },
      baselineResponse: same,
      canaryResponse: same,
      options: {
        minRequests: 40,
        criteria: { errorRate: false, firstTokenP99: false, timePerTokenP99: false, responseTimeP99: { maxRatio: 1 } },
      },
    }),
  );
  t.equal(equalP99.verdict, 'advance', equalP99.reason);
  // marginMs: a canary 15 ms slower everywhere is within maxRatio 1 + 20 ms, however many requests show it.
  const slower = judge(
    makeInput({
      baseline: { requests: 3000, errors: 0 },
      canary: { requests: 3000, errors: 0 },
      baselineResponse: spread(3000, 100, 200),
      canaryResponse: spread(3000, 115, 215),
      options: {
        minRequests: 40,
        criteria: {
          errorRate: false,
          firstTokenP99: false,
          timePerTokenP99: false,
          responseTimeP99: { maxRatio: 1, marginMs: 20 },
        },
      },
    }),
  );
  t.equal(slower.verdict, 'advance', slower.reason);
  // The step where the canary has 100 %: the baseline's earlier steps are the reference, marginAbs applies too.
  const lastStep = judge(
    makeInput({
      step: 1,
      canaryPercent: 100,
      previous: { requests: 20_000, errors: 0 },
      canary: { requests: 20_000, errors: 160 },
      options: errorsOnly,
    }),
  );
  t.equal(lastStep.verdict, 'advance', `0.8 % against 0 % + 1 point: ${lastStep.reason}`);
});

t.test('at 100 %, a canary with no answer of a kind its baseline answered before is not judged "none"', async (t) => {
  // The traffic mix of the earlier steps expects ~150 streams in 300 requests: none answered (every one a 4xx, say).
  const result = judge(
    makeInput({
      step: 1,
      canaryPercent: 100,
      previous: { requests: 2000, errors: 0 },
      previousFirstToken: spread(1000, 100, 200),
      canary: { requests: 300, errors: 0 },
      options: { minRequests: 40, criteria: { errorRate: false, responseTimeP99: false, timePerTokenP99: false } },
    }),
  );
  t.equal(result.verdict, 'wait');
  t.match(result.reason, /first_token_p99: .*no such canary answers, where the traffic mix expects 150/);
});

t.test('a batch of canary requests alone (no new baseline request) still counts', async (t) => {
  // Low traffic at a 10 % step: between two calls only the canary may have served. Its errors count at once.
  const first = makeInput({ ...clean40, canary: { requests: 20, errors: 0 }, baseline: { requests: 180, errors: 2 } });
  const before = judge(first);
  t.equal(before.verdict, 'wait');
  const after = judge({
    ...first,
    evidence: before.evidence,
    observations: {
      ...first.observations,
      errors: { ...first.observations.errors, canary: { requests: 40, errors: 20 } },
    },
  });
  t.equal(after.verdict, 'rollback', after.reason);
  t.match(after.evidence.metrics.error_rate.paired, { canaryTrials: 40, canarySuccesses: 20, baselineTrials: 180 });
});
