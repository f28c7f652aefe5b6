import { startGateway } from '../gateway.js';
import { runLoad, type LoadResult } from '../load.js';
import { fetchMetrics, sumByLabel } from '../metrics.js';
import { startFreshProbeProcess, type FreshProbeResult } from '../fresh-probe.js';
import type { Percentiles } from '../histogram.js';
import { buildEntries } from '../paths.js';
import { measureRecovery, probe, type RecoveryResult } from '../probe.js';
import { RssSampler, toMb } from '../rss.js';
import type { Chart, Scenario, ScenarioContext, Target } from '../scenario.js';
import { startNaiveProxy, startStandaloneWorker } from '../standalone.js';
import { lineChart } from '../svg-chart.js';

// The keep-alive-agent backlog incident (SPEC §4, §9; issue 2 "Benchmark";
// issue 6 scenario 2): a worker answering after 1 s, one socket to it, 400
// connections for 20 s. graygate (b) alone by default; with --naive, side by
// side in one run with (a) http-proxy-3 on `http.Agent({keepAlive:true,
// maxSockets:1})` and (c) a pipe() proxy on the same agent that never aborts
// the upstream request. All three front the same test-worker build.

type ProxyKind = 'graygate' | 'graygate-before' | 'http-proxy-3' | 'pipe';
const LABELS: Record<ProxyKind, string> = {
  graygate: '(b) graygate',
  'graygate-before': '(b) graygate (before)',
  'http-proxy-3': '(a) naive http-proxy-3',
  pipe: '(c) pipe(), no abort',
};
// Issue 2 targets for (b).
const MAX_PEAK_RSS_MB = 120;
const MAX_RSS_GROWTH_MB = 10;
const MAX_503_P99_MS = 20;
const MAX_RECOVERY_OVER_WORKER_MS = 100;
// Issue 10 target 4: a fresh connection's 503 during the flood.
const MAX_FRESH_503_P99_MS = 100;
/** Fresh-connection probes start once the flood's own connections are open. */
const FRESH_PROBE_DELAY_MS = 1000;

interface Run {
  kind: ProxyKind;
  load: LoadResult;
  recovery: RecoveryResult;
  proxyRss: {
    baselineMb: number;
    peakMb: number;
    firstHalfPeakMb: number;
    secondHalfPeakMb: number;
    afterRecoveryMb: number;
  };
  workerPeakRssMb: number;
  /** Average CPU of the proxy process during the load, % of one core. */
  proxyCpuPct: number;
  /** The worker's own counters (test worker /stats) after the run: requests it really served. */
  worker: { total: number; peakActive: number } | null;
  /** graygate only: graygate_rejected_total by reason. */
  rejectedByReason: Record<string, number> | null;
  rssSeries: Array<[number, number]>;
  /** One request per new connection every 50 ms during the load (issue 10). */
  fresh: FreshProbeResult;
}

async function readWorkerStats(
  url: string,
  signal: AbortSignal,
): Promise<{ total: number; peakActive: number } | null> {
  try {
    const res = await fetch(`${url}/stats`, { signal: signal.aborted ? signal : AbortSignal.timeout(2000) });
    return (await res.json()) as { total: number; peakActive: number };
  } catch {
    return null; // (c) may still be busy with abandoned requests
  }
}

