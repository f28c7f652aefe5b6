import { AggregatorRegistry, Registry, type MetricObjectWithValues, type MetricValue, type MetricType } from 'prom-client';
import type { Supervisor } from '../supervisor.js';

// GET /metrics (SPEC §9): the master's registry plus every worker's, fetched
// over IPC on each scrape with a per-worker deadline, merged by prom-client's
// aggregator so counters sum and histograms merge across a version's
// instances. Per-process series (default process metrics) get a `worker`
// label so they stay apart; graygate_* series already carry `version`.

export const WORKER_SCRAPE_DEADLINE_MS = 1000;
const SCRAPE_UP = 'graygate_worker_scrape_up';

type MetricJson = MetricObjectWithValues<MetricValue<string>>;

function labelPerProcess(metrics: readonly MetricJson[], labels: Record<string, string>): MetricJson[] {
  return metrics.map((m) =>
    m.name.startsWith('graygate_') ? m : { ...m, values: m.values.map((v) => ({ ...v, labels: { ...v.labels, ...labels } })) },
  );
}

export async function gatherMetrics(supervisor: Supervisor, master: Registry, deadlineMs = WORKER_SCRAPE_DEADLINE_MS): Promise<Registry> {
  const scrapes: Array<Promise<MetricJson[]>> = [];
  const up: Array<{ version: string; worker: string; ok: boolean }> = [];
  for (const [name, group] of supervisor.versions) {
    for (const w of [...group.workers, ...group.draining]) {
      const worker = `${name}/${w.instance}/${w.pid ?? 'none'}`;
      scrapes.push(
        w.requestMetrics(deadlineMs).then((metrics) => {
          up.push({ version: name, worker, ok: metrics !== undefined });
          return labelPerProcess((metrics ?? []) as MetricJson[], { version: name, worker });
        }),
      );
    }
  }
  const masterJson = labelPerProcess((await master.getMetricsAsJSON()) as MetricJson[], { worker: 'master' });
  const workers = await Promise.all(scrapes);
  const scrapeUp = {
    name: SCRAPE_UP,
    help: 'Whether a worker answered the last metrics scrape within the deadline (0: its series are missing)',
    type: 'gauge' as unknown as MetricType,
    aggregator: 'sum',
    values: up.map((u) => ({ value: u.ok ? 1 : 0, labels: { version: u.version, worker: u.worker } })),
  };
  return AggregatorRegistry.aggregate([masterJson, ...workers, [scrapeUp]] as Parameters<typeof AggregatorRegistry.aggregate>[0]);
}

