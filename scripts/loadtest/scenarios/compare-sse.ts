import { chatBody, responsesBody, type ChatRequestOptions } from '../chat-request.js';
import { runCannon, type CannonResult } from '../autocannon-process.js';
import { Recorder } from '../histogram.js';
import { readBoxCpuMs, RssSampler, type PidGroups, type RssSample } from '../rss.js';
import type { Scenario, ScenarioContext } from '../scenario.js';
import { runSseLoad } from '../sse-load.js';
import { readStream } from '../sse-client.js';
import { startSmallTargets, startSsePaths, type SsePath, type SseSetup } from '../sse-paths.js';
import { sseReport, type SmallAggregate, type StreamAggregate, type StreamShape } from './compare-sse-report.js';

// `npm run loadtest -- compare --sse` (issue 10): the streaming data path's
// cost, every path in ONE run, interleaved (A B C …, then … C B A) over
// --rounds, so drift on this shared 2-core box hits all paths alike.
//   loaded  300 streams × 100 tokens, one every 20 ms (15k events/s): proxy CPU ÷ the
//           mock upstream's CPU over the same window, added first token, peak RSS
//   rest    40 streams × 20 tokens, one every 20 ms: added first token when nothing saturates
//   small   GET /v1/models, 50 connections (autocannon in its own process): graygate vs
//           a node:http proxy and nginx in front of the SAME worker
//   responses (by name only) the loaded workload as Responses API streams: the relay's
//           per-read sequence-number reading (master/sequence-numbers.ts) on the event path
// The upstream is one mock process (scripts/loadtest/mock-upstream-process.ts)
// behind every path; its CPU is the yardstick (issue 10 "Rules of measurement").

const LOADED: StreamShape = { slots: 300, tokens: 100, intervalMs: 20 };
const REST: StreamShape = { slots: 40, tokens: 20, intervalMs: 20 };

/** What a workload's streams ask: the path under a path's OpenAI base (/v1) and the body. */
interface StreamCall {
  path: string;
  body: (options: ChatRequestOptions) => string;
}
const CHAT: StreamCall = { path: '/chat/completions', body: chatBody };
const RESPONSES: StreamCall = { path: '/responses', body: responsesBody };

async function runStreamRound(
  setup: SseSetup,
  path: SsePath,
  call: StreamCall,
  shape: StreamShape,
  windowMs: number,
  agg: StreamAggregate,
  recorder: Recorder,
  ctx: ScenarioContext,
): Promise<void> {
  const roles = Object.keys(path.pids);
  const groups: PidGroups = { ...path.pids, upstream: [setup.mockPid], client: [process.pid] };
  const sampler = new RssSampler({ pids: () => groups, intervalMs: 250 });
  let start: RssSample | undefined;
  let end: RssSample | undefined;
  let boxStart = readBoxCpuMs();
  let boxEnd = boxStart;
  const streamMs = shape.tokens * shape.intervalMs;
  const round = new Recorder();
  try {
    const r = await runSseLoad({
      url: `${path.base}${call.path}`,
      body: call.body({ tokens: shape.tokens, intervalMs: shape.intervalMs }),
      slots: shape.slots,
      rampMs: streamMs,
      warmMs: ctx.args.warmS === 1 ? Math.min(1000, windowMs / 2) : ctx.args.warmS * 1000,
      windowMs,
      streamTimeoutMs: streamMs + 30_000,
      firstTokens: round,
      onWindowStart: () => {
        start = sampler.sample();
        boxStart = readBoxCpuMs();
      },
      onWindowEnd: () => {
        end = sampler.sample();
        boxEnd = readBoxCpuMs();
      },
      signal: ctx.signal,
    });
    if (start === undefined || end === undefined) throw new Error(`${path.label}: the measured window never ended`);
    // Per process, so a process that exits in the window does not make the figure negative (rss.ts cpuMsBetween).
    const cpuDelta = (a: RssSample, b: RssSample, group: string): number => sampler.cpuMsBetween(group, a.tMs, b.tMs);
    let proxyMs = 0;
    for (const role of roles) {
      const ms = cpuDelta(start, end, role);
      agg.cpuMs[role] = (agg.cpuMs[role] ?? 0) + ms;
      proxyMs += ms;
    }
    const upstreamMs = cpuDelta(start, end, 'upstream');
    agg.upstreamCpuMs += upstreamMs;
    agg.clientCpuMs += cpuDelta(start, end, 'client');
    agg.box.busyMs += boxEnd.busyMs - boxStart.busyMs;
    agg.box.totalMs += boxEnd.totalMs - boxStart.totalMs;
    agg.events += r.windowTokens;
    agg.windowMs += r.windowMs;
    agg.streams += r.streams;
    agg.failed += r.failed;
    for (const [e, n] of Object.entries(r.errors)) agg.errors[e] = (agg.errors[e] ?? 0) + n;
    for (const s of sampler.samples) {
      if (s.tMs < start.tMs || s.tMs > end.tMs) continue;
      agg.peakRssBytes = Math.max(
        agg.peakRssBytes,
        roles.reduce((sum, role) => sum + (s.bytes[role] ?? 0), 0),
      );
    }
    const p = round.percentiles();
    agg.rounds.push({
      ratio: roles.length === 0 || upstreamMs === 0 ? null : Math.round((proxyMs / upstreamMs) * 100) / 100,
      p50: p.p50,
      p99: p.p99,
    });
    // Merge this round's samples into the path's recorder (rounds are weighed by their stream count).
    recorder.merge(round);
  } finally {
    sampler.stop();
  }
}

