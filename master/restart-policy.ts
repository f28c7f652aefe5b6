// Crash restarts (STYLE §23): capped exponential backoff, and after too many
// crashes in a row a slow retry, like Kubernetes' CrashLoopBackOff (its cap,
// 5 minutes): a version whose upstream or environment was broken for a while
// comes back by itself, where a give-up (pm2's unstable-restart limit) kept
// it down until someone deployed, with /healthz still green.

export interface RestartPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** A worker that stayed ready this long resets the crash count. */
  readonly stableAfterMs: number;
  /** Crashes in a row after which the master restarts that version's workers only every crashLoopDelayMs. */
  readonly maxConsecutiveCrashes: number;
  readonly crashLoopDelayMs: number;
  /**
   * How long the master waits before it replaces a worker sent SIGTERM (crash-restart.ts replaceSignalled): a SIGTERM
   * sent to the whole process group reaches the master as well, whose own stop, begun meanwhile, makes it moot.
   */
  readonly signalSettleMs: number;
}

export const RESTART_POLICY: RestartPolicy = {
  initialDelayMs: 100,
  maxDelayMs: 10_000, // 10 s cap
  stableAfterMs: 30_000,
  maxConsecutiveCrashes: 10,
  crashLoopDelayMs: 300_000, // 5 min
  signalSettleMs: 500,
};

/**
 * Delay before restart number `crashes` (1-based): 100 ms, 200 ms, 400 ms, … capped at 10 s; past
 * maxConsecutiveCrashes (from the 11th crash in a row by default), crashLoopDelayMs.
 */
export function nextRestartDelayMs(crashes: number, policy: RestartPolicy = RESTART_POLICY): number {
  if (crashes > policy.maxConsecutiveCrashes) return policy.crashLoopDelayMs;
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, crashes - 1));
}
