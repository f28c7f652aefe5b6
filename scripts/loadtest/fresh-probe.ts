import { setMaxListeners } from 'node:events';
import { join } from 'node:path';
import { Recorder, type Percentiles } from './histogram.js';
import { waitForMessage } from './ipc-wait.js';
import { ROOT } from './paths.js';
import { probe } from './probe.js';
import { forkTracked, stopTracked } from './processes.js';

// Fresh connections during a flood (issue 10 target 4): the load's own
// keep-alive connections already sit in the master's accept backlog and event
// loop; a NEW client must first get its connection accepted. One request on a
// new connection every `everyMs`, while the load runs; their latency per status.

export interface FreshProbeOptions {
  url: string;
  /** Pause between probe starts, ms. Default 50 (20 fresh connections per second). */
  everyMs?: number;
  /** Bound on one probe, ms. Default 10 000 (autocannon's own timeout). */
  timeoutMs?: number;
  signal: AbortSignal;
}

export interface FreshProbeResult {
  /** Per HTTP status ("0": no answer within the bound), and per status and error code ("503:queue_full"). */
  byStatus: Record<string, Percentiles>;
  count: number;
}

export interface FreshProber {
  /** Stops starting probes, waits for those in flight, returns the figures. */
  stop(): Promise<FreshProbeResult>;
}

export function startFreshProbes(options: FreshProbeOptions): FreshProber {
  setMaxListeners(0, options.signal); // each probe in flight listens on it
  const byStatus = new Map<string, Recorder>();
  const record = (key: string, ms: number): void => {
    let rec = byStatus.get(key);
    if (rec === undefined) byStatus.set(key, (rec = new Recorder()));
    rec.record(ms);
  };
  const inFlight = new Set<Promise<void>>();
  const fire = (): void => {
    const p = probe(options.url, { timeoutMs: options.timeoutMs ?? 10_000, signal: options.signal }).then((r) => {
      record(String(r.status), r.ms);
      if (r.code !== undefined) record(`${r.status}:${r.code}`, r.ms);
      inFlight.delete(p);
    });
    inFlight.add(p);
  };
  const timer = setInterval(fire, options.everyMs ?? 50);
  return {
    async stop() {
      clearInterval(timer);
      await Promise.all(inFlight);
      const out: Record<string, Percentiles> = {};
      let count = 0;
      for (const [key, rec] of [...byStatus].sort((a, b) => (a[0] < b[0] ? -1 : 1))) {
        out[key] = rec.percentiles();
        if (!key.includes(':')) count += rec.count;
      }
      return { byStatus: out, count };
    },
  };
}

const FRESH_PROBE_ENTRY = join(ROOT, 'dist/scripts/loadtest/fresh-probe-process.js');

/** The same prober in a child process (fresh-probe-process.ts), so the flood's client lag is not in its timings. */
export function startFreshProbeProcess(options: Omit<FreshProbeOptions, 'timeoutMs'>): FreshProber {
  const env = { ...process.env, FRESH_PROBE_URL: options.url, FRESH_PROBE_EVERY_MS: String(options.everyMs ?? 50) };
  const child = forkTracked('fresh-connection prober', FRESH_PROBE_ENTRY, [], { cwd: ROOT, env });
  return {
    async stop() {
      try {
        const reply = waitForMessage(child, {
          pick: (m) =>
            (m as { type?: string } | null)?.type === 'fresh' ? (m as { result: FreshProbeResult }).result : undefined,
          // Probes in flight get up to 10 s each.
          timeoutMs: 15_000,
          signal: options.signal,
        });
        // Interrupted, the prober may be gone already (stopAll): its channel closed, the send fails; the reply's wait
        // ends on the signal.
        child.child.send('stop', (err) => void err);
        return await reply;
      } finally {
        await stopTracked(child, { graceMs: 1000 });
      }
    },
  };
}
