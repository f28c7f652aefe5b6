import type { Args } from '../args.js';
import { toMb } from '../rss.js';
import type { ScenarioOutput, Target } from '../scenario.js';
import type { Table } from '../table.js';
import type { CannonResult } from '../autocannon-process.js';
import type { Percentiles } from '../histogram.js';
import type { SmallTarget, SsePath } from '../sse-paths.js';

// Tables, targets and notes of `compare --sse` (issue 10). Ratios are what
// count on a shared box: CPU as a multiple of the upstream's own CPU, latency
// as what a path adds over reading the upstream directly in the same run.

// Issue 10 targets, for the build under test (the "graygate" path).
const MAX_CPU_RATIO = 2.0;
const MAX_LOADED_ADDED_P99_MS = 20;
const MAX_LOADED_RSS_MB = 150;
const MAX_REST_ADDED_P50_MS = 1;
const MAX_REST_ADDED_P99_MS = 3;
const MIN_SMALL_OVER_NODE = 0.8;

/** One streaming workload: streams open at once, tokens per stream, ms between tokens. */
export interface StreamShape {
  slots: number;
  tokens: number;
  intervalMs: number;
}

/** Per path, summed over the rounds. */
export interface StreamAggregate {
  key: SsePath['key'];
  label: string;
  /** CPU ms of the proxy's processes in the windows, by role (master, worker, nginx, proxy). */
  cpuMs: Record<string, number>;
  upstreamCpuMs: number;
  clientCpuMs: number;
  /** Whole box over the windows: busy ms and total ms (all cores). */
  box: { busyMs: number; totalMs: number };
  events: number;
  windowMs: number;
  streams: number;
  failed: number;
  errors: Record<string, number>;
  firstToken: Percentiles;
  /** Highest summed RSS of the proxy's processes in any window, bytes. */
  peakRssBytes: number;
  /** Per round: proxy CPU ÷ upstream CPU (null for direct), first-token p50 / p99. */
  rounds: Array<{ ratio: number | null; p50: number; p99: number }>;
}

export interface SmallAggregate {
  target: Omit<SmallTarget, 'pids'>;
  rounds: CannonResult[];
  /** Median of the rounds' 2xx req/s. */
  medianRps: number;
  /** Median of the rounds' p99, ms. */
  medianP99: number;
  /** Front process CPU over the measured runs, % of one core. */
  frontCpuPct: number;
  /**
   * Front process CPU over the measured runs ÷ the requests answered in them, µs: what the hop costs a request
   * (graygate's master, the node proxy, nginx), less moved by the box's other load than req/s.
   */
  frontCpuUsPerRequest: number;
}

export interface SseReportInput {
  args: Args;
  loaded: StreamShape;
  rest: StreamShape;
  windowMs: number;
  streams: StreamAggregate[] | null;
  restResult: StreamAggregate[] | null;
  small: SmallAggregate[] | null;
  /** The loaded shape as Responses API streams (`--workloads responses`); null when not run. */
  responsesResult: StreamAggregate[] | null;
  setupNotes: string[];
}

const r2 = (n: number): number => Math.round(n * 100) / 100;
const sum = (o: Record<string, number>): number => Object.values(o).reduce((a, b) => a + b, 0);

/** Proxy CPU ÷ upstream CPU, total and per role; null for direct. */
function cpuRatios(a: StreamAggregate): { total: number; byRole: Record<string, number> } | null {
  if (Object.keys(a.cpuMs).length === 0 || a.upstreamCpuMs === 0) return null;
  const byRole: Record<string, number> = {};
  for (const [role, ms] of Object.entries(a.cpuMs)) byRole[role] = r2(ms / a.upstreamCpuMs);
  return { total: r2(sum(a.cpuMs) / a.upstreamCpuMs), byRole };
}

function added(a: StreamAggregate, direct: StreamAggregate | undefined): { p50: number; p99: number } | null {
  return direct === undefined
    ? null
    : { p50: r2(a.firstToken.p50 - direct.firstToken.p50), p99: r2(a.firstToken.p99 - direct.firstToken.p99) };
}

function streamTable(title: string, aggs: StreamAggregate[]): Table {
  const direct = aggs.find((a) => a.key === 'direct');
  return {
    title,
    headers: [
      'path',
      'CPU ÷ upstream',
      'master',
      'worker',
      'per round',
      'µs CPU/event',
      'events/s',
      'first token p50 ms',
      'p99 ms',
      'added p50',
      'added p99',
      'peak RSS MB',
      'streams',
      'failed',
      'box busy %',
    ],
    rows: aggs.map((a) => {
      const ratio = cpuRatios(a);
      const add = added(a, direct);
      const proxyMs = sum(a.cpuMs);
      return [
        a.label,
        ratio === null ? '–' : `${ratio.total}×`,
        ratio?.byRole['master'] === undefined ? '–' : `${ratio.byRole['master']}×`,
        ratio?.byRole['worker'] === undefined ? '–' : `${ratio.byRole['worker']}×`,
        a.rounds.map((r) => (r.ratio === null ? '–' : r.ratio)).join(' / '),
        a.events === 0 || ratio === null ? '–' : r2((proxyMs * 1000) / a.events),
        a.windowMs === 0 ? 0 : Math.round(a.events / (a.windowMs / 1000)),
        a.firstToken.p50,
        a.firstToken.p99,
        add === null || a.key === 'direct' ? '–' : add.p50,
        add === null || a.key === 'direct' ? '–' : add.p99,
        ratio === null ? '–' : toMb(a.peakRssBytes),
        a.streams,
        a.failed,
        a.box.totalMs === 0 ? '–' : Math.round((a.box.busyMs / a.box.totalMs) * 100),
      ];
    }),
  };
}

