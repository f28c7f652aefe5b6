import { Agent } from 'node:http';
import { CHAT_PATH, chatBody } from '../chat-request.js';
import { startGateway } from '../gateway.js';
import { Recorder, type Percentiles } from '../histogram.js';
import { pickListening, waitForMessage } from '../ipc-wait.js';
import { MOCK_UPSTREAM_ENTRY, ROOT, buildEntries } from '../paths.js';
import { forkTracked, stopTracked } from '../processes.js';
import { RssSampler, toMb, type PidGroups } from '../rss.js';
import type { Scenario, ScenarioContext, Target } from '../scenario.js';
import { readStream, type StreamResult } from '../sse-client.js';
import { lineChart } from '../svg-chart.js';
import { runStreamsHold } from './streams-hold.js';

// N concurrent SSE streams of M tokens (SPEC §9, issue 6 scenario 3), first
// straight to the mock upstream, then through graygate (master → worker →
// the same mock upstream process): first-token latency, tokens/s, and the RSS
// master and workers add per 100 open streams.

interface PhaseResult {
  label: string;
  streams: number;
  completed: number;
  failed: number;
  /** Distinct error texts with their counts. */
  errors: Record<string, number>;
  firstToken: Percentiles;
  streamDuration: Percentiles;
  tokens: number;
  tokensPerS: number;
  wallMs: number;
}

/** The streams of one run, with the scenario's defaults applied. */
interface Shape {
  streams: number;
  tokens: number;
  tokenIntervalMs: number;
}

async function runStreamsPhase(
  label: string,
  url: string,
  ctx: ScenarioContext,
  shape: Shape,
  onProgress: (open: number) => void,
): Promise<PhaseResult> {
  const { signal } = ctx;
  const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
  const body = chatBody({ tokens: shape.tokens, intervalMs: shape.tokenIntervalMs });
  // Bounded: the streams' own length plus a generous minute for set-up under load.
  const timeoutMs = shape.tokens * shape.tokenIntervalMs + 60_000;
  const startedAt = performance.now();
  let open = shape.streams;
  const ticker = setInterval(() => onProgress(open), 500);
  const results: StreamResult[] = await Promise.all(
    Array.from({ length: shape.streams }, () =>
      readStream(url, { body, agent, timeoutMs, signal }).finally(() => {
        open--;
      }),
    ),
  );
  clearInterval(ticker);
  const wallMs = performance.now() - startedAt;
  agent.destroy();
  const first = new Recorder();
  const total = new Recorder();
  const errors: Record<string, number> = {};
  let tokens = 0;
  for (const r of results) {
    if (r.firstTokenMs !== null) first.record(r.firstTokenMs);
    total.record(r.totalMs);
    tokens += r.tokens;
    if (r.error !== null) errors[r.error] = (errors[r.error] ?? 0) + 1;
  }
  const failed = results.filter((r) => r.error !== null || !r.isDone).length;
  return {
    label,
    streams: shape.streams,
    completed: results.length - failed,
    failed,
    errors,
    firstToken: first.percentiles(),
    streamDuration: total.percentiles(),
    tokens,
    tokensPerS: Math.round(tokens / (wallMs / 1000)),
    wallMs: Math.round(wallMs),
  };
}

