import type { Aggregator, MetricObjectWithValues, MetricValue } from 'prom-client';

// Worker counters that outlive their worker (SPEC §9). /metrics sums the
// graygate_* series of a version's worker processes, so a worker that exits
// (a crash, a health kill, a deploy's old build) would take its share with it:
// the version's counters would go down, which Prometheus reads as a reset, and
// rate()/increase() over-count. Each worker handle keeps its last metrics
// answer (a scrape's, or the final one asked for at stop: worker-handle.ts)
// and the counters of its last health probe answer (every healthIntervalMs);
// when the process exits, the newer of the two's counters and histograms are added here, into
// totals per version and label set (never per worker: memory does not grow
// with restarts), and every later scrape adds them to the live workers'.
// Gauges (graygate_streams_active) and the per-process series (process_*,
// nodejs_*, labelled by worker) are not kept: a gone process's are gone.

export type MetricJson = MetricObjectWithValues<MetricValue<string>>;
type Sample = MetricValue<string> & { metricName?: string };

const AGGREGATORS: ReadonlySet<string> = new Set<Aggregator>(['omit', 'sum', 'first', 'min', 'max', 'average']);

// A worker build from another release may send something else; one bad
// entry must not make aggregate() throw and cost the whole scrape.
function isMetricJson(value: unknown): value is MetricJson {
  const m = value as Partial<MetricJson> | null;
  return (
    typeof m === 'object' &&
    m !== null &&
    isMetricName(m.name) &&
    typeof m.help === 'string' &&
    TYPES.has(m.type as unknown as string) &&
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

// What prom-client prints as text: a `help` of another type, a label value or a metricName that is an object (an
// entry of a hostile build: `{"toString": 1}`) threw in the scrape, and every /metrics after was a 500.
function isPrintableSample(v: unknown): boolean {
  const s = v as Partial<Sample> | null;
  return (
    typeof s === 'object' &&
    s !== null &&
    typeof s.labels === 'object' &&
    s.labels !== null &&
    Object.entries(s.labels).every(
      ([name, label]) => LABEL_NAME.test(name) && (typeof label === 'string' || typeof label === 'number'),
    ) &&
    (s.metricName === undefined || isMetricName(s.metricName))
  );
}

// prom-client prints names, label names and types as they are (it escapes help and label values only): a newline in
// one wrote lines of the build's choosing, another version's series among them, into /metrics; a name that is a key
// of Object.prototype (`__proto__`, `constructor`) made the aggregation throw at every scrape (a probe's hostile
// build).
const METRIC_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*$/;
const TYPES: ReadonlySet<string> = new Set(['counter', 'gauge', 'histogram', 'summary']);

function isMetricName(name: unknown): boolean {
  return typeof name === 'string' && METRIC_NAME.test(name) && !(name in Object.prototype);
}

/** A worker's metrics answer (prom-client `getMetricsAsJSON` over IPC), less what is not metric JSON. */
export function readWorkerMetrics(raw: readonly unknown[] | undefined): MetricJson[] {
  return (raw ?? [])
    .filter(isMetricJson)
    .map((m) =>
      restoreNonFinite(m.values.every(isPrintableSample) ? m : { ...m, values: m.values.filter(isPrintableSample) }),
    );
}

/**
 * Two answers of one worker process (a scrape's, a health probe's), in either order: each series at the higher of its
 * two values, which is the newer answer's (a process's counters and histogram series only go up).
 */
export function newest(a: readonly MetricJson[], b: readonly MetricJson[]): MetricJson[] {
  const byName = new Map(a.map((m) => [m.name, m]));
  for (const m of b) {
    const other = byName.get(m.name);
    if (other === undefined) {
      byName.set(m.name, m);
      continue;
    }
    const series = new Map(other.values.map((v) => [seriesKey(v), v]));
    for (const v of m.values) {
      const before = series.get(seriesKey(v));
      if (before === undefined || v.value > before.value) series.set(seriesKey(v), v);
    }
    byName.set(m.name, { ...other, values: [...series.values()] });
  }
  return [...byName.values()];
}

/** A worker's graygate_* counter or histogram: summed over a version's processes, and never going down. */
export function isCumulative(m: MetricJson): boolean {
  // prom-client's typings declare a numeric enum; at run time types are the exposition strings.
  const type = m.type as unknown as string;
  return m.name.startsWith('graygate_') && (type === 'counter' || type === 'histogram');
}

/** One series of a family: the sample name (a histogram's _bucket/_sum/_count) and its labels, in a stable order. */
function seriesKey(v: Sample): string {
  const labels = Object.entries(v.labels).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify([v.metricName ?? '', labels]);
}

// add() runs in the supervisor's exit handler: another release's odd sample is skipped, never thrown on.
function isSample(v: unknown): v is Sample {
  return isPrintableSample(v) && Number.isFinite((v as Sample).value);
}

interface Family {
  help: string;
  type: MetricJson['type'];
  series: Map<string, Sample>;
}

/** The summed last counters and histograms of a version's exited workers. */
export class RetiredTotals {
  readonly #byVersion = new Map<string, Map<string, Family>>();

  /** Adds an exited worker's last values to its version's totals; gauges and per-process series are skipped. */
  add(version: string, metrics: readonly MetricJson[]): void {
    for (const m of metrics) {
      if (!isCumulative(m)) continue;
      let families = this.#byVersion.get(version);
      if (families === undefined) this.#byVersion.set(version, (families = new Map<string, Family>()));
      let family = families.get(m.name);
      if (family === undefined) families.set(m.name, (family = { help: m.help, type: m.type, series: new Map() }));
      for (const v of m.values) {
        if (!isSample(v)) continue;
        const key = seriesKey(v);
        const total = family.series.get(key);
        if (total !== undefined) total.value += v.value;
        else
          family.series.set(key, {
            value: v.value,
            labels: { ...v.labels },
            ...(v.metricName === undefined ? {} : { metricName: v.metricName }),
          });
      }
    }
  }

  /** A removed version: its totals go (a version added again under that name starts from zero). */
  forget(version: string): void {
    this.#byVersion.delete(version);
  }

  /** Every version's totals as prom-client JSON, to be summed with the live workers' series. */
  metrics(): MetricJson[] {
    const out: MetricJson[] = [];
    for (const families of this.#byVersion.values()) {
      for (const [name, f] of families) {
        const values = [...f.series.values()].map((v) => ({ ...v, labels: { ...v.labels } }));
        out.push({ name, help: f.help, type: f.type, aggregator: 'sum', values } as unknown as MetricJson);
      }
    }
    return out;
  }
}