async function runOne(kind: ProxyKind, ctx: ScenarioContext): Promise<Run> {
  const { args, signal, progress } = ctx;
  const durationS = args.durationS ?? 20;
  const connections = args.connections ?? 400;
  const workerEnv = { TEST_WORKER_DELAY_MS: String(args.workerDelayMs) };
  progress.phase(`${LABELS[kind]}: starting`);
  const stops: Array<() => Promise<void>> = [];
  try {
    let url: string;
    let proxyPid: number;
    let workerPid: number;
    let workerUrl: string;
    let adminUrl: string | undefined;
    if (kind === 'graygate' || kind === 'graygate-before') {
      const entries = buildEntries(kind === 'graygate' ? args.graygateRoot : args.baselineRoot);
      const limits: Record<string, unknown> = { maxSocketsPerWorker: 1 };
      if (args.maxQueue !== undefined) limits['maxQueuePerVersion'] = args.maxQueue;
      if (args.queueTimeoutMs !== undefined) limits['queueTimeoutMs'] = args.queueTimeoutMs;
      const gw = await startGateway({
        versions: { v1: { entry: entries.testWorker, weight: 1, env: workerEnv } },
        limits,
        logLevel: args.logLevel,
        root: entries.root,
        signal,
      });
      stops.push(gw.stop);
      url = gw.url;
      workerUrl = gw.url; // /stats through the gateway once it has recovered
      proxyPid = gw.pid;
      workerPid = (await gw.workers())[0]!.pid;
      adminUrl = gw.adminUrl;
    } else {
      const worker = await startStandaloneWorker({
        entry: buildEntries(args.graygateRoot).testWorker,
        env: workerEnv,
        logLevel: args.logLevel,
        signal,
      });
      stops.push(worker.stop);
      const proxy = await startNaiveProxy({ mode: kind, targetUrl: worker.url, signal });
      stops.push(proxy.stop);
      url = proxy.url;
      workerUrl = worker.url;
      proxyPid = proxy.pid;
      workerPid = worker.pid;
    }
    // Warm the single keep-alive socket so every proxy starts from the same state.
    const warm = await probe(`${url}/slow?ms=0`, { timeoutMs: 10_000, signal });
    if (warm.status !== 200)
      throw new Error(`${LABELS[kind]} did not answer the warm-up request (status ${warm.status})`);

    const sampler = new RssSampler({ pids: () => ({ proxy: [proxyPid], worker: [workerPid] }) });
    const loadStartMs = sampler.now();
    progress.phase(
      `${LABELS[kind]}: ${connections} connections for ${durationS} s against a ${args.workerDelayMs} ms worker`,
    );
    let prober: ReturnType<typeof startFreshProbeProcess> | undefined;
    const proberTimer = setTimeout(
      () => (prober = startFreshProbeProcess({ url: `${url}/slow`, signal })),
      FRESH_PROBE_DELAY_MS,
    );
    const load = await runLoad({
      url: `${url}/slow`,
      connections,
      durationS,
      signal,
      onTick: (p) =>
        progress.status(
          `${LABELS[kind]} ${p.elapsedS}/${durationS} s  ${p.responses} answers  ${p.errors} errors/timeouts  proxy RSS ${toMb(sampler.latest('proxy'))} MB`,
        ),
    });
    const loadEndMs = sampler.now();
    clearTimeout(proberTimer);
    const fresh = (await prober?.stop()) ?? { byStatus: {}, count: 0 };
    progress.phase(`${LABELS[kind]}: load stopped; waiting for a fresh request (up to ${args.recoveryLimitS} s)`);
    const recovery = await measureRecovery(`${url}/slow`, { limitMs: args.recoveryLimitS * 1000, signal });
    const afterRecoveryMb = toMb(sampler.sample().bytes['proxy'] ?? 0);
    sampler.stop();
    const midMs = (loadStartMs + loadEndMs) / 2;
    const rejectedByReason =
      adminUrl === undefined ? null : sumByLabel(await fetchMetrics(adminUrl), 'graygate_rejected_total', 'reason');
    const worker = await readWorkerStats(workerUrl, signal);
    return {
      kind,
      load,
      recovery,
      proxyRss: {
        baselineMb: toMb(sampler.samples[0]?.bytes['proxy'] ?? 0),
        peakMb: toMb(sampler.peak('proxy')),
        firstHalfPeakMb: toMb(sampler.peak('proxy', loadStartMs, midMs)),
        secondHalfPeakMb: toMb(sampler.peak('proxy', midMs, loadEndMs)),
        afterRecoveryMb,
      },
      workerPeakRssMb: toMb(sampler.peak('worker')),
      proxyCpuPct: sampler.cpuPercent('proxy', loadStartMs, loadEndMs),
      worker,
      rejectedByReason,
      rssSeries: sampler.samples.map((s) => [
        Math.round((s.tMs - loadStartMs) / 100) / 10,
        toMb(s.bytes['proxy'] ?? 0),
      ]),
      fresh,
    };
  } finally {
    progress.phase(`${LABELS[kind]}: stopping`);
    for (const stop of stops.reverse()) await stop();
  }
}

function recoveryText(r: RecoveryResult): string {
  return r.recoveredMs === null ? `> ${r.limitMs / 1000} s` : `${r.recoveredMs} ms`;
}

