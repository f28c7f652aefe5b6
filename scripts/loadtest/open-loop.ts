// The pacing of an open-loop load (canary): request i is due at i / rate s, whatever the earlier ones are doing.

/**
 * Requests one turn of the event loop starts at most. All that were due were started in one synchronous loop:
 * behind schedule (`--rate 1e9`, or a slow box), a turn had millions to start, took longer than the time it caught
 * up, and the process ran at 100 % CPU for minutes without handling SIGTERM. 500 a turn is 250,000/s at the 2 ms
 * pace, above the bound on --rate (args.ts MAX_RATE); a run the box cannot keep up with starts fewer than asked
 * (its achieved req/s says so) and still answers a signal within one turn.
 */
export const MAX_STARTS_PER_TURN = 500;

export interface OpenLoopFacts {
  /** Since the load started, ms. */
  elapsedMs: number;
  /** Requests per second asked for. */
  rate: number;
  /** Requests started so far. */
  sent: number;
}

/** How many requests to start in this turn: those due by now, at most MAX_STARTS_PER_TURN. */
export function startsDue(facts: OpenLoopFacts): number {
  const due = Math.floor((facts.elapsedMs / 1000) * facts.rate);
  return Math.max(0, Math.min(MAX_STARTS_PER_TURN, due - facts.sent));
}
