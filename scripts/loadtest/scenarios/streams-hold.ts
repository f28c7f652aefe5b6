import { setMaxListeners } from 'node:events';
import { Agent } from 'node:http';
import { join } from 'node:path';
import { CHAT_PATH, chatBody } from '../chat-request.js';
import { startGateway } from '../gateway.js';
import { graygateLaunch, probeMemory } from '../graygate-env.js';
import { Recorder } from '../histogram.js';
import { pickListening, waitForMessage } from '../ipc-wait.js';
import { probe } from '../probe.js';
import type { MemoryProbe } from '../memory-probe.js';
import { MOCK_UPSTREAM_ENTRY, ROOT, buildEntries } from '../paths.js';
import { forkTracked, stopTracked } from '../processes.js';
import { readRssSplit, RssSampler, toMb, type PidGroups } from '../rss.js';
import type { Scenario, Target } from '../scenario.js';
import { readStream, type StreamResult } from '../sse-client.js';
import { lineChart } from '../svg-chart.js';

// `streams --hold` (issue 10 target 3): ramp to --streams concurrent SSE
// streams through graygate with --workers workers, HOLD them (long streams,
// slow tokens) and report how many got their first token, the errors, and the
// RSS of master + workers at the hold; plus the idle footprint of master + one
// worker right after start. A stream that never gets its first token while the
// others do is waiting in a queue somewhere (issue 10: undici's pool in the
// worker, capped at upstream.maxConnections, holds the excess unseen).

// One client process holds every stream's socket; the master holds two per stream.
const IDLE_SETTLE_MS = 2000;

interface HoldCounts {
  opened: number;
  firstTokens: number;
  errors: number;
}

