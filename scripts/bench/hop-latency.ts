import { once } from 'node:events';
import { createServer, request, Agent } from 'node:http';
import type { AddressInfo } from 'node:net';
import { benchArgs } from './args.js';
import { startGateway } from '../loadtest/gateway.js';
import { Recorder } from '../loadtest/histogram.js';
import { listeningPorts } from '../loadtest/listen-port.js';
import { findNginx, startNginx } from '../loadtest/nginx.js';
import { buildEntries } from '../loadtest/paths.js';
import { processGroupMembers, readCpuMs } from '../loadtest/rss.js';
import { interruptSignal, stopAll } from '../loadtest/processes.js';
import { startHopUpstream } from './hop-upstream.js';
import { startNaiveProxy } from '../loadtest/standalone.js';
import { checkCounts } from './counts.js';

// Where the first token's added latency goes (issue 10: "+3.5 ms at rest; find
// where 3 ms go"). A timestamping upstream in its own process answers OpenAI
// SSE and writes, as the TEXT of its first token, the monotonic clock
// (process.hrtime, CLOCK_MONOTONIC: the same clock in every process of the box)
// when the request's headers arrived, when its body had arrived, and when it
// wrote that token. The text passes through every proxy unchanged, so the
// client splits each path's first-token latency into
//   request  = client sends → upstream has the body (master + worker request path)
//   response = upstream writes the token → client reads it (worker + master relay)
// on: direct, graygate's worker alone (so master vs worker can be told apart),
// graygate, graygate with limits.directStreams, the node:http pipe proxy, nginx (and, with --baseline-root, graygate
// of that build, both ways). Paths alternate within a round. Each path's CPU a stream is given with the upstream's
// over the same streams, and their ratio: the upstream's CPU is the yardstick that the box's noise moves too.
// Usage: node dist/scripts/bench/hop-latency.js [--graygate-root DIR] [--baseline-root DIR] [--concurrency 1,40]
//        [--streams 400] [--tokens 20] [--rounds 3] [--warmup 3000]

// Background streams (concurrency > 1) last --tokens tokens (TOKENS, like the `rest` workload); alone, a stream ends
// after 2.
const TOKENS = 20;
const SOLO_TOKENS = 2;
const INTERVAL_MS = 20;
/**
 * --tokens at most: a background stream of 3,000 lasts a minute at INTERVAL_MS. `--tokens 1e9` was accepted and the
 * run never ended (each stream 230 days).
 */
const MAX_TOKENS = 3000;
/** --concurrency at most: each stream is an open file here and in every process on its path (the open-file limit). */
const MAX_CONCURRENCY = 20_000;

