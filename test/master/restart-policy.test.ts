import t from 'tap';
import { nextRestartDelayMs, RESTART_POLICY } from '../../master/restart-policy.js';

// Crash restarts (STYLE §23): 100 ms doubling per crash in a row, capped at 10 s; past maxConsecutiveCrashes
// (10) the crash-loop delay (5 min), like Kubernetes' CrashLoopBackOff.

t.test('the first crash waits the initial delay, then it doubles up to the cap', async (t) => {
  t.same(
    [1, 2, 3, 4, 5, 6, 7, 8].map((crashes) => nextRestartDelayMs(crashes)),
    [100, 200, 400, 800, 1_600, 3_200, 6_400, 10_000],
  );
});

t.test('the crash loop starts after maxConsecutiveCrashes, not at it', async (t) => {
  t.equal(nextRestartDelayMs(RESTART_POLICY.maxConsecutiveCrashes), 10_000, 'the 10th crash: still the cap');
  t.equal(nextRestartDelayMs(RESTART_POLICY.maxConsecutiveCrashes + 1), 300_000, 'the 11th: the crash-loop delay');
  t.equal(nextRestartDelayMs(50), 300_000);
});

t.test('a policy passed in is the one applied (tests pass short delays)', async (t) => {
  const policy = {
    initialDelayMs: 5,
    maxDelayMs: 30,
    stableAfterMs: 1_000,
    maxConsecutiveCrashes: 3,
    crashLoopDelayMs: 70,
    signalSettleMs: 500,
  };
  t.same(
    [1, 2, 3, 4].map((crashes) => nextRestartDelayMs(crashes, policy)),
    [5, 10, 20, 70],
  );
  t.equal(nextRestartDelayMs(0, policy), 5, 'no crash counted yet: the initial delay');
});