export const runStreams: Scenario = async (ctx) => {
  if (ctx.args.isHold) return runStreamsHold(ctx);
  const { signal, progress } = ctx;
  const args = {
    ...ctx.args,
    streams: ctx.args.streams ?? 1000,
    tokens: ctx.args.tokens ?? 100,
    tokenIntervalMs: ctx.args.tokenIntervalMs ?? 20,
  };
  const entries = buildEntries(args.graygateRoot);
  const stops: Array<() => Promise<void>> = [];
  try {
    progress.phase('starting the mock upstream');
    const mockProcess = forkTracked('mock upstream', MOCK_UPSTREAM_ENTRY, [], { cwd: ROOT });
    stops.push(() => stopTracked(mockProcess, { graceMs: 2000 }));
    const mock = await waitForMessage(mockProcess, { pick: pickListening, timeoutMs: 15_000, signal });

    progress.phase(`starting graygate (${args.instances} worker(s)) in front of it`);
    const gw = await startGateway({
      // upstream.maxConnections is sized to the streams too (issue 10: graygate now refuses less than
      // maxSocketsPerWorker; older builds defaulted to 256 or 1024 and queued the rest inside undici).
      versions: {
        v1: {
          entry: entries.worker,
          weight: 1,
          instances: args.instances,
          upstream: { format: 'openai', url: mock.url, maxConnections: Math.max(1024, args.streams) },
        },
      },
      // Every stream holds a worker socket for its whole life (SPEC §4): size the limit to the streams.
      limits: { maxSocketsPerWorker: Math.max(1024, args.streams), maxQueuePerVersion: Math.max(256, args.streams) },
      logLevel: args.logLevel,
      root: entries.root,
      signal,
    });
    stops.push(gw.stop);
    const workerPids = (await gw.workers()).map((w) => w.pid);
    const pids = (): PidGroups => ({ master: [gw.pid], workers: workerPids, upstream: [mockProcess.pid] });

    // One short stream each way first, so neither phase pays for the first connection or JIT warm-up alone.
    const warm = chatBody({ tokens: 2, intervalMs: 0 });
    await readStream(`${mock.url}/chat/completions`, { body: warm, agent: false, timeoutMs: 10_000, signal });
    await readStream(`${gw.url}${CHAT_PATH}`, { body: warm, agent: false, timeoutMs: 10_000, signal });

    const sampler = new RssSampler({ pids, intervalMs: 200 });
    const idle = sampler.sample();
    const show =
      (label: string) =>
      (open: number): void =>
        progress.status(
          `${label}: ${open}/${args.streams} streams open  master ${toMb(sampler.latest('master'))} MB  workers ${toMb(sampler.latest('workers'))} MB`,
        );

    progress.phase(
      `direct: ${args.streams} streams × ${args.tokens} tokens every ${args.tokenIntervalMs} ms, straight to the mock upstream`,
    );
    const directStartMs = sampler.now();
    const direct = await runStreamsPhase(
      'direct to the upstream',
      `${mock.url}/chat/completions`,
      ctx,
      args,
      show('direct'),
    );
    const directEndMs = sampler.now();

    signal.throwIfAborted(); // Ctrl-C: skip the graygate phase
    const idleBeforeGw = sampler.sample();
    progress.phase(`graygate: ${args.streams} streams through master and worker to the same upstream`);
    const gwStartMs = sampler.now();
    const through = await runStreamsPhase('through graygate', `${gw.url}${CHAT_PATH}`, ctx, args, show('graygate'));
    const gwEndMs = sampler.now();
    sampler.stop();

    const idleMaster = idleBeforeGw.bytes['master'] ?? 0;
    const idleWorkers = idleBeforeGw.bytes['workers'] ?? 0;
    const peakMaster = sampler.peak('master', gwStartMs, gwEndMs);
    const peakWorkers = sampler.peak('workers', gwStartMs, gwEndMs);
    const per100 = (peak: number, base: number): number => toMb(((peak - base) / args.streams) * 100);
    const memory = {
      idleMasterMb: toMb(idleMaster),
      idleWorkersMb: toMb(idleWorkers),
      peakMasterMb: toMb(peakMaster),
      peakWorkersMb: toMb(peakWorkers),
      masterMbPer100Streams: per100(peakMaster, idleMaster),
      workersMbPer100Streams: per100(peakWorkers, idleWorkers),
      upstreamPeakMbDirect: toMb(sampler.peak('upstream', directStartMs, directEndMs)),
      upstreamPeakMbGraygate: toMb(sampler.peak('upstream', gwStartMs, gwEndMs)),
      masterCpuPct: sampler.cpuPercent('master', gwStartMs, gwEndMs),
      workersCpuPct: sampler.cpuPercent('workers', gwStartMs, gwEndMs),
      upstreamCpuPctDirect: sampler.cpuPercent('upstream', directStartMs, directEndMs),
      idleAtStart: { masterMb: toMb(idle.bytes['master'] ?? 0), workersMb: toMb(idle.bytes['workers'] ?? 0) },
    };
    const added = {
      firstTokenP50Ms: Math.round((through.firstToken.p50 - direct.firstToken.p50) * 100) / 100,
      firstTokenP99Ms: Math.round((through.firstToken.p99 - direct.firstToken.p99) * 100) / 100,
    };
    const row = (p: PhaseResult): Array<string | number> => [
      p.label,
      p.streams,
      p.completed,
      p.failed,
      p.firstToken.p50,
      p.firstToken.p99,
      p.firstToken.max,
      p.streamDuration.p99,
      p.tokensPerS,
    ];
    const targets: Target[] = [
      {
        name: 'streams completed through graygate',
        value: `${through.completed}/${through.streams}`,
        limit: 'all',
        isMet: through.failed === 0,
      },
      {
        name: 'streams completed direct (the load client itself keeps up)',
        value: `${direct.completed}/${direct.streams}`,
        limit: 'all',
        isMet: direct.failed === 0,
      },
    ];
    const notes = [
      `Each stream: POST ${CHAT_PATH} with stream:true; the mock upstream sends ${args.tokens} tokens, one every ${args.tokenIntervalMs} ms, so a stream lasts at least ${(args.tokens * args.tokenIntervalMs) / 1000} s. All ${args.streams} start at once on fresh connections.`,
      `First token: from sending the request to the first event with delta content. "Added by graygate": p50 +${added.firstTokenP50Ms} ms, p99 +${added.firstTokenP99Ms} ms.`,
      `graygate config: maxSocketsPerWorker and upstream.maxConnections ≥ ${args.streams} (older builds' default upstream.maxConnections would queue streams beyond it inside the worker).`,
      `RSS per 100 streams = (peak while the ${args.streams} streams were open − idle just before) / ${args.streams} × 100.`,
    ];
    for (const p of [direct, through]) {
      if (p.failed > 0)
        notes.push(
          `${p.label}: failures ${Object.entries(p.errors)
            .map(([e, n]) => `${e} ×${n}`)
            .join(', ')}`,
        );
    }
    const relative = (s: { tMs: number; bytes: Record<string, number> }): number =>
      Math.round((s.tMs - directStartMs) / 100) / 10;
    return {
      results: {
        direct,
        through,
        added,
        memory,
        tokens: args.tokens,
        tokenIntervalMs: args.tokenIntervalMs,
        instances: args.instances,
      },
      tables: [
        {
          title: `${args.streams} concurrent SSE streams × ${args.tokens} tokens`,
          headers: [
            'path',
            'streams',
            'completed',
            'failed',
            'first token p50 ms',
            'p99 ms',
            'max ms',
            'stream p99 ms',
            'tokens/s',
          ],
          rows: [row(direct), row(through)],
        },
        {
          title: 'Memory (RSS) while the streams were open through graygate',
          headers: ['process', 'idle MB', 'peak MB', 'MB per 100 streams', 'CPU % (graygate phase)'],
          rows: [
            ['master', memory.idleMasterMb, memory.peakMasterMb, memory.masterMbPer100Streams, memory.masterCpuPct],
            [
              `workers (${workerPids.length})`,
              memory.idleWorkersMb,
              memory.peakWorkersMb,
              memory.workersMbPer100Streams,
              memory.workersCpuPct,
            ],
          ],
        },
      ],
      targets,
      charts: [
        {
          name: 'rss',
          title: 'RSS while streaming',
          svg: lineChart({
            title: 'RSS (MB): direct phase, then through graygate',
            xLabel: 's',
            yLabel: 'RSS MB',
            series: ['master', 'workers', 'upstream'].map((g) => ({
              label: g,
              points: sampler.samples
                .filter((s) => s.tMs >= directStartMs)
                .map((s) => [relative(s), toMb(s.bytes[g] ?? 0)] as [number, number]),
            })),
            markers: [
              { x: 0, label: 'direct' },
              { x: Math.round((gwStartMs - directStartMs) / 100) / 10, label: 'graygate' },
            ],
          }),
        },
      ],
      notes,
    };
  } finally {
    progress.phase('stopping');
    for (const stop of stops.reverse()) await stop();
  }
};
