import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { ERROR_KINDS, METRIC, type ErrorKind } from '../shared/metric-names.js';
import { collectProcessMetrics } from '../shared/process-metrics.js';
import type { WorkerHealth, WorkerState } from './worker-handle.js';
import { CANARY_STATES, type CanaryStatus } from './canary/controller.js';
import { METRIC_VERDICTS } from './canary/decision.js';
import type { ClientConnectionsStatus } from './client-connections.js';
import { startingState } from './version.js';
import { RetiredTotals, newest, readWorkerMetrics, type MetricJson } from './retired-totals.js';

// The master's own series (SPEC §9, issue 5 part 2). Hot-path cost per request
// is one counter increment and one histogram observation on label children
// looked up once per (version, status) and cached; queue depth, workers and
// restarts are read from the version registry at scrape time, never per request.

/** Reasons graygate_rejected_total is labelled with (gateway.ts REJECTION_CODES). */
const REJECTION_REASONS = ['queue_full', 'queue_timeout', 'no_ready_worker', 'body_budget', 'worker_timeout'];

const WORKER_STATES: readonly WorkerState[] = ['starting', 'ready', 'unhealthy', 'draining', 'stopped', 'crashed'];

/**
 * Proxy latency to response headers, seconds: 0.25 ms (issue 5 part 3: sub-millisecond) to 600 s (a whole answer's
 * `timeouts.totalMs`: a non-streamed answer's headers come with its end).
 */
export const PROXY_LATENCY_BUCKETS_S = [
  0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 7.5, 10, 20, 30, 60, 120, 300,
  600,
];

/** Worker states with no process any more. */
const EXITED: ReadonlySet<WorkerState> = new Set(['crashed', 'stopped']);

/** The last config reload's outcome (Operations.lastReload). */
export interface LastReload {
  isSuccessful: boolean;
  /** Unix ms a file was last applied: at start, then at each reload that applied one. */
  successAtMs: number;
}

/** What the metrics read of a worker; WorkerHandle has it. */
export interface WorkerView {
  readonly state: WorkerState;
  readonly instance: number;
  readonly pid: number | undefined;
  /** The last health probe's answer (SPEC §4a). */
  readonly health: WorkerHealth;
  /** The worker's prom-client JSON, or undefined when it did not answer within deadlineMs. */
  requestMetrics(deadlineMs: number): Promise<unknown[] | undefined>;
  /** The worker's last answer to requestMetrics (a scrape's, or the final one at stop); undefined before any. */
  readonly lastMetrics: readonly unknown[] | undefined;
}

/** What the metrics read of a version; VersionView has it. */
export interface VersionView {
  readonly admission: { readonly queued: number };
  readonly workers: readonly WorkerView[];
  /** Old builds' workers still finishing requests. */
  readonly draining: Iterable<WorkerView>;
  /** A new build's workers before traffic moves to them, counted as `starting` (version.ts startingState). */
  readonly starting?: Iterable<WorkerView>;
  readonly restarts: number;
}

/** What the metrics read of the version registry (structural, so tests hand in plain objects). */
export interface RegistryView {
  readonly versions: ReadonlyMap<string, VersionView>;
  /** Removed versions whose workers still serve or drain: counted under their names till gone. */
  readonly removing?: Iterable<VersionView & { readonly name: string }>;
}

/**
 * Every version's workers, by name: routed ones, then removed ones still finishing (a name may be in both), without
 * the ones that stopped. A removed version's workers drain where they are (retirement.ts): in `workers` and
 * `draining` both, counted once.
 */
function* withWorkers(
  view: RegistryView | undefined,
): Generator<readonly [string, readonly WorkerView[], VersionView['starting']]> {
  if (view === undefined) return;
  for (const [name, group] of view.versions) yield [name, [...group.workers, ...group.draining], group.starting];
  for (const group of view.removing ?? [])
    yield [group.name, [...new Set([...group.workers, ...group.draining])].filter((w) => !EXITED.has(w.state)), []];
}

export interface MasterMetrics {
  readonly registry: Registry;
  /**
   * Every finished request, once; status 0 when the client left before any answer. `error`: how the version failed
   * it, as the canary counts (request-end.ts errorKind), if it did.
   */
  onRequestDone(version: string, status: number, error: ErrorKind | undefined): void;
  /** Time from request arrival to response headers (the worker's, or the master's own error answer). */
  observeHeaderLatency(version: string, seconds: number): void;
  /** A 503 the master answered itself: queue_full, queue_timeout or no_ready_worker. */
  onRejected(version: string, reason: string): void;
  /** A removed version: its series leave /metrics (issue 12: they stayed forever), its retired totals too. */
  forgetVersion(version: string): void;
  /**
   * A worker process exited (crash, kill, deploy, remove): its last counters and histograms stay in
   * its version's totals, so they never go down while the master lives (SPEC §9, retired-totals.ts). The newer of its
   * last metrics answer (a scrape's, the final one at a stop) and its last health probe's counters.
   */
  retireWorker(version: string, lastMetrics: readonly unknown[] | undefined, lastCounters?: readonly unknown[]): void;
  /** The exited workers' totals, as prom-client JSON for the /metrics merge. */
  retiredMetrics(): MetricJson[];
}

