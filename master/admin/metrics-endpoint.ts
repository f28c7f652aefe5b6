import {
  AggregatorRegistry,
  type Aggregator,
  type MetricObjectWithValues,
  type MetricType,
  type MetricValue,
  type Registry,
} from 'prom-client';
import { MASTER_WORKER_LABEL, METRIC } from '../../shared/metric-names.js';
import { workerLabel, type RegistryView, type WorkerView } from '../metrics.js';

// GET /metrics (SPEC §9, issue 5 part 1): the master's registry plus every
// worker's, fetched over IPC on each scrape, all workers at once, each with a
// deadline (a stuck worker must not stall the scrape), and merged by
// prom-client's own AggregatorRegistry.aggregate. graygate_* series carry
// `version`, so the default `sum` adds counters and histogram buckets of a
// version's instances into one series. Per-process series (process_*,
// nodejs_*) get `version` and `worker` labels so they stay apart.

/** Longest wait for one worker's metrics, ms. All workers are asked in parallel, so this bounds the whole scrape. */
const WORKER_SCRAPE_DEADLINE_MS = 1000;

type MetricJson = MetricObjectWithValues<MetricValue<string>>;

export interface GatherOptions {
  /** Per-worker deadline, ms. Default WORKER_SCRAPE_DEADLINE_MS. */
  deadlineMs?: number;
}

/** Only these workers serve requests and listen for IPC; starting/stopped/crashed ones show in graygate_workers. */
function isScraped(w: WorkerView): boolean {
  return w.state === 'ready' || w.state === 'draining';
}

const AGGREGATORS: ReadonlySet<string> = new Set<Aggregator>(['omit', 'sum', 'first', 'min', 'max', 'average']);

// A worker build from another release may send something else; one bad
// entry must not make aggregate() throw and cost the whole scrape.
function isMetricJson(value: unknown): value is MetricJson {
  const m = value as Partial<MetricJson> | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    typeof m.name === 'string' &&
    Array.isArray(m.values) &&
    AGGREGATORS.has(m.aggregator as string)
  );
}

// IPC is JSON: NaN and ±Infinity arrive as null (an event-loop mean before
// its first sample). Unknown is NaN; prom-client would print null as +Inf.
function restoreNonFinite(m: MetricJson): MetricJson {
  return m.values.every((v) => typeof v.value === 'number')
    ? m
    : { ...m, values: m.values.map((v) => (typeof v.value === 'number' ? v : { ...v, value: NaN })) };
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

/** One registry with the master's series, every worker's, and graygate_worker_scrape_up per worker asked. */
export async function gatherMetrics(
  registry: RegistryView,
  master: Registry,
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
          // A late or missing answer: the series are absent from this scrape and scrape_up says so.
          up.push({ value: metrics === undefined ? 0 : 1, labels: { version, worker } });
          return labelPerProcess((metrics ?? []).filter(isMetricJson).map(restoreNonFinite), { version, worker });
        }),
      );
    }
  }
  const [masterJson, workers] = await Promise.all([master.getMetricsAsJSON(), Promise.all(scrapes)]);
  const scrapeUp = {
    name: METRIC.workerScrapeUp,
    help: 'Whether a worker answered the last metrics scrape within the deadline (0: its series are missing from this scrape)',
    // prom-client's typings declare a numeric enum; at run time types are the exposition strings.
    type: 'gauge' as unknown as MetricType,
    aggregator: 'first' as Aggregator,
    values: up,
  };
  return AggregatorRegistry.aggregate([
    labelPerProcess(masterJson, { worker: MASTER_WORKER_LABEL }),
    ...workers,
    [scrapeUp],
  ]);
}
