import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from 'prom-client';
import { METRIC } from '../shared/metric-names.js';
import type { Supervisor } from './supervisor.js';
import type { WorkerState } from './worker-handle.js';

// The master's own series (SPEC §9). Hot-path cost is one counter increment
// and one histogram observation per request; gauges are read at scrape time.

const WORKER_STATES: readonly WorkerState[] = ['starting', 'ready', 'draining', 'stopped', 'crashed'];

// Proxy latency to response headers: sub-millisecond to seconds (issue 5 part 3).
export const PROXY_LATENCY_BUCKETS_S = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];

export interface MasterMetrics {
  readonly registry: Registry;
  /** Every finished request; status 0 when the client left before any answer. */
  onRequestDone(version: string, status: number, durationMs: number): void;
  /** Time from request to response headers. */
  observeHeaderLatency(version: string, seconds: number): void;
  onRejected(version: string, reason: string): void;
}

export function createMasterMetrics(supervisor: () => Supervisor | undefined): MasterMetrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const requests = new Counter({
    name: METRIC.requestsTotal,
    help: 'Requests finished by the master, by version and HTTP status (0: client left before an answer)',
    labelNames: ['version', 'code'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: METRIC.requestDurationSeconds,
    help: 'Time from request arrival to response headers, through the master',
    labelNames: ['version'] as const,
    buckets: PROXY_LATENCY_BUCKETS_S,
    registers: [registry],
  });
  const rejected = new Counter({
    name: METRIC.rejectedTotal,
    help: 'Requests the master answered itself with 503, by reason (queue_full, queue_timeout, no_ready_worker)',
    labelNames: ['version', 'reason'] as const,
    registers: [registry],
  });
  new Gauge({
    name: METRIC.queueDepth,
    help: 'Requests waiting for a worker slot, per version',
    labelNames: ['version'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [name, group] of supervisor()?.versions ?? []) this.set({ version: name }, group.admission.queued);
    },
  });
  new Gauge({
    name: METRIC.workers,
    help: 'Worker processes by version and state',
    labelNames: ['version', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [name, group] of supervisor()?.versions ?? []) {
        const counts = new Map<WorkerState, number>(WORKER_STATES.map((s) => [s, 0]));
        for (const w of [...group.workers, ...group.draining]) counts.set(w.state, (counts.get(w.state) ?? 0) + 1);
        for (const [state, n] of counts) this.set({ version: name, state }, n);
      }
    },
  });
  new Counter({
    name: METRIC.workerRestartsTotal,
    help: 'Crashed workers restarted, per version',
    labelNames: ['version'] as const,
    registers: [registry],
    collect() {
      // The supervisor owns the count; mirror it at scrape time.
      this.reset();
      for (const [name, group] of supervisor()?.versions ?? []) this.inc({ version: name }, group.restarts);
    },
  });

  return {
    registry,
    onRequestDone(version, status, _durationMs) {
      requests.inc({ version, code: String(status) });
    },
    observeHeaderLatency(version, seconds) {
      duration.observe({ version }, seconds);
    },
    onRejected(version, reason) {
      rejected.inc({ version, reason });
    },
  };
}