/** `version/instance/pid`: unique per process, stable for its life, readable in a dashboard. */
export function workerLabel(version: string, w: Pick<WorkerView, 'instance' | 'pid'>): string {
  return `${version}/${w.instance}/${w.pid ?? 'none'}`;
}

export interface MasterMetricsOptions {
  /** The version registry, read at scrape time; undefined before it exists. */
  versions: () => RegistryView | undefined;
  /** Bytes of request bodies held right now (shared/byte-budget.ts), read at scrape time. */
  bufferedBodyBytes?: () => number;
  /** configHash of the applied config file (SPEC §13), read at scrape time. */
  configHash?: () => string;
  /** The last reload's outcome and when a file was last applied (at start: the started one), read at scrape time. */
  lastReload?: () => LastReload;
  /** The last canary of each version (SPEC §11), read at scrape time. */
  canaries?: () => Iterable<
    Pick<CanaryStatus, 'version' | 'state' | 'canaryPercent' | 'step' | 'decisions' | 'paused'>
  >;
  /** Canaries ended since the master started, by version and end state, read at scrape time. */
  canaryEnds?: () => Iterable<{ version: string; state: string; count: number }>;
  /** The main port's connections (master/client-connections.ts), read at scrape time. */
  clientConnections?: () => ClientConnectionsStatus;
}

