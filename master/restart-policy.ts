// Crash restarts (STYLE §23): capped exponential backoff, and a give-up after
// too many crashes in a row, like pm2's unstable-restart limit.

export const RESTART_POLICY = {
  initialDelayMs: 100,
  maxDelayMs: 10_000, // 10 s cap
  /** A worker that stayed ready this long resets the crash count. */
  stableAfterMs: 30_000,
  /** Crashes in a row after which the master stops restarting that version's workers. */
  maxConsecutiveCrashes: 10,
} as const;

/** Delay before restart number `crashes` (1-based): 100 ms, 200 ms, 400 ms, … capped at 10 s. */
export function nextRestartDelayMs(crashes: number): number {
  return Math.min(RESTART_POLICY.maxDelayMs, RESTART_POLICY.initialDelayMs * 2 ** Math.max(0, crashes - 1));
}
