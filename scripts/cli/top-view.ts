import { METRIC, NO_VERSION } from '../../shared/metric-names.js';
import { table } from './format.js';
import type { Sample } from './prom-text.js';

// What `graygate top` shows (issue 5 part 5), computed from two successive
// /metrics scrapes the way Prometheus' rate() and histogram_quantile() would:
// per version, requests/s and error rate over the interval, p99 of the
// master's latency to response headers and of time to first token from the
// interval's bucket increments, and the current queue depth and streams.
// Pure functions of the samples, so they are tested with plain data.
//
// Issue 12 part 6: the rows are the versions /admin/status lists at the
// scrape, not every name that ever left a series in /metrics, and a previous
// scrape counts only for versions it listed too. The previous snapshot is all
// the state top keeps, so a removed version leaves nothing behind.

export interface Snapshot {
  /** Monotonic clock reading of the scrape, ms. */
  atMs: number;
  samples: readonly Sample[];
  /** The versions /admin/status listed with this scrape; undefined: the versions the samples name. */
  versions?: readonly string[];
}

export interface VersionRow {
  version: string;
  /** Requests finished per second over the interval; undefined on the first scrape. */
  rps: number | undefined;
  /** Share of those with a 5xx status (0–1); undefined without requests. */
  errorRate: number | undefined;
  /** 99th percentile latency to response headers in the interval, ms; undefined without requests. */
  p99Ms: number | undefined;
  /** 99th percentile time to first token in the interval, ms. */
  firstTokenP99Ms: number | undefined;
  queueDepth: number;
  streams: number;
  /** Workers that answered the scrape, and workers asked. */
  workersUp: number;
  workersScraped: number;
}

function byVersion(
  samples: readonly Sample[],
  name: string,
  keep: (s: Sample) => boolean = () => true,
): Map<string, number> {
  const out = new Map<string, number>();
  for (const s of samples) {
    const version = s.labels['version'];
    if (s.name !== name || version === undefined || !keep(s)) continue;
    out.set(version, (out.get(version) ?? 0) + s.value);
  }
  return out;
}

/** Cumulative bucket counts of one version's histogram, by upper bound. */
function buckets(samples: readonly Sample[], histogram: string, version: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const s of samples) {
    if (s.name !== `${histogram}_bucket` || s.labels['version'] !== version) continue;
    const le = s.labels['le'] === '+Inf' ? Infinity : Number(s.labels['le']);
    out.set(le, (out.get(le) ?? 0) + s.value);
  }
  return out;
}

/**
 * The q-quantile of cumulative buckets (upper bound → count), interpolated
 * linearly inside the bucket like Prometheus' histogram_quantile. Undefined
 * without observations; the highest finite bound when it falls in +Inf.
 */
export function histogramQuantile(q: number, cumulative: ReadonlyMap<number, number>): number | undefined {
  const sorted = [...cumulative].sort((a, b) => a[0] - b[0]);
  const total = sorted.at(-1)?.[1] ?? 0;
  if (total <= 0) return undefined;
  const rank = q * total;
  let prevBound = 0;
  let prevCount = 0;
  for (const [bound, count] of sorted) {
    if (count >= rank) {
      if (bound === Infinity) return prevBound;
      if (count === prevCount) return bound;
      return prevBound + ((bound - prevBound) * (rank - prevCount)) / (count - prevCount);
    }
    prevBound = bound;
    prevCount = count;
  }
  return prevBound;
}

function intervalQuantile(
  q: number,
  prev: Snapshot | undefined,
  cur: Snapshot,
  histogram: string,
  version: string,
): number | undefined {
  const now = buckets(cur.samples, histogram, version);
  const before = prev === undefined ? new Map<number, number>() : buckets(prev.samples, histogram, version);
  // A counter that went down is a restarted process: count from zero, as rate() does.
  const delta = new Map([...now].map(([le, n]) => [le, n >= (before.get(le) ?? 0) ? n - (before.get(le) ?? 0) : n]));
  return histogramQuantile(q, delta);
}

function versionsOf(snapshot: Snapshot): Set<string> {
  if (snapshot.versions !== undefined) return new Set(snapshot.versions);
  const named = new Set<string>();
  for (const name of [METRIC.requestsTotal, METRIC.queueDepth, METRIC.workerScrapeUp])
    for (const v of byVersion(snapshot.samples, name).keys()) named.add(v);
  named.delete(NO_VERSION);
  return named;
}

