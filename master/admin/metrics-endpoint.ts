import { AggregatorRegistry, type Aggregator, type MetricType, type MetricValue, type Registry } from 'prom-client';
import { MASTER_WORKER_LABEL, METRIC } from '../../shared/metric-names.js';
import { workerLabel, type MasterMetrics, type RegistryView, type WorkerView } from '../metrics.js';
import { isCumulative, readWorkerMetrics, type MetricJson } from '../retired-totals.js';

// GET /metrics (SPEC §9, issue 5 part 1): the master's registry plus every
// worker's, fetched over IPC on each scrape, all workers at once, each with a
// deadline (a stuck worker must not stall the scrape), and merged by
// prom-client's own AggregatorRegistry.aggregate. graygate_* series carry
// `version`, so the default `sum` adds counters and histogram buckets of a
// version's instances into one series. Per-process series (process_*,
// nodejs_*) get `version` and `worker` labels so they stay apart.
// Counters and histograms never go down (SPEC §9, retired-totals.ts): they are
// read from each live worker's last answer, this scrape's or an earlier one
// (a worker late for this scrape keeps its share), plus the totals of the
// version's exited workers.

/** Longest wait for one worker's metrics, ms. All workers are asked in parallel, so this bounds the whole scrape. */
const WORKER_SCRAPE_DEADLINE_MS = 1000;

export interface GatherOptions {
  /** Per-worker deadline, ms. Default WORKER_SCRAPE_DEADLINE_MS. */
  deadlineMs?: number;
}

/** Only these workers serve requests and listen for IPC; starting/stopped/crashed ones show in graygate_workers. */
function isScraped(w: WorkerView): boolean {
  return w.state === 'ready' || w.state === 'draining';
}

/**
 * Labels a process's own series with `labels` (graygate_* series already
 * carry `version` and pass unchanged). Their aggregator becomes
 * `first`: the labels make every series unique, and prom-client's defaults
 * (`omit` for process_start_time_seconds, `average` for event-loop lag…)
 * are meant for merging processes into one series, which we do not want.
 */
export function labelPerProcess(
  metrics: readonly MetricJson[],
  labels: Readonly<Record<string, string>>,
): MetricJson[] {
  return metrics.map((m) =>
    m.name.startsWith('graygate_')
      ? m
      : // A series' own labels win: nodejs_version_info has a `version` of its own (Node's).
        { ...m, aggregator: 'first', values: m.values.map((v) => ({ ...v, labels: { ...labels, ...v.labels } })) },
  );
}

/** A process that is gone: its counters are in the retired totals already (MasterMetrics.retireWorker at exit). */
function hasExited(w: WorkerView): boolean {
  return w.state === 'stopped' || w.state === 'crashed';
}

/** One registry with the master's series, every worker's, and graygate_worker_scrape_up per worker asked. */
export async function gatherMetrics(
  registry: RegistryView,
  master: Pick<MasterMetrics, 'registry' | 'retiredMetrics'>,
  options: GatherOptions = {},
): Promise<Registry> {
  const deadlineMs = options.deadlineMs ?? WORKER_SCRAPE_DEADLINE_MS;
  const up: MetricValue<string>[] = [];
  const scrapes: Array<Promise<MetricJson[]>> = [];
  for (const [version, group] of registry.versions) {
    for (const w of [...group.workers, ...group.draining]) {
      if (!isScraped(w)) continue;
      const worker = workerLabel(version, w);
      scrapes.push(
        w.requestMetrics(deadlineMs).then((metrics) => {
          // A late or missing answer: its per-process series are absent from this scrape and scrape_up says so.
          up.push({ value: metrics === undefined ? 0 : 1, labels: { version, worker } });
          const own = readWorkerMetrics(metrics).filter((m) => !isCumulative(m));
          return labelPerProcess(own, { version, worker });
        }),
      );
    }
  }
  const [masterJson, workers] = await Promise.all([master.registry.getMetricsAsJSON(), Promise.all(scrapes)]);
  // Read once every answer is in: a worker that exited meanwhile is in the retired totals now, and
  // a deploy that finished meanwhile has moved its old workers out of these lists.
  const cumulative: MetricJson[][] = [master.retiredMetrics()];
  for (const group of registry.versions.values()) {
    for (const w of [...group.workers, ...group.draining])
      if (!hasExited(w)) cumulative.push(readWorkerMetrics(w.lastMetrics).filter(isCumulative));
  }
  const scrapeUp = {
    name: METRIC.workerScrapeUp,
    help: 'Whether a worker answered the last metrics scrape within the deadline (0: its gauges and process series are missing from this scrape, its counters are from its last answer)',
    // prom-client's typings declare a numeric enum; at run time types are the exposition strings.
    type: 'gauge' as unknown as MetricType,
    aggregator: 'first' as Aggregator,
    values: up,
  };
  return AggregatorRegistry.aggregate([
    labelPerProcess(masterJson, { worker: MASTER_WORKER_LABEL }),
    ...workers,
    ...cumulative,
    [scrapeUp],
  ]);
}
