import t from 'tap';
import { CanaryOutcomes, TIME_PER_TOKEN_LEFT, TIME_PER_TOKEN_NOT_REPORTED } from '../../../master/canary/outcomes.js';

// SPEC §11 and an attacker probe: a request its client gave up on is no error (a few closed connections rolled any
// canary back), and a review of the first fix: a wait counted for the canary alone rolled back identical versions.
// Now its wait is its latency value on both versions alike (nginx's 499 time), and no request of the error rate.

t.test(
  'a request given up on: its wait is its latency on both versions, and no request of the error rate',
  async (t) => {
    const o = new CanaryOutcomes();
    o.canary.record(false, 100, NaN, 20);
    o.canary.recordWait(true, 5000);
    o.baseline.record(false, NaN, 300, NaN);
    o.baseline.recordWait(false, 7000);
    const obs = o.observations();
    t.same(obs.errors.canary, { requests: 1, errors: 0 }, 'the canary: one request, no error');
    t.same(obs.errors.baseline, { requests: 1, errors: 0 });
    t.equal(obs.firstTokenMs.canary.count, 2, 'the stream given up on is a first-token value');
    t.ok(obs.firstTokenMs.canary.quantile(1) >= 4900, 'of its wait');
    t.equal(obs.responseMs.baseline.count, 2, "and the baseline's answer given up on a response-time value");
    t.equal(
      obs.timePerTokenMs.canary.count,
      1,
      'the stream that ended well has a time per token; the one given up on none',
    );
    t.equal(obs.timePerTokenMs.baseline.count, 0);
    o.nextStep();
    t.equal(o.baselinePreviousSteps.responseMs.count, 2, "kept in the baseline's reference");
  },
);

t.test('streams that ended well are counted whether or not they reported a time per token', async (t) => {
  // "Not measured" is decided on them: a stream its client left (NaN) says nothing of what the version reports.
  const o = new CanaryOutcomes();
  o.canary.record(false, 100, NaN, 25);
  o.canary.record(false, 100, NaN, TIME_PER_TOKEN_NOT_REPORTED);
  o.canary.record(false, 100, NaN, NaN);
  const obs = o.observations();
  t.same(obs.streamsEnded, { baseline: 0, canary: 2, baselinePreviousSteps: 0 });
  t.equal(obs.timePerTokenMs.canary.count, 1);
});

t.test('streams their clients left after the first content are counted as left, per step', async (t) => {
  // The judge holds a canary whose clients left every stream rather than pass it for want of values (CI on a busy box).
  const o = new CanaryOutcomes();
  o.canary.record(false, 100, NaN, TIME_PER_TOKEN_LEFT);
  o.canary.record(false, 100, NaN, TIME_PER_TOKEN_LEFT);
  o.baseline.record(false, 100, NaN, TIME_PER_TOKEN_LEFT);
  o.canary.record(false, 100, NaN, 25);
  const obs = o.observations();
  t.same(obs.streamsLeft, { baseline: 1, canary: 2, baselinePreviousSteps: 0 });
  t.same(obs.streamsEnded, { baseline: 0, canary: 1, baselinePreviousSteps: 0 }, 'a left stream did not end well');
  t.equal(obs.timePerTokenMs.canary.count, 1, 'nor has it a time per token');
  t.same(obs.errors.canary, { requests: 3, errors: 0 }, 'it is a request, and no error');
  o.nextStep();
  t.same(o.observations().streamsLeft, { baseline: 0, canary: 0, baselinePreviousSteps: 1 }, "the baseline's kept");
});
