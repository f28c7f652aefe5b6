import { Recorder, type Percentiles } from './histogram.js';
import { probe } from './probe.js';

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
  /** Per HTTP status ("0": no answer within the bound). */
  byStatus: Record<string, Percentiles>;
  count: number;
}

export interface FreshProber {
  /** Stops starting probes, waits for those in flight, returns the figures. */
  stop(): Promise<FreshProbeResult>;
}

export function startFreshProbes(options: FreshProbeOptions): FreshProber {
  const byStatus = new Map<number, Recorder>();
  const inFlight = new Set<Promise<void>>();
  const fire = (): void => {
    const p = probe(options.url, { timeoutMs: options.timeoutMs ?? 10_000, signal: options.signal }).then((r) => {
      let rec = byStatus.get(r.status);
      if (rec === undefined) byStatus.set(r.status, (rec = new Recorder()));
      rec.record(r.ms);
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
      for (const [status, rec] of [...byStatus].sort((a, b) => a[0] - b[0])) {
        out[String(status)] = rec.percentiles();
        count += rec.count;
      }
      return { byStatus: out, count };
    },
  };
}
