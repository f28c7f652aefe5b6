import { startingState, type VersionView } from '../version.js';
import type { CanaryStatus } from '../canary/controller.js';
import type { CanaryPair } from '../canary/manager.js';
import type { ClientConnectionsStatus } from '../client-connections.js';

// GET /admin/status (SPEC §6): plain data read from version views, also what the CLI prints.

export interface WorkerStatus {
  pid: number | undefined;
  instance: number;
  state: string;
  restarts: number;
  inflight: number;
  entry: string;
  /** From the last answered health probe (SPEC §4a): visible even when the worker cannot answer a scrape. */
  rssBytes: number;
  eventLoopDelayMs: number;
  /** Health probes missed in a row right now. */
  healthMisses: number;
}

export interface VersionStatus {
  weight: number;
  entry: string;
  instances: number;
  upstream: { format: string; url: string; model?: string };
  builds: Array<{ entry: string; current: boolean }>;
  lastDeploy: unknown;
  /**
   * Requests waiting for a slot on any of the version's workers (SPEC §4): the queue is the
   * version's, so it is here once and not on each worker row (rows that each showed it added up
   * to a multiple of graygate_queue_depth).
   */
  queued: number;
  workers: WorkerStatus[];
  /** The canary this version is in, as canary or baseline: the active one, else its last, as it ended (SPEC §11). */
  canary?: CanaryStatus;
  /**
   * In the answer of a deploy, rollback or removal only: the canary the version was in, which it aborted (SPEC §11;
   * the CLI said "deployed v3" alone, and an operator did not know the canary had ended).
   */
  abortedCanary?: CanaryPair;
  /**
   * In the answer of an add, a deploy or a rollback only, when there are some: the warn lines it logged for the build
   * it brought (a secret variable unset, pings limits.workerIdleTimeoutMs would cut), as a reload's answer lists them
   * (a probe: a pipeline adding a version whose key was unset got a plain 201, the reason in the master's log only).
   */
  warnings?: string[];
}

export interface StatusBody {
  versions: Record<string, VersionStatus>;
  /**
   * Removed versions whose workers still serve what waited for them, or drain (SPEC §6 remove), by name; absent when
   * none. A name added again meanwhile is in `versions` too.
   */
  removing?: Record<string, { workers: WorkerStatus[] }>;
  /** configHash of the applied config file (SPEC §13): equal on every instance running the same file. */
  configHash?: string;
  /** The main port's connections: open, their bound (limits.maxClientConnections), closed at it. */
  clientConnections?: ClientConnectionsStatus;
}

export function versionStatus(version: VersionView): VersionStatus {
  // A removed version's workers drain where they are (retirement.ts): in `workers` and `draining` both, listed once.
  const rows = [...new Set([...version.workers, ...version.draining])].map((w) => ({ w, state: w.state }));
  // A deploy's new build, before traffic moves to it (F5 of an admin probe: a deploy's workers were missing for the
  // seconds they started, `lastDeploy.phase` alone said so).
  for (const w of version.starting) rows.push({ w, state: startingState(w.state) });
  const workers = rows.map(({ w, state }) => {
    const health = w.health;
    return {
      pid: w.pid,
      instance: w.instance,
      state,
      restarts: w.restarts,
      inflight: version.admission.inflight(w),
      entry: w.entry,
      rssBytes: health.rssBytes,
      eventLoopDelayMs: Math.round(health.eventLoopDelayMs * 100) / 100,
      healthMisses: health.misses,
    };
  });
  const { build } = version;
  const upstream: VersionStatus['upstream'] = { format: build.upstream.format, url: build.upstream.url };
  if (build.upstream.model !== undefined) upstream.model = build.upstream.model;
  return {
    weight: version.weight,
    entry: build.entry,
    instances: build.instances,
    upstream,
    builds: [
      ...version.previousBuilds.map((b) => ({ entry: b.entry, current: false })),
      { entry: build.entry, current: true },
    ],
    lastDeploy: version.lastDeploy ?? null,
    queued: version.admission.queued,
    workers,
  };
}

export function statusOf(versions: Iterable<VersionView>, removing: Iterable<VersionView> = []): StatusBody {
  const out: Record<string, VersionStatus> = {};
  for (const v of versions) out[v.name] = versionStatus(v);
  // A Map, not a plain object's `??=`: a version named `constructor` found Object's own there (a probe, 6 December).
  const gone = new Map<string, WorkerStatus[]>();
  for (const v of removing) {
    // The ones that stopped are gone (a removed version's stay in its `workers` till the last has stopped).
    const finishing = versionStatus(v).workers.filter((w) => w.state !== 'stopped' && w.state !== 'crashed');
    gone.set(v.name, [...(gone.get(v.name) ?? []), ...finishing]);
  }
  if (gone.size === 0) return { versions: out };
  return { versions: out, removing: Object.fromEntries([...gone].map(([name, workers]) => [name, { workers }])) };
}