function smallTables(small: SmallAggregate[]): Table[] {
  const rows = small.map((s) => [
    s.target.label,
    s.medianRps,
    s.rounds.map((r) => r.okRps).join(' / '),
    s.medianP99,
    s.rounds.reduce((n, r) => n + r.non2xx + r.errors, 0),
    s.target.kind === 'worker' ? '–' : s.frontCpuPct,
    s.target.kind === 'worker' ? '–' : r2(s.frontCpuUsPerRequest),
  ]);
  const ratioRows: Array<Array<string | number>> = [];
  /** `a ÷ b` in req/s, when both ran. */
  const ratio = (a: SmallAggregate | undefined, b: SmallAggregate | undefined): void => {
    if (a !== undefined && b !== undefined && b.medianRps > 0)
      ratioRows.push([
        `${a.target.label} ÷ ${b.target.label}`,
        `${r2(a.medianRps / b.medianRps)}×`,
        a.target.kind === 'worker' || b.target.kind === 'worker' || b.frontCpuUsPerRequest === 0
          ? '–'
          : `${r2(a.frontCpuUsPerRequest / b.frontCpuUsPerRequest)}×`,
      ]);
  };
  const find = (build: string, kind: string): SmallAggregate | undefined =>
    small.find((s) => s.target.build === build && s.target.kind === kind);
  for (const build of new Set(small.map((s) => s.target.build))) {
    if (build === 'direct-streams' || build === 'baseline-direct-streams') continue;
    for (const kind of ['node', 'nginx', 'worker']) ratio(find(build, 'graygate'), find(build, kind));
    ratio(find(build, 'onehop'), find(build, 'node'));
  }
  // limits.directStreams has no node proxy of its own (its worker is the same build's): against graygate's.
  ratio(find('direct-streams', 'graygate'), find('graygate', 'node'));
  ratio(find('graygate', 'graygate'), find('baseline', 'graygate'));
  ratio(find('direct-streams', 'graygate'), find('baseline-direct-streams', 'graygate'));
  return [
    {
      title: 'small: GET /v1/models (autocannon in its own process), median of the rounds',
      headers: ['path', 'req/s', 'per round', 'p99 ms', 'non-2xx + errors', 'front CPU %', 'front µs CPU/req'],
      rows,
    },
    {
      title: 'small: ratios (req/s: medians; front µs CPU a request: all rounds)',
      headers: ['ratio', 'req/s', 'front µs CPU/req'],
      rows: ratioRows,
    },
  ];
}

