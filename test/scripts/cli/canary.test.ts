import t from 'tap';
import { formatCanary, parseDuration, parseSteps, type CanaryStatusBody } from '../../../scripts/cli/canary.js';

t.test('parseDuration and parseSteps', async (t) => {
  const durations: Array<[string, number | undefined]> = [
    ['60s', 60_000],
    ['500ms', 500],
    ['2m', 120_000],
    ['1h', 3_600_000],
    ['3', 3000],
    ['1.5s', 1500],
    ['soon', undefined],
    ['-1s', undefined],
    ['', undefined],
  ];
  for (const [text, want] of durations) t.equal(parseDuration(text), want, text);
  t.same(parseSteps('5,25,50,100'), [5, 25, 50, 100]);
  t.same(parseSteps('10, 100'), [10, 100]);
  t.equal(parseSteps('a,100'), undefined);
  t.equal(parseSteps(''), undefined, 'an empty --steps is malformed, not a step of 0');
  t.equal(parseSteps('5,,100'), undefined);
});

t.test('formatCanary: state, step, why, and the decisions as a table', async (t) => {
  const status: CanaryStatusBody = {
    version: 'v2',
    baseline: 'v1',
    state: 'rolled_back',
    step: 0,
    canaryPercent: 0,
    steps: [10, 50, 100],
    stepMs: 60_000,
    minRequests: 200,
    startedAt: '2026-12-01T12:00:00.000Z',
    endedAt: '2026-12-01T12:00:03.100Z',
    reason: 'step 1 (10 %): roll back: error rate 26.09 % (6/23) vs 0.00 %',
    observed: { baseline: { requests: 251, errors: 0 }, canary: { requests: 23, errors: 6 } },
    decisions: [
      {
        step: 0,
        metric: 'error_rate',
        baseline: { n: 251, value: 0 },
        canary: { n: 23, value: 0.2609 },
        verdict: 'fail',
        statistic: 7.91,
      },
      {
        step: 0,
        metric: 'response_time_p99',
        baseline: { n: 251, value: 3.2 },
        canary: { n: 17, value: null },
        verdict: 'not_yet',
        statistic: -0.5,
      },
    ],
  };
  const text = formatCanary(status);
  t.match(text, /^canary v2 \(baseline v1\): rolled back at step 1\/3 \(10 %\)/);
  t.match(text, /ended 2026-12-01T12:00:03\.100Z/);
  t.match(text, /why: step 1 \(10 %\): roll back/);
  t.match(text, /error_rate\s+251\s+0\.00 %\s+23\s+26\.09 %\s+fail\s+7\.91/);
  t.match(text, /response_time_p99\s+251\s+3\.2 ms\s+17\s+-\s+not_yet/);
  t.match(formatCanary({ ...status, decisions: [] }), /no judgement yet/);
  // A probe: after a promoted canary's pair was set back by a reload, the line still said "now at 100 %".
  t.match(text, /, it left the canary at 0 % of the pair\n/, 'an ended canary: what it left, not the weights now');
  t.match(
    formatCanary({ ...status, state: 'promoted', step: 2, canaryPercent: 100 }),
    /promoted at step 3\/3 \(100 %\), it left the canary at 100 % of the pair/,
  );
  for (const state of ['running', 'held'] as const)
    t.match(formatCanary({ ...status, state, endedAt: null, canaryPercent: 10 }), /, canary now at 10 % of the pair/);
  // A review: a canary its plan paused (pauseAt) was printed "paused (held by hand)"; its why says who paused it.
  const gate = formatCanary({
    ...status,
    state: 'held',
    paused: true,
    endedAt: null,
    canaryPercent: 10,
    reason: 'paused by its plan (pauseAt) at step 1 (10 %)',
  });
  t.match(gate, /^canary v2 \(baseline v1\): paused \(until resumed\) at step 1\/3 \(10 %\), canary now at 10 %/);
  t.notMatch(gate, /by hand/);
  t.notMatch(text, /judged by/, 'a gateway that does not say its settings: no line');
  const judged = formatCanary({
    ...status,
    maxStepMs: 600_000,
    onInconclusive: 'hold',
    alpha: 0.01,
    requireNonInferiority: false,
    criteria: {
      errorRate: { maxRatio: 1.2, marginAbs: 0.01 },
      firstTokenP99: false,
      responseTimeP99: { maxRatio: 1.5, marginMs: 20 },
    },
  });
  t.match(
    judged,
    /\njudged by: error rate ≤ 1\.2 × baseline \+ 1 %, first token p99 off, response time p99 ≤ 1\.5 × baseline \+ 20 ms; alpha 0\.01; no verdict in 600 s: hold\nwhy:/,
  );
});