export function createMasterMetrics(options: MasterMetricsOptions): MasterMetrics {
  const { versions } = options;
  const registry = new Registry();
  collectProcessMetrics(registry);
  const requests = new Counter({
    name: METRIC.requestsTotal,
    help: 'Requests finished by the master, by version and HTTP status (code 0: the client left before an answer)',
    labelNames: ['version', 'code'] as const,
    registers: [registry],
  });
  const duration = new Histogram({
    name: METRIC.requestDurationSeconds,
    help: 'Time from request arrival at the master to response headers (a request given up on before them: to its client leaving), by version',
    labelNames: ['version'] as const,
    buckets: PROXY_LATENCY_BUCKETS_S,
    registers: [registry],
  });
  const failed = new Counter({
    name: METRIC.requestErrorsTotal,
    help:
      'Requests a version failed, by version and kind (5xx; stream_failed: after its 200, with an error event or ' +
      'cut; these two its canary judges as errors; abandoned: its client gave up waiting for it)',
    labelNames: ['version', 'kind'] as const,
    registers: [registry],
  });
  const rejected = new Counter({
    name: METRIC.rejectedTotal,
    help: "Requests the master refused itself for its own bounds, by version and reason (503 queue_full, queue_timeout, no_ready_worker, body_budget; 504 worker_timeout, also as a stream's error event)",
    labelNames: ['version', 'reason'] as const,
    registers: [registry],
  });
  new Gauge({
    name: METRIC.queueDepth,
    help: 'Requests waiting for a worker slot, by version',
    labelNames: ['version'] as const,
    registers: [registry],
    collect() {
      this.reset();
      for (const [name, group] of versions()?.versions ?? []) this.set({ version: name }, group.admission.queued);
    },
  });
  new Gauge({
    name: METRIC.workers,
    help: "Worker processes by version and state (draining builds included, and a deploy's new build as starting until it takes traffic)",
    labelNames: ['version', 'state'] as const,
    registers: [registry],
    collect() {
      this.reset();
      // A removed version's workers under its name (a version added again under it meanwhile: the two together).
      const byName = new Map<string, Map<WorkerState, number>>();
      for (const [name, workers, starting] of withWorkers(versions())) {
        let counts = byName.get(name);
        if (counts === undefined) byName.set(name, (counts = new Map(WORKER_STATES.map((s) => [s, 0]))));
        for (const w of workers) counts.set(w.state, (counts.get(w.state) ?? 0) + 1);
        for (const w of starting ?? []) {
          const state = startingState(w.state);
          counts.set(state, (counts.get(state) ?? 0) + 1);
        }
      }
      for (const [name, counts] of byName) for (const [state, n] of counts) this.set({ version: name, state }, n);
    },
  });
  new Counter({
    name: METRIC.workerRestartsTotal,
    help: 'Crashed workers restarted, by version',
    labelNames: ['version'] as const,
    registers: [registry],
    collect() {
      // The registry owns the count; mirror it at scrape time.
      this.reset();
      for (const [name, group] of versions()?.versions ?? []) this.inc({ version: name }, group.restarts);
    },
  });

  // Issue 9 part 3: what the IPC health probe saw, per worker process.
  /** A gauge of one value, read at scrape time. */
  const scrapedGauge = (name: string, help: string, read: () => number): void => {
    new Gauge({
      name,
      help,
      registers: [registry],
      collect() {
        this.set(read());
      },
    });
  };
  const healthGauge = (name: string, help: string, read: (h: WorkerHealth) => number): void => {
    new Gauge({
      name,
      help,
      labelNames: ['version', 'worker'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const [version, workers] of withWorkers(versions())) {
          for (const w of workers) {
            // A process that exited has none (a crash looping instance waits 5 minutes in its slot: a probe saw its
            // dead PID's RSS there all that time).
            if (w.pid !== undefined && w.health.rssBytes > 0 && !EXITED.has(w.state))
              this.set({ version, worker: workerLabel(version, w) }, read(w.health));
          }
        }
      },
    });
  };
  healthGauge(METRIC.workerRssBytes, 'Worker resident set size from the last health probe, bytes', (h) => h.rssBytes);
  healthGauge(
    METRIC.workerEventLoopDelaySeconds,
    'Longest worker event-loop delay between two health probes, seconds',
    (h) => h.eventLoopDelayMs / 1000,
  );
  healthGauge(METRIC.workerHealthMisses, 'Health probes the worker missed in a row', (h) => h.misses);
  const readBuffered = options.bufferedBodyBytes;
  if (readBuffered !== undefined) {
    scrapedGauge(
      METRIC.bufferedBodyBytes,
      'Bytes of request bodies on their way right now, read and not yet answered by a worker (bounded by limits.maxBufferedBodyBytes)',
      readBuffered,
    );
  }

  const readConnections = options.clientConnections;
  if (readConnections !== undefined) {
    scrapedGauge(METRIC.clientConnections, 'Client connections open on the main port', () => readConnections().open);
    // Counts the connection tracker keeps (it counts every one; a scrape reads them).
    const trackerCounter = (name: string, help: string, read: (c: ClientConnectionsStatus) => number): void => {
      new Counter({
        name,
        help,
        registers: [registry],
        collect() {
          this.reset();
          this.inc(read(readConnections()));
        },
      });
    };
    trackerCounter(
      METRIC.clientConnectionsPastBoundTotal,
      'Client connections accepted past limits.maxClientConnections: their requests answered 503 too_many_connections, health checks 200',
      (c) => c.pastBound,
    );
    trackerCounter(
      METRIC.clientConnectionsDroppedTotal,
      'Client connections the main port closed as they came, past limits.maxClientConnections and those answered past it',
      (c) => c.dropped,
    );
    trackerCounter(
      METRIC.clientConnectionsClosedIdleTotal,
      'Client connections with no request in hand (silent, or idle between requests) closed at limits.maxClientConnections for a new one',
      (c) => c.closedIdle,
    );
    trackerCounter(
      METRIC.clientConnectionsRefusedPerAddressTotal,
      'Client connections the main port closed as they came, their client (an IPv4 address, an IPv6 /64) holding limits.maxClientConnectionsPerAddress already',
      (c) => c.refusedPerAddress,
    );
  }

  const readHash = options.configHash;
  if (readHash !== undefined) {
    new Gauge({
      name: METRIC.configInfo,
      help: "Always 1, labelled with the first 12 hex of the applied config file's sha256: count(count by (hash)(graygate_config_info)) > 1 means instances disagree",
      labelNames: ['hash'] as const,
      registers: [registry],
      collect() {
        this.reset();
        this.set({ hash: readHash() }, 1);
      },
    });
  }

  const readLastReload = options.lastReload;
  if (readLastReload !== undefined) {
    scrapedGauge(
      METRIC.configLastReloadSuccessful,
      'Whether the last config reload applied its file (1) or was refused (0): alert on 0 for longer than a retry',
      () => (readLastReload().isSuccessful ? 1 : 0),
    );
    scrapedGauge(
      METRIC.configLastReloadSuccessTimestampSeconds,
      'Unix time a config file was last applied (at start, or by a reload)',
      () => readLastReload().successAtMs / 1000,
    );
  }

  const readCanaries = options.canaries;
  if (readCanaries !== undefined) {
    new Gauge({
      name: METRIC.canaryPercent,
      help: "Percent of its pair's combined weight a running or held canary has (SPEC §11)",
      labelNames: ['version'] as const,
      registers: [registry],
      collect() {
        this.reset();
        // An ended canary's share is history: the weights may have changed since (a reload, PUT /admin/weights), so
        // it is not shown as current; graygate_canary_state keeps its end (and /admin/status the ended record).
        for (const c of readCanaries())
          if (c.state === 'running' || c.state === 'held') this.set({ version: c.version }, c.canaryPercent);
      },
    });
    new Gauge({
      name: METRIC.canaryState,
      help: "State of the version's last canary: 1 for the current state, 0 for the others",
      labelNames: ['version', 'state'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const c of readCanaries())
          for (const state of CANARY_STATES) this.set({ version: c.version, state }, c.state === state ? 1 : 0);
      },
    });
    new Gauge({
      name: METRIC.canaryPaused,
      help:
        'A running or held canary: 1 while it waits for its operator (paused by hand or at a step of pauseAt), ' +
        '0 otherwise; held with 0, the judge held it (no verdict within maxStepMs)',
      labelNames: ['version'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const c of readCanaries())
          if (c.state === 'running' || c.state === 'held') this.set({ version: c.version }, c.paused ? 1 : 0);
      },
    });
    new Gauge({
      name: METRIC.canaryVerdict,
      help: "A running or held canary's latest verdict per criterion at its current step: 1 for it, 0 for the others",
      labelNames: ['version', 'metric', 'verdict'] as const,
      registers: [registry],
      collect() {
        this.reset();
        for (const c of readCanaries()) {
          if (c.state !== 'running' && c.state !== 'held') continue;
          const latest = new Map<string, string>();
          for (const d of c.decisions) if (d.step === c.step) latest.set(d.metric, d.verdict);
          for (const [metric, verdict] of latest)
            for (const v of METRIC_VERDICTS)
              this.set({ version: c.version, metric, verdict: v }, v === verdict ? 1 : 0);
        }
      },
    });
  }
  const readCanaryEnds = options.canaryEnds;
  if (readCanaryEnds !== undefined) {
    new Counter({
      name: METRIC.canaryEndedTotal,
      help: 'Canaries ended since the master started, by version and state (promoted, rolled_back, aborted)',
      labelNames: ['version', 'state'] as const,
      registers: [registry],
      collect() {
        // The canary manager owns the count; mirrored at scrape time.
        this.reset();
        for (const e of readCanaryEnds()) this.inc({ version: e.version, state: e.state }, e.count);
      },
    });
  }

  // Label children, cached: a request's cost is a Map lookup, not prom-client's label hashing.
  const requestChildren = new Map<string, Counter.Internal>();
  const durationChildren = new Map<string, Histogram.Internal<'version'>>();
  const rejectedChildren = new Map<string, Counter.Internal>();
  // Every kind of a version from its first request, at 0: rate(errors) / rate(requests) has a series to divide.
  const errorChildren = new Map<string, ReadonlyMap<ErrorKind, Counter.Internal>>();
  const retired = new RetiredTotals();
  const rejectedChild = (version: string, reason: string): Counter.Internal => {
    const key = `${version} ${reason}`;
    let child = rejectedChildren.get(key);
    if (child === undefined) rejectedChildren.set(key, (child = rejected.labels({ version, reason })));
    return child;
  };
  return {
    registry,
    onRequestDone(version, status, error) {
      const key = `${version} ${status}`;
      let child = requestChildren.get(key);
      if (child === undefined) requestChildren.set(key, (child = requests.labels({ version, code: String(status) })));
      child.inc();
      let errors = errorChildren.get(version);
      if (errors === undefined) {
        errors = new Map(ERROR_KINDS.map((kind) => [kind, failed.labels({ version, kind })]));
        for (const counter of errors.values()) counter.inc(0);
        errorChildren.set(version, errors);
        // Every rejection reason too: a rejection ratio or alert reads 0 before the first refusal, not no data.
        for (const reason of REJECTION_REASONS) rejectedChild(version, reason).inc(0);
      }
      if (error !== undefined) errors.get(error)!.inc();
    },
    observeHeaderLatency(version, seconds) {
      let child = durationChildren.get(version);
      if (child === undefined) durationChildren.set(version, (child = duration.labels({ version })));
      child.observe(seconds);
    },
    onRejected(version, reason) {
      rejectedChild(version, reason).inc();
    },
    forgetVersion(version) {
      for (const key of requestChildren.keys()) {
        if (!key.startsWith(`${version} `)) continue;
        requestChildren.delete(key);
        requests.remove({ version, code: key.slice(version.length + 1) });
      }
      if (durationChildren.delete(version)) duration.remove({ version });
      if (errorChildren.delete(version)) for (const kind of ERROR_KINDS) failed.remove({ version, kind });
      // rejected_total has a label child per reason seen: drop every one of this version.
      for (const reason of REJECTION_REASONS) {
        rejectedChildren.delete(`${version} ${reason}`);
        rejected.remove({ version, reason });
      }
      retired.forget(version);
    },
    retireWorker(version, lastMetrics, lastCounters) {
      retired.add(version, newest(readWorkerMetrics(lastMetrics), readWorkerMetrics(lastCounters)));
    },
    retiredMetrics: () => retired.metrics(),
  };
}
