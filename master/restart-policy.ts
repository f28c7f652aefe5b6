// Crash restarts (STYLE §23): capped exponential backoff, and a give-up after
// too many crashes in a row, like pm2's unstable-restart limit.

export interface RestartPolicy {
  readonly initialDelayMs: number;
  readonly maxDelayMs: number;
  /** A worker that stayed ready this long resets the crash count. */
  readonly stableAfterMs: number;
  /** Crashes in a row after which the master stops restarting that version's workers. */
  readonly maxConsecutiveCrashes: number;
}

export const RESTART_POLICY: RestartPolicy = {
  initialDelayMs: 100,
  maxDelayMs: 10_000, // 10 s cap
  stableAfterMs: 30_000,
  maxConsecutiveCrashes: 10,
};

/** Delay before restart number `crashes` (1-based): 100 ms, 200 ms, 400 ms, … capped at 10 s. */
export function nextRestartDelayMs(crashes: number, policy: RestartPolicy = RESTART_POLICY): number {
  return Math.min(policy.maxDelayMs, policy.initialDelayMs * 2 ** Math.max(0, crashes - 1));
}