export const runBacklog: Scenario = async (ctx) => {
  const graygates: ProxyKind[] = ctx.args.baselineRoot === undefined ? ['graygate'] : ['graygate', 'graygate-before'];
  const kinds: ProxyKind[] = ctx.args.isNaive ? [...graygates, 'http-proxy-3', 'pipe'] : graygates;
  const runs: Run[] = [];
  for (const kind of kinds) {
    ctx.signal.throwIfAborted(); // Ctrl-C: start nothing new
    runs.push(await runOne(kind, ctx));
  }

  const n503 = (r: Run): number => r.load.byStatus['503']?.count ?? 0;
  const p503 = (r: Run, q: 'p50' | 'p99'): string => (n503(r) === 0 ? '–' : String(r.load.byStatus['503']![q]));
  // The immediate refusal (queue_full) is what a fresh connection's wait is about; a probe that found a
  // queue place waits queueTimeoutMs by design (queue_timeout) and is shown apart. graygate's 503s carry their code:
  // only queue_full ones count (its queue_timeout latencies, by design up to queueTimeoutMs, marked the target missed
  // when there was no queue_full at all). The naive proxies' 503s have no code.
  const freshRefusals = (r: Run): Percentiles | undefined =>
    r.kind === 'graygate' || r.kind === 'graygate-before'
      ? r.fresh.byStatus['503:queue_full']
      : r.fresh.byStatus['503'];
  const fresh503 = (r: Run, q: 'p50' | 'p99'): string => String(freshRefusals(r)?.[q] ?? '–');
  // graygate's percentiles are of its queue_full 503s alone: the count says how many of its 503s those are (a README
  // probe read 12 fresh 503s beside a "–" p50, all of them queue_timeout).
  const fresh503s = (r: Run): string | number => {
    const all = r.fresh.byStatus['503']?.count ?? 0;
    const refusals = freshRefusals(r)?.count ?? 0;
    return refusals === all ? all : `${all} (${refusals} queue_full)`;
  };
  const freshOther = (r: Run): number =>
    Object.entries(r.fresh.byStatus)
      .filter(([s]) => !s.includes(':') && s !== '503')
      .reduce((n, [, p]) => n + p.count, 0);
  const rows = runs.map((r) => [
    LABELS[r.kind],
    r.proxyRss.baselineMb,
    r.proxyRss.peakMb,
    `${r.proxyRss.firstHalfPeakMb} → ${r.proxyRss.secondHalfPeakMb}`,
    r.proxyCpuPct,
    r.load.responses,
    r.load.byStatus['200']?.count ?? 0,
    n503(r),
    p503(r, 'p50'),
    p503(r, 'p99'),
    fresh503s(r),
    fresh503(r, 'p50'),
    fresh503(r, 'p99'),
    freshOther(r),
    r.load.byStatus['200']?.p99 ?? '–',
    r.load.timeouts,
    r.load.errors - r.load.timeouts,
    r.load.unfinished,
    r.worker?.total ?? '?',
    recoveryText(r.recovery),
  ]);
  const targets: Target[] = [];
  const gg = runs.find((r) => r.kind === 'graygate');
  if (gg !== undefined) {
    const freshFull = freshRefusals(gg);
    const growth = Math.round((gg.proxyRss.secondHalfPeakMb - gg.proxyRss.firstHalfPeakMb) * 10) / 10;
    const limitMs = ctx.args.workerDelayMs + MAX_RECOVERY_OVER_WORKER_MS;
    targets.push(
      {
        name: 'graygate master peak RSS',
        value: `${gg.proxyRss.peakMb} MB`,
        limit: `< ${MAX_PEAK_RSS_MB} MB`,
        isMet: gg.proxyRss.peakMb < MAX_PEAK_RSS_MB,
      },
      {
        name: 'graygate master RSS flat (2nd-half peak − 1st-half peak)',
        value: `${growth} MB`,
        limit: `< ${MAX_RSS_GROWTH_MB} MB`,
        isMet: growth < MAX_RSS_GROWTH_MB,
      },
      {
        name: 'graygate 503 p99',
        value: n503(gg) === 0 ? 'no 503s' : `${gg.load.byStatus['503']!.p99} ms`,
        limit: `< ${MAX_503_P99_MS} ms`,
        isMet: n503(gg) === 0 ? null : gg.load.byStatus['503']!.p99 < MAX_503_P99_MS,
      },
      {
        name: 'graygate queue_full 503 p99 on a fresh connection during the flood',
        value:
          freshFull === undefined
            ? 'no queue_full 503s'
            : `${freshFull.p99} ms (queue_timeout after ${gg.fresh.byStatus['503:queue_timeout']?.p50 ?? '–'} ms: ${gg.fresh.byStatus['503:queue_timeout']?.count ?? 0})`,
        limit: `≤ ${MAX_FRESH_503_P99_MS} ms`,
        isMet: freshFull === undefined ? null : freshFull.p99 <= MAX_FRESH_503_P99_MS,
      },
      {
        name: 'graygate fresh request after the load',
        value: recoveryText(gg.recovery),
        limit: `< ${limitMs} ms`,
        isMet: gg.recovery.recoveredMs !== null && gg.recovery.recoveredMs < limitMs,
      },
    );
  }
  const charts: Chart[] = [
    {
      name: 'rss',
      title: 'Proxy RSS during the flood',
      svg: lineChart({
        title: `Proxy process RSS (MB), load from 0 to ${runs[0]!.load.durationS} s`,
        xLabel: 's since the load started',
        yLabel: 'RSS MB',
        series: runs.map((r) => ({ label: LABELS[r.kind], points: r.rssSeries })),
        markers: [
          { x: 0, label: 'load' },
          { x: runs[0]!.load.durationS, label: 'load stops' },
        ],
      }),
    },
    {
      name: 'latency',
      title: 'p99 latency per second (all statuses)',
      svg: lineChart({
        title: 'p99 latency per second, all answers (ms)',
        xLabel: 's since the load started',
        yLabel: 'p99 ms',
        isLogY: true,
        series: runs.map((r) => ({
          label: LABELS[r.kind],
          points: r.load.perSecond.map((s) => [s.t, s.p99] as [number, number]),
        })),
      }),
    },
  ];
  const notes = [
    `Load: autocannon, ${runs[0]!.load.connections} connections, ${runs[0]!.load.durationS} s, GET /slow on the test worker (TEST_WORKER_DELAY_MS=${ctx.args.workerDelayMs}); autocannon's 10 s request timeout resets a connection whose request waited longer ("timeouts").`,
    "Recovery: after autocannon stopped, one fresh request at a time (new connection) until one gets a 2xx; the time is from the end of the load to the end of that answer, so the worker's own delay is included.",
    `"fresh": from ${FRESH_PROBE_DELAY_MS / 1000} s into the load until its end, one GET /slow on a NEW connection every 50 ms (a client arriving during the flood) from a process of its own (so the flood client's event loop is not in its timings), timed to the end of its answer (graygate's fresh 503 percentiles are of its queue_full refusals, the immediate ones, and its count says how many of its 503s those are); "fresh other": probes answered with another status or not at all within 10 s. The load's own 503s come on its keep-alive connections.`,
    '"unfinished": requests the load sent that were neither answered nor failed when it stopped (queued in the proxy or at the worker; autocannon drops them without a word).',
    '"worker served": requests the test worker itself counted (its /stats), read after the recovery wait; "?" when the worker could not be asked in time.',
  ];
  if (gg !== undefined && freshRefusals(gg) === undefined) {
    const timedOut = gg.fresh.byStatus['503:queue_timeout'];
    notes.push(
      `graygate queue_full target n/a: no fresh connection was refused with queue_full (the queue never filled)${
        timedOut === undefined
          ? ''
          : `; ${timedOut.count} waited in the queue and got queue_timeout, p50 ${timedOut.p50} ms, by design`
      }. Give a smaller --max-queue to measure the immediate refusal.`,
    );
  }
  if (gg?.rejectedByReason !== null && gg?.rejectedByReason !== undefined) {
    notes.push(
      `graygate rejections by reason (graygate_rejected_total): ${
        Object.entries(gg.rejectedByReason)
          .map(([k, v]) => `${k}=${v}`)
          .join(', ') || 'none'
      }.`,
    );
  }
  const results = runs.map(({ rssSeries, ...r }) => ({ ...r, label: LABELS[r.kind], rssSeries }));
  return {
    results,
    tables: [
      {
        title: 'Backlog flood: proxy memory, 503s and recovery',
        headers: [
          'proxy',
          'RSS idle MB',
          'RSS peak MB',
          'RSS 1st→2nd half MB',
          'proxy CPU %',
          'answers',
          '200',
          '503',
          '503 p50 ms',
          '503 p99 ms',
          'fresh 503s',
          'fresh 503 p50 ms',
          'fresh 503 p99 ms',
          'fresh other',
          '200 p99 ms',
          'timeouts',
          'conn errors',
          'unfinished',
          'worker served',
          'fresh request after load',
        ],
        rows,
      },
    ],
    targets,
    charts,
    notes,
  };
};