/** Version names in the order people count: v2 before v10 (a plain sort put v10 first). */
const byName = new Intl.Collator('en', { numeric: true }).compare;

export function computeRows(prev: Snapshot | undefined, cur: Snapshot): VersionRow[] {
  const versions = versionsOf(cur);
  const prevVersions = prev === undefined ? new Set<string>() : versionsOf(prev);
  const total = byVersion(cur.samples, METRIC.requestsTotal);
  // Errors as the canary counts them (SPEC §11): 5xx, streams failed after their 200, requests given up on; from a
  // master older than graygate_request_errors_total, its 5xx.
  const errorsOf = (samples: readonly Sample[]): Map<string, number> =>
    samples.some((s) => s.name === METRIC.requestErrorsTotal)
      ? byVersion(samples, METRIC.requestErrorsTotal)
      : byVersion(samples, METRIC.requestsTotal, (s) => Number(s.labels['code']) >= 500);
  const errors = errorsOf(cur.samples);
  const prevTotal = prev === undefined ? undefined : byVersion(prev.samples, METRIC.requestsTotal);
  const prevErrors = prev === undefined ? undefined : errorsOf(prev.samples);
  const queue = byVersion(cur.samples, METRIC.queueDepth);
  const streams = byVersion(cur.samples, METRIC.streamsActive);
  const up = byVersion(cur.samples, METRIC.workerScrapeUp);
  const asked = new Map<string, number>();
  for (const s of cur.samples)
    if (s.name === METRIC.workerScrapeUp && s.labels['version'] !== undefined)
      asked.set(s.labels['version'], (asked.get(s.labels['version']) ?? 0) + 1);
  const seconds = prev === undefined ? 0 : (cur.atMs - prev.atMs) / 1000;
  return [...versions].sort(byName).map((version) => {
    // A version the previous scrape did not list (just added) has no interval yet.
    const hasInterval = prev !== undefined && prevVersions.has(version);
    let rps: number | undefined;
    let errorRate: number | undefined;
    if (hasInterval && prevTotal !== undefined && prevErrors !== undefined && seconds > 0) {
      const done = increase(prevTotal.get(version), total.get(version));
      rps = done / seconds;
      errorRate = done === 0 ? undefined : increase(prevErrors.get(version), errors.get(version)) / done;
    }
    const p99 = hasInterval ? intervalQuantile(0.99, prev, cur, METRIC.requestDurationSeconds, version) : undefined;
    const ttft = hasInterval ? intervalQuantile(0.99, prev, cur, METRIC.streamFirstTokenSeconds, version) : undefined;
    return {
      version,
      rps,
      errorRate,
      p99Ms: p99 === undefined ? undefined : p99 * 1000,
      firstTokenP99Ms: ttft === undefined ? undefined : ttft * 1000,
      queueDepth: queue.get(version) ?? 0,
      streams: streams.get(version) ?? 0,
      workersUp: up.get(version) ?? 0,
      workersScraped: asked.get(version) ?? 0,
    };
  });
}

function increase(before: number | undefined, now: number | undefined): number {
  const b = before ?? 0;
  const n = now ?? 0;
  return n >= b ? n - b : n;
}

const dash = (v: number | undefined, f: (n: number) => string): string => (v === undefined ? '-' : f(v));
const ms = (n: number): string => (n < 10 ? n.toFixed(2) : n < 100 ? n.toFixed(1) : n.toFixed(0));

export function renderRows(rows: readonly VersionRow[]): string {
  return table(
    ['VERSION', 'REQ/S', 'ERR%', 'P99 MS', 'TTFT P99 MS', 'QUEUE', 'STREAMS', 'WORKERS UP'],
    rows.map((r) => [
      r.version,
      dash(r.rps, (n) => n.toFixed(1)),
      dash(r.errorRate, (n) => (n * 100).toFixed(1)),
      dash(r.p99Ms, ms),
      dash(r.firstTokenP99Ms, ms),
      String(r.queueDepth),
      String(r.streams),
      `${r.workersUp}/${r.workersScraped}`,
    ]),
  );
}

/** `graygate top --json`: one row as plain JSON, with null where the table shows `-`. */
export function rowToJson(row: VersionRow): Record<string, string | number | null> {
  return Object.fromEntries(Object.entries(row).map(([k, v]) => [k, v === undefined ? null : (v as string | number)]));
}