function targetsFor(input: SseReportInput): Target[] {
  const targets: Target[] = [];
  const gg = (aggs: StreamAggregate[] | null): StreamAggregate | undefined => aggs?.find((a) => a.key === 'graygate');
  const loaded = gg(input.streams);
  const direct = input.streams?.find((a) => a.key === 'direct');
  if (loaded !== undefined) {
    const ratio = cpuRatios(loaded);
    const add = added(loaded, direct);
    targets.push(
      {
        name: 'loaded: graygate CPU ÷ upstream CPU',
        value: ratio === null ? 'n/a' : `${ratio.total}×`,
        limit: `≤ ${MAX_CPU_RATIO}×`,
        isMet: ratio === null ? null : ratio.total <= MAX_CPU_RATIO,
      },
      {
        name: 'loaded: graygate added first token p99',
        value: add === null ? 'no direct path' : `${add.p99} ms`,
        limit: `≤ ${MAX_LOADED_ADDED_P99_MS} ms`,
        isMet: add === null ? null : add.p99 <= MAX_LOADED_ADDED_P99_MS,
      },
      {
        name: 'loaded: graygate master + worker peak RSS',
        value: `${toMb(loaded.peakRssBytes)} MB`,
        limit: `≤ ${MAX_LOADED_RSS_MB} MB`,
        isMet: toMb(loaded.peakRssBytes) <= MAX_LOADED_RSS_MB,
      },
    );
  }
  const rest = gg(input.restResult);
  const restAdded =
    rest === undefined
      ? null
      : added(
          rest,
          input.restResult?.find((a) => a.key === 'direct'),
        );
  if (rest !== undefined) {
    targets.push(
      {
        name: 'rest: graygate added first token p50',
        value: restAdded === null ? 'no direct path' : `${restAdded.p50} ms`,
        limit: `≤ ${MAX_REST_ADDED_P50_MS} ms`,
        isMet: restAdded === null ? null : restAdded.p50 <= MAX_REST_ADDED_P50_MS,
      },
      {
        name: 'rest: graygate added first token p99',
        value: restAdded === null ? 'no direct path' : `${restAdded.p99} ms`,
        limit: `≤ ${MAX_REST_ADDED_P99_MS} ms`,
        isMet: restAdded === null ? null : restAdded.p99 <= MAX_REST_ADDED_P99_MS,
      },
    );
  }
  const small = input.small;
  const sGg = small?.find((s) => s.target.build === 'graygate' && s.target.kind === 'graygate');
  const sNode = small?.find((s) => s.target.build === 'graygate' && s.target.kind === 'node');
  if (sGg !== undefined && sNode !== undefined && sNode.medianRps > 0) {
    const ratio = r2(sGg.medianRps / sNode.medianRps);
    targets.push({
      name: 'small: graygate req/s ÷ node proxy in front of its worker',
      value: `${ratio}×`,
      limit: `≥ ${MIN_SMALL_OVER_NODE}×`,
      isMet: ratio >= MIN_SMALL_OVER_NODE,
    });
  }
  const failed =
    [...(input.streams ?? []), ...(input.restResult ?? []), ...(input.responsesResult ?? [])].reduce(
      (n, a) => n + a.failed,
      0,
    ) + (small ?? []).reduce((n, s) => n + s.rounds.reduce((m, r) => m + r.non2xx + r.errors, 0), 0);
  targets.push({
    name: 'every stream and request completed on every path',
    value: `${failed} failed`,
    limit: '0',
    isMet: failed === 0,
  });
  return targets;
}

export function sseReport(input: SseReportInput): ScenarioOutput {
  const { loaded, rest, windowMs, args } = input;
  const tables: Table[] = [];
  const shape = (s: StreamShape): string => `${s.slots} streams × ${s.tokens} tokens, one every ${s.intervalMs} ms`;
  if (input.streams !== null)
    tables.push(
      streamTable(
        `loaded: ${shape(loaded)} (${Math.round((loaded.slots * 1000) / loaded.intervalMs)} events/s nominal), ${args.rounds} × ${windowMs / 1000} s windows`,
        input.streams,
      ),
    );
  if (input.restResult !== null)
    tables.push(streamTable(`rest: ${shape(rest)}, ${args.rounds} × ${windowMs / 1000} s windows`, input.restResult));
  if (input.small !== null) tables.push(...smallTables(input.small));
  if (input.responsesResult !== null)
    tables.push(
      streamTable(
        `responses: ${shape(loaded)} as POST /v1/responses streams (${loaded.tokens + 8} events each: every token's ` +
          `delta and 8 of the response's own; events/s and µs CPU/event count the token deltas, as the loaded ` +
          `table counts tokens), ${args.rounds} × ${windowMs / 1000} s windows`,
        input.responsesResult,
      ),
    );
  const errors = [...(input.streams ?? []), ...(input.restResult ?? []), ...(input.responsesResult ?? [])]
    .filter((a) => a.failed > 0)
    .map(
      (a) =>
        `${a.label}: ${Object.entries(a.errors)
          .map(([e, n]) => `${e} ×${n}`)
          .join(', ')}`,
    );
  const notes = [
    'CPU ÷ upstream: CPU seconds (utime+stime, /proc/<pid>/stat) of the proxy\'s processes over the measured windows, divided by the CPU seconds of the mock upstream process over the same windows; the mock produced the same events on every path, so this is CPU per relayed event in units of "what producing it cost". master / worker split graygate\'s total.',
    '"added": first-token percentile of the path minus that of direct (client → mock) in the same run. First token = request sent → first event with delta content; the mock waits one interval before the first token.',
    "Closed loop: each of the N streams is replaced as soon as it ends, on the same keep-alive connection; the first starts are spread over one stream's length, then 1 s of unrecorded warm-up, then the window. Paths alternate A B C…, then …C B A, per round.",
    'box busy %: all cores, whole machine (other sessions included) during the windows: near 100 % means the figures include queueing for CPU.',
    'nginx: 1 worker process, proxy_buffering off, upstream keepalive, HTTP/1.1; node:http pipe proxy: http.request(...).pipe(res) on a keep-alive agent (scripts/loadtest/naive-proxy.ts, mode minimal).',
    ...input.setupNotes,
    ...errors,
  ];
  return {
    results: {
      loadedShape: loaded,
      restShape: rest,
      windowMs,
      rounds: args.rounds,
      loaded: input.streams,
      rest: input.restResult,
      small: input.small,
      responses: input.responsesResult,
      ratios: input.streams?.map((a) => ({ key: a.key, cpu: cpuRatios(a) })) ?? null,
    },
    tables,
    targets: targetsFor(input),
    charts: [],
    notes,
  };
}