async function runStreamWorkload(
  name: string,
  setup: SseSetup,
  call: StreamCall,
  shape: StreamShape,
  windowMs: number,
  ctx: ScenarioContext,
): Promise<StreamAggregate[]> {
  const aggs = setup.paths.map((p): StreamAggregate => ({
    key: p.key,
    label: p.label,
    cpuMs: {},
    upstreamCpuMs: 0,
    clientCpuMs: 0,
    box: { busyMs: 0, totalMs: 0 },
    events: 0,
    windowMs: 0,
    streams: 0,
    failed: 0,
    errors: {},
    firstToken: new Recorder().percentiles(),
    peakRssBytes: 0,
    rounds: [],
  }));
  const recorders = setup.paths.map(() => new Recorder());
  for (let round = 0; round < ctx.args.rounds; round++) {
    // A B C … then … C B A: each path sees both ends of the round alike.
    const order = setup.paths.map((_, i) => i);
    if (round % 2 === 1) order.reverse();
    for (const i of order) {
      ctx.signal.throwIfAborted();
      const path = setup.paths[i]!;
      ctx.progress.phase(
        `${name} round ${round + 1}/${ctx.args.rounds}: ${path.label}, ${shape.slots} streams × ${shape.tokens} tokens every ${shape.intervalMs} ms, ${windowMs / 1000} s window`,
      );
      await runStreamRound(setup, path, call, shape, windowMs, aggs[i]!, recorders[i]!, ctx);
    }
  }
  aggs.forEach((a, i) => (a.firstToken = recorders[i]!.percentiles()));
  return aggs;
}

