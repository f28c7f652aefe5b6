import type { Supervisor, VersionGroup } from '../supervisor.js';

// GET /admin/status (SPEC §6): plain data, also what the CLI prints.

export interface WorkerStatus {
  pid: number | undefined;
  instance: number;
  state: string;
  restarts: number;
  inflight: number;
  queued: number;
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
  queued: number;
  workers: WorkerStatus[];
}

export interface StatusBody {
  versions: Record<string, VersionStatus>;
}

export function versionStatus(group: VersionGroup, extra: { builds?: VersionStatus['builds']; lastDeploy?: unknown } = {}): VersionStatus {
  const queued = group.admission.queued;
  const workers = [...group.workers, ...group.draining].map((w) => {
    const health = w.health;
    return {
      pid: w.pid,
      instance: w.instance,
      state: w.state,
      restarts: w.restarts,
      inflight: w.inflight,
      queued,
      entry: w.entry,
      rssBytes: health.rssBytes,
      eventLoopDelayMs: Math.round(health.eventLoopDelayMs * 100) / 100,
      healthMisses: health.misses,
    };
  });
  const upstream: VersionStatus['upstream'] = { format: group.build.upstream.format, url: group.build.upstream.url };
  if (group.build.upstream.model !== undefined) upstream.model = group.build.upstream.model;
  return {
    weight: group.weight,
    entry: group.build.entry,
    instances: group.build.instances,
    upstream,
    builds: extra.builds ?? [{ entry: group.build.entry, current: true }],
    lastDeploy: extra.lastDeploy ?? null,
    queued,
    workers,
  };
}

export function statusOf(supervisor: Supervisor, extra: (group: VersionGroup) => { builds?: VersionStatus['builds']; lastDeploy?: unknown } = () => ({})): StatusBody {
  const versions: Record<string, VersionStatus> = {};
  for (const [name, group] of supervisor.versions) versions[name] = versionStatus(group, extra(group));
  return { versions };
}