export const runStreamsHold: Scenario = async (ctx) => {
  const { args, signal, progress } = ctx;
  const streams = args.streams ?? 1000;
  const intervalMs = args.tokenIntervalMs ?? 2000;
  // Long enough to outlast ramp + hold with a margin: streams are cut by us, never end by themselves.
  const tokens = args.tokens ?? Math.ceil(((args.rampS + args.holdS + 30) * 1000) / Math.max(1, intervalMs));
  const maxSockets = args.maxSockets ?? Math.max(1024, streams);
  const entries = buildEntries(args.graygateRoot);
  const probeDir = args.isMemoryProbe ? join(args.reportDir, `memory-${Date.now()}`) : undefined;
  const stops: Array<() => Promise<void>> = [];
  const run = new AbortController();
  const runSignal = AbortSignal.any([signal, run.signal]);
  // Every stream listens on it: thousands of listeners are expected here.
  setMaxListeners(0, runSignal);
  try {
    progress.phase('starting the mock upstream');
    const mockProcess = forkTracked('mock upstream', MOCK_UPSTREAM_ENTRY, [], { cwd: ROOT });
    stops.push(() => stopTracked(mockProcess, { graceMs: 2000 }));
    const mock = await waitForMessage(mockProcess, { pick: pickListening, timeoutMs: 15_000, signal });

    progress.phase(
      `starting graygate from ${entries.root} (${args.instances} worker(s), maxSocketsPerWorker ${maxSockets}, upstream.maxConnections ${args.upstreamConnections ?? "graygate's default"})`,
    );
    const upstream: Record<string, unknown> = { format: 'openai', url: mock.url };
    if (args.upstreamConnections !== undefined) upstream['maxConnections'] = args.upstreamConnections;
    const gw = await startGateway({
      versions: { v1: { entry: entries.worker, weight: 1, instances: args.instances, upstream } },
      limits: { maxSocketsPerWorker: maxSockets, ...(args.isDirectStreams ? { directStreams: true } : {}) },
      logLevel: args.logLevel,
      root: entries.root,
      ...graygateLaunch({
        nodeFlags: args.nodeFlags,
        cpuProfDir: args.cpuProfDir,
        memoryProbeDir: probeDir,
        isHeapSnapshot: args.isHeapSnapshot,
      }),
      signal,
    });
    stops.push(gw.stop);
    const workerPids = (await gw.workers()).map((w) => w.pid);
    const pids = (): PidGroups => ({
      master: [gw.pid],
      workers: workerPids,
      firstWorker: workerPids.slice(0, 1),
      upstream: [mockProcess.pid],
    });

    // Idle footprint (issue 10 target 5): after one stream, once start-up garbage had time to go.
    await readStream(`${gw.url}${CHAT_PATH}`, {
      body: chatBody({ tokens: 2, intervalMs: 0 }),
      agent: false,
      timeoutMs: 10_000,
      signal,
    });
    await new Promise((r) => setTimeout(r, IDLE_SETTLE_MS));
    const sampler = new RssSampler({ pids, intervalMs: 500 });
    const idle = sampler.sample();
    const idleMb = {
      master: toMb(idle.bytes['master'] ?? 0),
      firstWorker: toMb(idle.bytes['firstWorker'] ?? 0),
      workers: toMb(idle.bytes['workers'] ?? 0),
    };
    // Of the idle footprint, what the two processes hold of their own and what is the node binary's pages.
    const idleSplit = [gw.pid, ...workerPids.slice(0, 1)]
      .map((pid) => readRssSplit(pid) ?? { anon: 0, file: 0 })
      .reduce((sum, s) => ({ anon: sum.anon + s.anon, file: sum.file + s.file }), { anon: 0, file: 0 });
    const idleSplitMb = { anonymous: toMb(idleSplit.anon), fileBacked: toMb(idleSplit.file) };

    const counts: HoldCounts = { opened: 0, firstTokens: 0, errors: 0 };
    const errors: Record<string, number> = {};
    const firstToken = new Recorder();
    const agent = new Agent({ keepAlive: false, maxSockets: Infinity });
    const body = chatBody({ tokens, intervalMs });
    let isHolding = false;
    const direct = args.isDirectStreams ? { agents: [] as Agent[], models: 0, modelErrors: 0 } : undefined;
    /**
     * --direct-streams: a connection of its own, kept alive, that asked GET /v1/models first: the master offers it to
     * the worker with that request, and the stream after it goes to the worker as an IPC call (docs/ONE-HOP.md).
     */
    const connection = async (): Promise<Agent> => {
      if (direct === undefined) return agent;
      const own = new Agent({ keepAlive: true, maxSockets: 1 });
      direct.agents.push(own);
      const { status } = await probe(`${gw.url}/v1/models`, { agent: own, timeoutMs: 30_000, signal: runSignal });
      if (status === 200) direct.models++;
      else direct.modelErrors++;
      return own;
    };
    const one = async (): Promise<StreamResult> => {
      counts.opened++;
      let isFirst = true;
      return readStream(`${gw.url}${CHAT_PATH}`, {
        body,
        agent: await connection(),
        timeoutMs: (args.rampS + args.holdS) * 1000 + 120_000,
        signal: runSignal,
        onToken: () => {
          if (!isFirst) return;
          isFirst = false;
          counts.firstTokens++;
        },
      }).then((r) => {
        if (r.firstTokenMs !== null) firstToken.record(r.firstTokenMs);
        // Streams cut by us at the end are not errors; anything before is.
        if (!run.signal.aborted && (r.error !== null || !r.isDone)) {
          counts.errors++;
          const e = r.error ?? 'ended early';
          errors[e] = (errors[e] ?? 0) + 1;
        }
        return r;
      });
    };
    const show = (): void =>
      progress.status(
        `${isHolding ? 'hold' : 'ramp'}: ${counts.opened} opened  ${counts.firstTokens} first tokens  ${counts.errors} errors  master ${toMb(sampler.latest('master'))} MB  workers ${toMb(sampler.latest('workers'))} MB`,
      );
    const ticker = setInterval(show, 500);

    progress.phase(`ramp: ${streams} streams over ${args.rampS} s (${tokens} tokens, one every ${intervalMs} ms)`);
    const rampStartMs = sampler.now();
    const all: Array<Promise<StreamResult>> = [];
    const stepMs = 50;
    const steps = Math.max(1, Math.round((args.rampS * 1000) / stepMs));
    for (let step = 1; step <= steps && !signal.aborted; step++) {
      const target = Math.round((streams * step) / steps);
      while (counts.opened < target) all.push(one());
      await new Promise((r) => setTimeout(r, stepMs));
    }
    signal.throwIfAborted();
    progress.phase(`hold: ${streams} streams for ${args.holdS} s`);
    isHolding = true;
    const holdStartMs = sampler.now();
    const atHoldStart = { ...counts };
    await new Promise((r) => setTimeout(r, args.holdS * 1000));
    const holdEndMs = sampler.now();
    const atHoldEnd = { ...counts };
    const rssAtHold = sampler.sample();
    // What graygate itself reports at the hold (issue 10: a queue must show in status and metrics).
    const statusAtHold = await gw.admin('GET', '/admin/status').then(
      (r) => r.body,
      (err: unknown) => String(err),
    );
    const workersAtHold = await gw.workers().catch(() => []);
    clearInterval(ticker);
    // After the figures: a heap snapshot freezes the process for seconds and allocates as much again.
    if (probeDir !== undefined)
      progress.phase(`memory probe${args.isHeapSnapshot ? ' and heap snapshots' : ''} of master and workers`);
    const probes: MemoryProbe[] =
      probeDir === undefined
        ? []
        : await probeMemory(probeDir, [gw.pid, ...workerPids], args.isHeapSnapshot ? 180_000 : 10_000);
    progress.phase('stopping the streams');
    run.abort(new Error('hold over'));
    await Promise.all(all);
    agent.destroy();
    for (const own of direct?.agents ?? []) own.destroy();
    sampler.stop();

    const peak = {
      master: toMb(sampler.peak('master', holdStartMs, holdEndMs)),
      workers: toMb(sampler.peak('workers', holdStartMs, holdEndMs)),
    };
    const totalAtHold = toMb((rssAtHold.bytes['master'] ?? 0) + (rssAtHold.bytes['workers'] ?? 0));
    const totalPeak = toMb(
      Math.max(
        0,
        ...sampler.samples
          .filter((s) => s.tMs >= holdStartMs && s.tMs <= holdEndMs)
          .map((s) => (s.bytes['master'] ?? 0) + (s.bytes['workers'] ?? 0)),
      ),
    );
    const overIdleKb =
      Math.round(
        (((rssAtHold.bytes['master'] ?? 0) +
          (rssAtHold.bytes['workers'] ?? 0) -
          (idle.bytes['master'] ?? 0) -
          (idle.bytes['workers'] ?? 0)) /
          streams /
          1024) *
          10,
      ) / 10;
    // A short hold printed nonsense: RSS at the hold below idle (a negative KiB per stream), and "first tokens 0" at
    // the hold beside a first-token p50 of streams answered after it. Not measured is said so instead.
    const perStreamKb = overIdleKb > 0 ? overIdleKb : null;
    const firstTokenNote =
      atHoldEnd.firstTokens === 0
        ? `First token: none by the end of the hold, so not measured: the ramp and hold (${args.rampS + args.holdS} s) ended before one was due (one token every ${intervalMs} ms); give a longer --hold-s or a shorter --token-interval-ms.`
        : `First token: ${firstToken.count} streams, p50 ${firstToken.percentiles().p50} ms, p99 ${firstToken.percentiles().p99} ms, max ${firstToken.percentiles().max} ms (the ramp's arrivals included).`;
    const targets: Target[] = [
      {
        name: 'streams that got their first token by the end of the hold',
        value: `${atHoldEnd.firstTokens}/${streams}`,
        limit: `${streams}`,
        isMet: atHoldEnd.firstTokens === streams,
      },
      {
        name: 'errors before the end of the hold',
        value: String(atHoldEnd.errors),
        limit: '0',
        isMet: atHoldEnd.errors === 0,
      },
      {
        name: 'master + workers RSS at the hold (issue 10: 9,000 streams)',
        value: `${totalAtHold} MB`,
        limit: '< 500 MB',
        isMet: totalAtHold < 500,
      },
      {
        name: 'idle master + one worker RSS',
        value:
          `${Math.round((idleMb.master + idleMb.firstWorker) * 10) / 10} MB ` +
          `(anonymous ${idleSplitMb.anonymous}, file-backed ${idleSplitMb.fileBacked})`,
        limit: '≤ 100 MB',
        isMet: idleMb.master + idleMb.firstWorker <= 100,
      },
    ];
    const relative = (t: number): number => Math.round((t - rampStartMs) / 100) / 10;
    return {
      results: {
        streams,
        isDirectStreams: args.isDirectStreams,
        workers: args.instances,
        maxSockets,
        upstreamConnections: args.upstreamConnections ?? null,
        tokens,
        intervalMs,
        rampS: args.rampS,
        holdS: args.holdS,
        idleMb,
        idleSplitMb,
        atHoldStart,
        atHoldEnd,
        statusAtHold,
        errors,
        firstToken: firstToken.percentiles(),
        rss: { totalAtHoldMb: totalAtHold, totalPeakMb: totalPeak, peak, perStreamKb },
        probes,
      },
      tables: [
        {
          title: `streams --hold: ${streams} streams through graygate, ${args.instances} worker(s)${direct === undefined ? '' : ', directStreams'}`,
          headers: ['moment', 'opened', 'first tokens', 'errors', 'master MB', 'workers MB', 'total MB'],
          rows: [
            [
              'idle (after start)',
              0,
              0,
              0,
              idleMb.master,
              idleMb.workers,
              Math.round((idleMb.master + idleMb.workers) * 10) / 10,
            ],
            ['hold starts', atHoldStart.opened, atHoldStart.firstTokens, atHoldStart.errors, '', '', ''],
            [
              'hold ends',
              atHoldEnd.opened,
              atHoldEnd.firstTokens,
              atHoldEnd.errors,
              toMb(rssAtHold.bytes['master'] ?? 0),
              toMb(rssAtHold.bytes['workers'] ?? 0),
              totalAtHold,
            ],
            ['peak during the hold', '', '', '', peak.master, peak.workers, totalPeak],
          ],
        },
        ...(probes.length === 0
          ? []
          : [
              {
                title: 'process.memoryUsage() at the end of the hold (MB)',
                headers: [
                  'process',
                  'rss',
                  'heap used',
                  'heap total',
                  'external',
                  'array buffers',
                  'sockets',
                  'timers',
                ],
                rows: probes.map((p) => [
                  `${p.role} ${p.pid}`,
                  toMb(p.memory.rss),
                  toMb(p.memory.heapUsed),
                  toMb(p.memory.heapTotal),
                  toMb(p.memory.external),
                  toMb(p.memory.arrayBuffers),
                  p.activeResources['TCPSocketWrap'] ?? 0,
                  p.activeResources['Timeout'] ?? 0,
                ]),
              },
            ]),
      ],
      targets,
      charts: [
        {
          name: 'rss',
          title: 'RSS while ramping and holding',
          svg: lineChart({
            title: 'RSS (MB): ramp, then hold',
            xLabel: 's',
            yLabel: 'RSS MB',
            series: ['master', 'workers'].map((g) => ({
              label: g,
              points: sampler.samples
                .filter((s) => s.tMs >= rampStartMs)
                .map((s) => [relative(s.tMs), toMb(s.bytes[g] ?? 0)] as [number, number]),
            })),
            markers: [
              { x: 0, label: 'ramp' },
              { x: relative(holdStartMs), label: 'hold' },
            ],
          }),
        },
      ],
      notes: [
        direct === undefined
          ? `Each stream: POST ${CHAT_PATH} on its own connection, not kept alive.`
          : `--direct-streams: limits.directStreams on; each stream on its own kept-alive connection, after a GET /v1/models on it (${direct.models} answered 200, ${direct.modelErrors} did not).`,
        `Each stream: POST ${CHAT_PATH}; the mock sends ${tokens} tokens, one every ${intervalMs} ms, so no stream ends before the hold does; they are cut (client closes) after it.`,
        firstTokenNote,
        perStreamKb === null
          ? `RSS per stream at the hold over idle (master + workers): not measured, the RSS at the hold was not above idle (${overIdleKb * streams} KiB in all: a hold too short to measure).`
          : `RSS per stream at the hold over idle (master + workers): ${perStreamKb} KiB.`,
        `graygate's own count at the hold (GET /admin/status, in flight per worker): ${workersAtHold.map((w) => `${w.pid}: ${w.inflight}`).join(', ') || 'unavailable'}; the full status is in the JSON report (results.statusAtHold).`,
        'Idle: RSS of master and the first worker 2 s after one short stream, before the ramp. Anonymous: their own ' +
          "memory; file-backed: mapped files, mostly the node binary's pages, one copy shared by every node process " +
          '(the sum counts it twice; a bare `node` is ~33 MB file-backed and ~6 MB anonymous).',
        ...Object.entries(errors).map(([e, n]) => `error: ${e} ×${n}`),
        ...(probeDir === undefined ? [] : [`memory probes (and heap snapshots with --heap-snapshot) in ${probeDir}`]),
      ],
    };
  } finally {
    run.abort();
    progress.phase('stopping');
    for (const stop of stops.reverse()) await stop();
  }
};