async function runSmallWorkload(setup: SseSetup, ctx: ScenarioContext): Promise<SmallAggregate[]> {
  const { args, signal, progress } = ctx;
  const connections = args.connections ?? 50;
  const durationS = args.durationS ?? 10;
  const { targets, stop } = await startSmallTargets(setup, args, progress, signal);
  try {
    const rounds: CannonResult[][] = targets.map(() => []);
    const cpu = targets.map(() => ({ ms: 0, wallMs: 0, requests: 0 }));
    // Unrecorded warm-up (JIT, keep-alive pools), skipped in short smoke runs.
    for (const t of durationS >= 5 ? targets : []) {
      progress.phase(`small: warm-up of ${t.label}`);
      await runCannon({
        url: `${t.url}/v1/models`,
        connections,
        durationS: 1,
        ...(t.socketPath === undefined ? {} : { socketPath: t.socketPath }),
        signal,
      });
    }
    for (let round = 0; round < args.rounds; round++) {
      const order = targets.map((_, i) => i);
      if (round % 2 === 1) order.reverse();
      for (const i of order) {
        signal.throwIfAborted();
        const t = targets[i]!;
        progress.phase(
          `small round ${round + 1}/${args.rounds}: GET /v1/models via ${t.label}, ${connections} connections × ${durationS} s`,
        );
        const sampler = new RssSampler({ pids: () => ({ front: t.pids }), intervalMs: 1000 });
        const from = sampler.sample();
        const result = await runCannon({
          url: `${t.url}/v1/models`,
          connections,
          durationS,
          ...(t.socketPath === undefined ? {} : { socketPath: t.socketPath }),
          signal,
        });
        rounds[i]!.push(result);
        const to = sampler.sample();
        sampler.stop();
        cpu[i]!.ms += sampler.cpuMsBetween('front', from.tMs, to.tMs);
        cpu[i]!.wallMs += to.tMs - from.tMs;
        cpu[i]!.requests += result.total;
      }
    }
    return targets.map((t, i) => {
      const { pids: _pids, socketPath: _socketPath, ...target } = t;
      return {
        target,
        rounds: rounds[i]!,
        medianRps: median(rounds[i]!.map((r) => r.okRps)),
        medianP99: median(rounds[i]!.map((r) => r.p99)),
        frontCpuPct: cpu[i]!.wallMs === 0 ? 0 : Math.round((cpu[i]!.ms / cpu[i]!.wallMs) * 100),
        frontCpuUsPerRequest: cpu[i]!.requests === 0 ? 0 : (cpu[i]!.ms * 1000) / cpu[i]!.requests,
      };
    });
  } finally {
    await stop();
  }
}

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return 0;
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
}

export const runCompareSse: Scenario = async (ctx) => {
  const { args, signal, progress } = ctx;
  const windowMs = (args.durationS ?? 10) * 1000;
  const loaded: StreamShape = {
    slots: args.streams ?? LOADED.slots,
    tokens: args.tokens ?? LOADED.tokens,
    intervalMs: args.tokenIntervalMs ?? LOADED.intervalMs,
  };
  const setup = await startSsePaths(args, progress, signal);
  try {
    // One short stream per path first: connections, JIT and the mock's first answer are not measured.
    const calls = args.workloads.includes('responses') ? [CHAT, RESPONSES] : [CHAT];
    for (const p of setup.paths) {
      for (const call of calls) {
        const warm = await readStream(`${p.base}${call.path}`, {
          body: call.body({ tokens: 2, intervalMs: 0 }),
          agent: false,
          timeoutMs: 10_000,
          signal,
        });
        if (warm.error !== null) throw new Error(`${p.label} does not stream ${call.path}: ${warm.error}`);
      }
    }
    const streams = args.workloads.includes('loaded')
      ? await runStreamWorkload('loaded', setup, CHAT, loaded, windowMs, ctx)
      : null;
    const rest = args.workloads.includes('rest')
      ? await runStreamWorkload('rest', setup, CHAT, REST, windowMs, ctx)
      : null;
    const small =
      args.workloads.includes('small') && setup.builds.length > 0 ? await runSmallWorkload(setup, ctx) : null;
    const responses = args.workloads.includes('responses')
      ? await runStreamWorkload('responses', setup, RESPONSES, loaded, windowMs, ctx)
      : null;
    return sseReport({
      args,
      loaded,
      rest: REST,
      windowMs,
      streams,
      restResult: rest,
      small,
      responsesResult: responses,
      setupNotes: setup.notes,
    });
  } finally {
    progress.phase('stopping');
    await setup.stop();
  }
};