function now(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/** The upstream: `node hop-latency.js --upstream`, reports {type:'listening', url} over IPC. */
async function serveUpstream(): Promise<void> {
  const server = createServer((req, res) => {
    const headAt = now();
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const bodyAt = now();
      // The length travels in the message text: proxies forward the body unchanged, not our headers.
      const tokens = Number(/tokens=(\d+)/.exec(Buffer.concat(parts).toString())?.[1] ?? TOKENS);
      const frame = (delta: Record<string, unknown>, finish: string | null): string =>
        `data: ${JSON.stringify({ id: 'hop', object: 'chat.completion.chunk', created: 0, model: 'hop', choices: [{ index: 0, delta, finish_reason: finish }] })}\n\n`;
      res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
      res.write(frame({ role: 'assistant', content: '' }, null));
      let sent = 0;
      const timer = setInterval(() => {
        if (sent === 0) {
          // Read when the text is built: the write below happens in the same tick.
          res.write(frame({ content: `t:${headAt.toFixed(3)}:${bodyAt.toFixed(3)}:${now().toFixed(3)}` }, null));
        } else if (sent < tokens) {
          res.write(frame({ content: ` w${sent}` }, null));
        } else {
          clearInterval(timer);
          res.end(frame({}, 'stop') + 'data: [DONE]\n\n');
        }
        sent++;
      }, INTERVAL_MS);
      res.on('close', () => clearInterval(timer));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.send?.({
    type: 'listening',
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    pid: process.pid,
  });
  process.on('disconnect', () => process.exit(0));
}

interface Sample {
  requestMs: number;
  /** Headers → body end at the upstream: > 0 when the body came in a later packet. */
  bodyGapMs: number;
  responseMs: number;
  totalMs: number;
}

const bodyFor = (tokens: number): string =>
  JSON.stringify({ model: 'hop', stream: true, messages: [{ role: 'user', content: `hi tokens=${tokens}` }] });
const STAMP = /"content":"t:([\d.]+):([\d.]+):([\d.]+)"/;

function oneStream(url: string, agent: Agent, body: string): Promise<Sample> {
  return new Promise((resolve, reject) => {
    const sentAt = now();
    let sample: Sample | undefined;
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        if (sample !== undefined) return;
        const at = now();
        const m = STAMP.exec(chunk);
        if (m === null) return;
        const [head, body, wrote] = [Number(m[1]), Number(m[2]), Number(m[3])];
        sample = { requestMs: body - sentAt, bodyGapMs: body - head, responseMs: at - wrote, totalMs: at - sentAt };
      });
      res.on('end', () => (sample === undefined ? reject(new Error(`${url}: no stamped token`)) : resolve(sample)));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(body);
  });
}

async function measure(url: string, streams: number, concurrency: number, tokens: number): Promise<Sample[]> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const out: Sample[] = [];
  const body = bodyFor(tokens);
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, i) => {
      // Spread the starts over a `rest` stream's length (TOKENS, whatever --tokens says, as earlier runs did).
      await new Promise((r) => setTimeout(r, (i * TOKENS * INTERVAL_MS) / concurrency));
      while (next++ < streams) out.push(await oneStream(url, agent, body));
    }),
  );
  agent.destroy();
  return out;
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      'graygate-root': { type: 'string' },
      'baseline-root': { type: 'string' },
      concurrency: { type: 'string', default: '1,40' },
      streams: { type: 'string', default: '400' },
      tokens: { type: 'string', default: String(TOKENS) },
      rounds: { type: 'string', default: '3' },
      warmup: { type: 'string', default: '3000' },
    },
  });
  const levels = values.concurrency.split(',').map(Number);
  const streams = Number(values.streams);
  const rounds = Number(values.rounds);
  const warmup = Number(values.warmup);
  const tokens = Number(values.tokens);
  checkCounts({ streams, rounds }, { atLeast: 1 });
  checkCounts({ tokens }, { atLeast: 1, atMost: MAX_TOKENS });
  checkCounts(Object.fromEntries(levels.map((c, i) => [`concurrency[${i}]`, c])), {
    atLeast: 1,
    atMost: MAX_CONCURRENCY,
  });
  checkCounts({ warmup }, { atLeast: 0 });
  const signal = interruptSignal();
  try {
    const upstream = await startHopUpstream(signal);
    /** Master + one worker of the build in `root`, relayed or with limits.directStreams (docs/ONE-HOP.md). */
    const start = async (
      root: string | undefined,
      isDirect: boolean,
    ): Promise<{ url: string; pids: number[]; root: string }> => {
      const entries = buildEntries(root);
      const gw = await startGateway({
        versions: { v1: { entry: entries.worker, weight: 1, upstream: { format: 'openai', url: upstream.url } } },
        logLevel: process.env['LOG_LEVEL'] ?? 'info',
        root: entries.root,
        ...(isDirect ? { limits: { directStreams: true } } : {}),
        signal,
      });
      return { url: `${gw.url}/v1`, pids: [gw.pid, (await gw.workers())[0]!.pid], root: entries.root };
    };
    const gw = await start(values['graygate-root'], false);
    const gwDirect = await start(values['graygate-root'], true);
    const node = await startNaiveProxy({ mode: 'minimal', targetUrl: upstream.url, signal });
    // [name, base URL, the proxy's PIDs (their CPU per stream is shown)]
    const paths: Array<[string, string, number[]]> = [['direct', upstream.url, []]];
    // Only a worker on a TCP port can be read alone here (this client has no unix-socket path option).
    const workerPid = gw.pids[1]!;
    const workerPort = listeningPorts(workerPid)[0];
    if (workerPort !== undefined)
      paths.push(['graygate worker alone', `http://127.0.0.1:${workerPort}/v1`, [workerPid]]);
    paths.push(
      ['graygate', gw.url, gw.pids],
      ['graygate directStreams', gwDirect.url, gwDirect.pids],
      ['node:http pipe proxy', node.url, [node.pid]],
    );
    const baselineRoot = values['baseline-root'];
    if (baselineRoot !== undefined) {
      const before = await start(baselineRoot, false);
      const beforeDirect = await start(baselineRoot, true);
      paths.push(
        ['graygate (baseline)', before.url, before.pids],
        ['graygate (baseline) directStreams', beforeDirect.url, beforeDirect.pids],
      );
    }
    const nginxBinary = findNginx();
    if (nginxBinary !== undefined) {
      const nginx = await startNginx({
        binary: nginxBinary,
        upstream: new URL(upstream.url).host,
        keepalive: 64,
        signal,
      });
      paths.push(['nginx', nginx.url, processGroupMembers(nginx.pid)]);
    }
    const cpuOf = (pids: number[]): number => pids.reduce((sum, pid) => sum + (readCpuMs(pid) ?? 0), 0);
    // Warm-up: keep-alive pools, and JIT. At one stream at a time a process still
    // compiles hot functions after 1,000 streams (minor page faults and TurboFan
    // on its CPU; graygate's CPU per stream fell 35-40 % from 50 to 5,000 streams
    // of warm-up), and a proxy in service runs warm: --warmup short streams, 20 at a time.
    for (const [, base] of paths) await measure(`${base}/chat/completions`, warmup, 20, SOLO_TOKENS);
    process.stdout.write(
      `graygate from ${gw.root}${baselineRoot === undefined ? '' : `, baseline from ${baselineRoot}`}; ${warmup} warm-up streams per path, then ${streams} streams × ${rounds} rounds per path and concurrency; ms (p50 / p99)\n`,
    );
    for (const c of levels) {
      const rec = paths.map(() => ({
        request: new Recorder(),
        gap: new Recorder(),
        response: new Recorder(),
        total: new Recorder(),
        cpuMs: 0,
        upstreamCpuMs: 0,
        streams: 0,
      }));
      const perStream = c === 1 ? SOLO_TOKENS : tokens;
      for (let round = 0; round < rounds; round++) {
        const order = paths.map((_, i) => i);
        if (round % 2 === 1) order.reverse();
        for (const i of order) {
          const cpuBefore = cpuOf(paths[i]![2]);
          const upstreamBefore = cpuOf([upstream.pid]);
          const samples = await measure(`${paths[i]![1]}/chat/completions`, streams, c, perStream);
          rec[i]!.cpuMs += cpuOf(paths[i]![2]) - cpuBefore;
          rec[i]!.upstreamCpuMs += cpuOf([upstream.pid]) - upstreamBefore;
          rec[i]!.streams += samples.length;
          for (const s of samples) {
            rec[i]!.request.record(s.requestMs);
            rec[i]!.gap.record(s.bodyGapMs);
            rec[i]!.response.record(s.responseMs);
            rec[i]!.total.record(s.totalMs);
          }
        }
      }
      process.stdout.write(
        `\nconcurrency ${c} (${perStream} tokens per stream)\n${'path'.padEnd(34)}${'request'.padStart(18)}${'(head→body)'.padStart(18)}${'response'.padStart(18)}${'first token'.padStart(18)}${'added p50 / p99'.padStart(20)}${'CPU ms/stream'.padStart(15)}${'upstream'.padStart(10)}${'÷ upstream'.padStart(12)}\n`,
      );
      const d = rec[0]!.total.percentiles();
      paths.forEach(([name], i) => {
        const f = (r: Recorder): string => {
          const p = r.percentiles();
          return `${p.p50.toFixed(2)} / ${p.p99.toFixed(2)}`;
        };
        const t = rec[i]!.total.percentiles();
        const r = rec[i]!;
        const isProxy = r.streams > 0 && paths[i]![2].length > 0;
        const cpu = isProxy ? (r.cpuMs / r.streams).toFixed(3) : '–';
        const up = r.streams > 0 ? (r.upstreamCpuMs / r.streams).toFixed(3) : '–';
        const ratio = isProxy && r.upstreamCpuMs > 0 ? `${(r.cpuMs / r.upstreamCpuMs).toFixed(2)}×` : '–';
        process.stdout.write(
          `${name.padEnd(34)}${f(r.request).padStart(18)}${f(r.gap).padStart(18)}${f(r.response).padStart(18)}${f(r.total).padStart(18)}${`${(t.p50 - d.p50).toFixed(2)} / ${(t.p99 - d.p99).toFixed(2)}`.padStart(20)}${cpu.padStart(15)}${up.padStart(10)}${ratio.padStart(12)}\n`,
        );
      });
    }
  } finally {
    await stopAll();
  }
}

if (process.argv.includes('--upstream')) await serveUpstream();
else {
  await main();
  process.exit(0);
}
