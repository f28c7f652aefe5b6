import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { once } from 'node:events';
import { createServer, request } from 'node:http';
import type { AddressInfo } from 'node:net';
import { basename, join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { fileURLToPath } from 'node:url';
import { benchArgs } from './args.js';
import { FRAMES, mockToken, type MockAnswer } from '../../shared/mock-upstream/index.js';
import { runCannon, type CannonResult } from '../loadtest/autocannon-process.js';
import { startGateway, type RunningGateway } from '../loadtest/gateway.js';
import { pickListening, waitForMessage } from '../loadtest/ipc-wait.js';
import { DEFAULT_REPORT_DIR, buildEntries } from '../loadtest/paths.js';
import { forkTracked, interruptSignal, stopAll, stopTracked } from '../loadtest/processes.js';
import { readCpuMs, RssSampler, toMb } from '../loadtest/rss.js';
import { checkCounts } from './counts.js';

// Issue 9's figures for docs/BENCHMARKS.md, the current build against a
// baseline build (e.g. /work/before, 18cf3c6) in ONE run, interleaved
// (A B A B over --rounds) so drift on the shared box hits both alike. Each
// build runs as a real gateway (dist/master/main.js, 1 worker of
// dist/worker/main.js) in front of one upstream process (shared by both): this
// file run with --upstream, which answers in the mock's OpenAI shapes and
// honours its `[mock tokens=… interval-ms=…]` directive, but never parses a
// body over 64 KiB (it drains it). The mock upstream itself JSON-parses every
// body: a 9.5 MB one stops its event loop, and so the tokens of every stream it
// serves, for ~1 s on this box, which would be charged to the gateway here.
//
//   memory  worker and master RSS before, peak during (50 ms samples and
//           VmHWM), 2 s and 10 s after --concurrent (24) POST
//           /v1/chat/completions of --mib (9.5) MiB each, one user message of
//           plain text, a 3-token non-streamed answer. Fresh gateway.
//   stall   one SSE stream, a token every 10 ms, on the same (only) worker while
//           a 4.8 MB body with 300 000 top-level keys is POSTed: the longest gap
//           between the stream's events from the big POST until its answer (and
//           the big request's status, time, and the worker's CPU meanwhile);
//           then the same with one --mib text body (a large body both builds accept).
//   small   autocannon, --connections (50) for --duration-s (8, after 2 s of
//           warm-up) of POST /v1/chat/completions with a ~200-byte body and a
//           3-token non-streamed answer: req/s and CPU per request of master
//           and worker, with the body buffered by the master (current) or
//           streamed through (baseline). Against /work/before this compares
//           the whole turn's request path, not body buffering alone.
// Usage: npm run build && node dist/scripts/bench/hop-bodies.js
//   [--baseline-root /work/before] [--graygate-root DIR] [--rounds 2] [--parts memory,stall,small]
//   [--concurrent 24] [--mib 9.5] [--connections 50] [--duration-s 8] [--log-level info] [--report-dir reports]

const MIB = 1024 * 1024;
const STREAM_INTERVAL_MS = 10;
/** Enough tokens to outlast the big request (the baseline's stall was 3.1 s); the stream is cut once it is answered. */
const STREAM_TOKENS = 3000;
const KEYS = 300_000;
const AFTER_MS = 2000;
/** A second "after", to tell memory a worker keeps from memory it has not handed back yet. */
const LATE_AFTER_MS = 10_000;
/** Then this many seconds of small requests, and a third reading. */
const LOADED_S = 3;
const WARMUP_S = 2;

const { values } = benchArgs({
  options: {
    'baseline-root': { type: 'string' },
    'graygate-root': { type: 'string' },
    rounds: { type: 'string', default: '2' },
    concurrent: { type: 'string', default: '24' },
    mib: { type: 'string', default: '9.5' },
    connections: { type: 'string', default: '50' },
    'duration-s': { type: 'string', default: '8' },
    'log-level': { type: 'string', default: 'info' },
    'report-dir': { type: 'string', default: DEFAULT_REPORT_DIR },
    /** Which measurements to make, comma-separated: memory, stall, small. */
    parts: { type: 'string', default: 'memory,stall,small' },
    /** Internal: run as the upstream process. */
    upstream: { type: 'boolean', default: false },
  },
});

const rounds = Number(values.rounds);
const concurrent = Number(values.concurrent);
const mib = Number(values.mib);
const connections = Number(values.connections);
const durationS = Number(values['duration-s']);
const PARTS = ['memory', 'stall', 'small'] as const;
const parts = new Set(values.parts.split(',').filter((p) => p !== ''));
for (const p of parts)
  if (!(PARTS as readonly string[]).includes(p))
    throw new Error(`--parts: unknown part ${p} (expected ${PARTS.join(',')})`);
checkCounts({ rounds, concurrent, mib, connections, 'duration-s': durationS }, { above: 0 });

interface Build {
  key: 'current' | 'baseline';
  label: string;
  root: string;
}

const builds: Build[] = [
  {
    key: 'current',
    label: values['graygate-root'] === undefined ? 'current' : `current (${basename(values['graygate-root'])})`,
    root: buildEntries(values['graygate-root']).root,
  },
];
if (values['baseline-root'] !== undefined)
  builds.push({
    key: 'baseline',
    label: `baseline (${basename(values['baseline-root'])})`,
    root: buildEntries(values['baseline-root']).root,
  });

// ---- bodies -------------------------------------------------------------

const chat = (content: string, isStream = false): string =>
  JSON.stringify({ model: 'graygate-mock', stream: isStream, messages: [{ role: 'user', content }] });

/** One user message of plain text, the whole body `bytes` long. */
function bigTextBody(bytes: number): Buffer {
  const head = chat('[mock tokens=3 interval-ms=0] ');
  const filler = 'lorem ipsum dolor sit amet ';
  const room = bytes - Buffer.byteLength(head);
  const text = '[mock tokens=3 interval-ms=0] ' + filler.repeat(Math.ceil(room / filler.length)).slice(0, room);
  return Buffer.from(chat(text));
}

/** 300 000 top-level members `"key_0000000":1` beside a valid request: ~4.8 MB. */
function keysBody(): Buffer {
  const keys: string[] = [];
  for (let i = 0; i < KEYS; i++) keys.push(`"key_${String(i).padStart(7, '0')}":1`);
  return Buffer.from(
    `{"model":"graygate-mock","stream":false,"messages":[{"role":"user","content":"hi [mock tokens=3 interval-ms=0]"}],${keys.join(',')}}`,
  );
}

/** ~200 bytes, a 3-token answer. */
function smallBody(): string {
  const base = chat('[mock tokens=3 interval-ms=0] Say hello. ');
  return chat('[mock tokens=3 interval-ms=0] Say hello. ' + 'x'.repeat(Math.max(0, 200 - base.length)));
}

// ---- HTTP helpers -------------------------------------------------------

interface Answer {
  status: number;
  ms: number;
  /** The error code of a refusal, or a network error. */
  error: string | null;
}

function post(url: string, body: Buffer | string, timeoutMs: number): Promise<Answer> {
  const startedAt = performance.now();
  return new Promise((done) => {
    let isDone = false;
    const finish = (a: Omit<Answer, 'ms'>): void => {
      if (isDone) return;
      isDone = true;
      clearTimeout(timer);
      done({ ...a, ms: Math.round(performance.now() - startedAt) });
    };
    const req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (c: string) => {
          if (text.length < 4096) text += c;
        });
        res.on('end', () => {
          let error: string | null = null;
          if (res.statusCode !== 200)
            error = /"code":"([^"]+)"/.exec(text)?.[1] ?? /"type":"([^"]+)"/.exec(text)?.[1] ?? text.slice(0, 80);
          finish({ status: res.statusCode ?? 0, error });
        });
        res.on('error', (err) => finish({ status: res.statusCode ?? 0, error: err.message }));
      },
    );
    const timer = setTimeout(() => {
      req.destroy();
      finish({ status: 0, error: 'client timeout' });
    }, timeoutMs);
    req.on('error', (err) => finish({ status: 0, error: (err as NodeJS.ErrnoException).code ?? err.message }));
    req.end(body);
  });
}

/** An SSE stream whose event arrival times are kept; `stop()` cuts it. */
function openStream(
  url: string,
  body: string,
): { arrivals: number[]; status: () => number; stop: () => void; ended: Promise<void> } {
  const arrivals: number[] = [];
  let status = 0;
  let resolveEnded: () => void = () => undefined;
  const ended = new Promise<void>((r) => (resolveEnded = r));
  const req = request(url, { method: 'POST', agent: false, headers: { 'content-type': 'application/json' } }, (res) => {
    status = res.statusCode ?? 0;
    res.setEncoding('utf8');
    let pending = '';
    res.on('data', (chunk: string) => {
      const at = performance.now();
      pending += chunk;
      let end: number;
      while ((end = pending.indexOf('\n\n')) !== -1) {
        if (pending.slice(0, end).includes('data:')) arrivals.push(at);
        pending = pending.slice(end + 2);
      }
    });
    res.on('close', resolveEnded);
    res.on('error', resolveEnded);
  });
  req.on('error', resolveEnded);
  req.end(body);
  return { arrivals, status: () => status, stop: () => req.destroy(), ended };
}

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

function readHwmBytes(pid: number): number | undefined {
  try {
    const m = /^VmHWM:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m === null ? undefined : Number(m[1]) * 1024;
  } catch {
    return undefined;
  }
}

function countBy(answers: Answer[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const a of answers) {
    const k = a.error === null ? String(a.status) : `${a.status} ${a.error}`;
    out[k] = (out[k] ?? 0) + 1;
  }
  return out;
}

const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  const m = Math.floor(s.length / 2);
  const v = s.length === 0 ? NaN : s.length % 2 === 1 ? s[m]! : (s[m - 1]! + s[m]!) / 2;
  return Math.round(v * 1000) / 1000;
};

// ---- the three measurements ---------------------------------------------

interface MemoryResult {
  workerMb: { before: number; peak: number; hwm: number; after: number; late: number; loaded: number };
  masterMb: { before: number; peak: number; hwm: number; after: number; late: number; loaded: number };
  statuses: Record<string, number>;
  /** First request sent → last answer, ms. */
  wallMs: number;
  workerCpuMs: number;
  masterCpuMs: number;
}

async function startOne(
  build: Build,
  mockUrl: string,
  signal: AbortSignal,
): Promise<{ gw: RunningGateway; workerPid: number }> {
  const entries = buildEntries(build.root);
  const gw = await startGateway({
    versions: { v1: { entry: entries.worker, weight: 1, instances: 1, upstream: { format: 'openai', url: mockUrl } } },
    logLevel: values['log-level'],
    root: entries.root,
    signal,
  });
  const workerPid = (await gw.workers())[0]?.pid;
  if (workerPid === undefined) {
    await gw.stop();
    throw new Error(`${build.label}: no worker in /admin/status`);
  }
  return { gw, workerPid };
}

async function measureMemory(
  gw: RunningGateway,
  workerPid: number,
  body: Buffer,
  signal: AbortSignal,
): Promise<MemoryResult> {
  const url = `${gw.url}/v1/chat/completions`;
  // One small request first, so what loads lazily is in "before" for both builds.
  await post(url, smallBody(), 10_000);
  await sleep(1000);
  const sampler = new RssSampler({ pids: () => ({ worker: [workerPid], master: [gw.pid] }), intervalMs: 50 });
  const before = sampler.sample();
  const cpu0 = { w: readCpuMs(workerPid) ?? 0, m: readCpuMs(gw.pid) ?? 0 };
  const t0 = sampler.now();
  const startedAt = performance.now();
  const answers = await Promise.all(Array.from({ length: concurrent }, () => post(url, body, 120_000)));
  const wallMs = Math.round(performance.now() - startedAt);
  const cpu1 = { w: readCpuMs(workerPid) ?? 0, m: readCpuMs(gw.pid) ?? 0 };
  await sleep(AFTER_MS);
  const after = sampler.sample();
  const t1 = sampler.now();
  await sleep(LATE_AFTER_MS - AFTER_MS);
  const late = sampler.sample();
  // Then a little traffic (small requests), which lets the processes' GCs run: memory held only by garbage drops here.
  await runCannon({
    url,
    connections: 10,
    durationS: LOADED_S,
    method: 'POST',
    body: smallBody(),
    headers: { 'content-type': 'application/json' },
    signal,
  });
  const loaded = sampler.sample();
  sampler.stop();
  const mb = (group: 'worker' | 'master', pid: number): MemoryResult['workerMb'] => ({
    before: toMb(before.bytes[group] ?? 0),
    peak: toMb(sampler.peak(group, t0, t1)),
    hwm: toMb(readHwmBytes(pid) ?? 0),
    after: toMb(after.bytes[group] ?? 0),
    late: toMb(late.bytes[group] ?? 0),
    loaded: toMb(loaded.bytes[group] ?? 0),
  });
  return {
    workerMb: mb('worker', workerPid),
    masterMb: mb('master', gw.pid),
    statuses: countBy(answers),
    wallMs,
    workerCpuMs: Math.round(cpu1.w - cpu0.w),
    masterCpuMs: Math.round(cpu1.m - cpu0.m),
  };
}

interface StallResult {
  /** Longest gap between the unrelated stream's events from the big POST until 300 ms after its answer, ms. */
  stallMs: number;
  /** The same over the 500 ms before the big POST (the stream's normal pace), ms. */
  quietGapMs: number;
  big: Answer;
  /** Events of the unrelated stream inside the window, and its status. */
  streamEvents: number;
  streamStatus: number;
  workerCpuMs: number;
  masterCpuMs: number;
  /**
   * This client's own longest event-loop delay in the window, ms (so a stall of the
   * client is not taken for the gateway's).
   */
  clientLagMs: number;
}

async function measureStall(gw: RunningGateway, workerPid: number, body: Buffer): Promise<StallResult> {
  const url = `${gw.url}/v1/chat/completions`;
  const stream = openStream(
    url,
    chat(`[mock tokens=${STREAM_TOKENS} interval-ms=${STREAM_INTERVAL_MS}] Count slowly.`, true),
  );
  const deadline = performance.now() + 10_000;
  while (stream.arrivals.length < 20 && performance.now() < deadline) await sleep(20);
  if (stream.arrivals.length < 20) {
    stream.stop();
    throw new Error(`the unrelated stream did not flow (status ${stream.status()}, ${stream.arrivals.length} events)`);
  }
  await sleep(500);
  const lag = monitorEventLoopDelay({ resolution: 5 });
  lag.enable();
  const cpu0 = { w: readCpuMs(workerPid) ?? 0, m: readCpuMs(gw.pid) ?? 0 };
  const t0 = performance.now();
  const big = await post(url, body, 60_000);
  const cpu1 = { w: readCpuMs(workerPid) ?? 0, m: readCpuMs(gw.pid) ?? 0 };
  const t1 = performance.now() + 300;
  await sleep(300);
  lag.disable();
  stream.stop();
  await stream.ended;
  const gapsIn = (from: number, to: number): { max: number; events: number } => {
    let max = 0;
    let events = 0;
    const a = stream.arrivals;
    for (let i = 1; i < a.length; i++) {
      // A gap counts when it overlaps the window.
      if (a[i]! < from || a[i - 1]! > to) continue;
      max = Math.max(max, a[i]! - a[i - 1]!);
      events++;
    }
    // Nothing after the window's start: the stream stopped (or ended) — the gap runs to the window's end.
    const last = a.at(-1) ?? from;
    if (last < to) max = Math.max(max, to - Math.max(last, from));
    return { max: Math.round(max), events };
  };
  const window = gapsIn(t0, t1);
  return {
    stallMs: window.max,
    quietGapMs: gapsIn(t0 - 500, t0).max,
    big,
    streamEvents: window.events,
    streamStatus: stream.status(),
    workerCpuMs: Math.round(cpu1.w - cpu0.w),
    masterCpuMs: Math.round(cpu1.m - cpu0.m),
    clientLagMs: Math.round(lag.max / 1e6),
  };
}

interface SmallResult extends CannonResult {
  /** CPU of the master and the worker per 2xx answer over the run, ms (steadier than req/s on a shared box). */
  masterCpuMsPerRequest: number;
  workerCpuMsPerRequest: number;
}

async function measureSmall(gw: RunningGateway, workerPid: number, signal: AbortSignal): Promise<SmallResult> {
  const url = `${gw.url}/v1/chat/completions`;
  const body = smallBody();
  const check = await post(url, body, 10_000);
  if (check.status !== 200) throw new Error(`small request answered ${check.status} ${check.error ?? ''}`);
  const options = { url, connections, method: 'POST', body, headers: { 'content-type': 'application/json' }, signal };
  await runCannon({ ...options, durationS: WARMUP_S });
  const cpu0 = { w: readCpuMs(workerPid) ?? 0, m: readCpuMs(gw.pid) ?? 0 };
  const r = await runCannon({ ...options, durationS });
  const cpu1 = { w: readCpuMs(workerPid) ?? 0, m: readCpuMs(gw.pid) ?? 0 };
  const answers = Math.max(1, r.okRps * durationS);
  const per = (ms: number): number => Math.round((ms / answers) * 1000) / 1000;
  return { ...r, masterCpuMsPerRequest: per(cpu1.m - cpu0.m), workerCpuMsPerRequest: per(cpu1.w - cpu0.w) };
}

// ---- the upstream (this file with --upstream) ----------------------------

/** Bodies up to this size are parsed as text for the directive; larger ones are drained, only their ends read. */
const UPSTREAM_PARSE_BYTES = 64 * 1024;

async function serveUpstream(): Promise<void> {
  const frames = FRAMES.openai;
  let answers = 0;
  const server = createServer((req, res) => {
    const head: Buffer[] = [];
    let bytes = 0;
    let last: Buffer = Buffer.alloc(0);
    req.on('data', (c: Buffer) => {
      if (bytes < UPSTREAM_PARSE_BYTES) head.push(c);
      bytes += c.length;
      last = c;
    });
    req.on('end', () => {
      if (req.method === 'GET') {
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(
          JSON.stringify({
            object: 'list',
            data: [{ id: 'graygate-mock', object: 'model', created: 0, owned_by: 'bench' }],
          }),
        );
        return;
      }
      // The head and the last chunk: where the worker puts `stream` and the message text, whatever the body's size.
      const text =
        Buffer.concat(head).toString('latin1') + (bytes > UPSTREAM_PARSE_BYTES ? last.toString('latin1') : '');
      const directive = /\[mock ([^\]]*)\]/.exec(text)?.[1] ?? '';
      const tokens = Number(/tokens=(\d+)/.exec(directive)?.[1] ?? 3);
      const intervalMs = Number(/interval-ms=(\d+)/.exec(directive)?.[1] ?? 0);
      const a: MockAnswer = {
        id: `bench-${++answers}`,
        created: 1_700_000_000,
        model: 'graygate-mock',
        promptTokens: Math.ceil(bytes / 4),
        nl: '\n',
        includeUsage: /"include_usage":\s*true/.test(text),
      };
      if (!/"stream":\s*true/.test(text)) {
        const words = Array.from({ length: tokens }, (_, i) => mockToken(i)).join('');
        res.writeHead(200, { 'content-type': 'application/json' });
        res.end(JSON.stringify(frames.completion(a, words, tokens, 'stop')));
        return;
      }
      res.writeHead(200, { 'content-type': frames.streamContentType, 'cache-control': 'no-cache' });
      res.write(frames.start(a));
      let sent = 0;
      const next = (): void => {
        if (res.destroyed) return;
        if (sent >= tokens) {
          res.end(frames.end(a, tokens, 'stop'));
          return;
        }
        res.write(frames.token(a, mockToken(sent++)));
        if (intervalMs === 0) next();
        else timer = setTimeout(next, intervalMs);
      };
      let timer = setTimeout(next, intervalMs);
      res.on('close', () => clearTimeout(timer));
    });
  });
  server.keepAliveTimeout = 60_000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.send?.({
    type: 'listening',
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`,
    pid: process.pid,
  });
  process.on('disconnect', () => process.exit(0));
}

// ---- run ----------------------------------------------------------------

interface RoundResult {
  round: number;
  build: Build['key'];
  memory?: MemoryResult;
  stall?: StallResult;
  /** The same with one --mib text body. */
  stallText?: StallResult;
  small?: SmallResult;
}

async function main(): Promise<void> {
  const signal = interruptSignal();
  const results: RoundResult[] = [];
  const bigBody = bigTextBody(Math.round(mib * MIB));
  const keys = keysBody();
  const startedAt = new Date();
  process.stdout.write(
    `hop-bodies: ${builds.map((b) => `${b.label} = ${b.root}`).join('; ')}\n` +
      `${rounds} round(s), builds interleaved; memory: ${concurrent} × ${(bigBody.length / 1e6).toFixed(2)} MB (${(bigBody.length / MIB).toFixed(2)} MiB); ` +
      `stall: ${KEYS} keys, ${(keys.length / 1e6).toFixed(2)} MB; small: ${Buffer.byteLength(smallBody())}-byte body, ${connections} connections × ${durationS} s\n`,
  );
  try {
    const mockProcess = forkTracked('bench upstream', fileURLToPath(import.meta.url), ['--upstream'], {});
    const mock = await waitForMessage(mockProcess, { pick: pickListening, timeoutMs: 15_000, signal });
    for (let round = 1; round <= rounds; round++) {
      for (const build of builds) {
        const r: RoundResult = { round, build: build.key };
        process.stderr.write(`round ${round}, ${build.label}:`);
        if (parts.has('small') || parts.has('stall')) {
          const g = await startOne(build, mock.url, signal);
          try {
            if (parts.has('small')) {
              r.small = await measureSmall(g.gw, g.workerPid, signal);
              process.stderr.write(` small ${r.small.okRps} req/s;`);
            }
            if (parts.has('stall')) {
              r.stall = await measureStall(g.gw, g.workerPid, keys);
              r.stallText = await measureStall(g.gw, g.workerPid, bigBody);
              process.stderr.write(` stall ${r.stall.stallMs} ms (text body ${r.stallText.stallMs} ms);`);
            }
          } finally {
            await g.gw.stop();
          }
        }
        if (parts.has('memory')) {
          const g = await startOne(build, mock.url, signal);
          try {
            r.memory = await measureMemory(g.gw, g.workerPid, bigBody, signal);
          } finally {
            await g.gw.stop();
          }
          process.stderr.write(
            ` worker ${r.memory.workerMb.before} → ${r.memory.workerMb.peak} → ${r.memory.workerMb.after} MB`,
          );
        }
        process.stderr.write('\n');
        results.push(r);
      }
    }
    await stopTracked(mockProcess, { graceMs: 2000 });
  } finally {
    await stopAll();
  }
  const report = summarize(results);
  process.stdout.write(report.text);
  const dir = resolve(values['report-dir']);
  mkdirSync(dir, { recursive: true });
  const file = join(dir, `hop-bodies-${startedAt.toISOString().replace(/[:.]/g, '-')}.json`);
  writeFileSync(
    file,
    JSON.stringify(
      {
        startedAt: startedAt.toISOString(),
        builds,
        options: {
          parts: [...parts],
          rounds,
          concurrent,
          mib,
          bigBodyBytes: bigBody.length,
          keys: KEYS,
          keysBodyBytes: keys.length,
          smallBodyBytes: Buffer.byteLength(smallBody()),
          connections,
          durationS,
          logLevel: values['log-level'],
        },
        results,
        summary: report.summary,
      },
      null,
      2,
    ) + '\n',
  );
  process.stdout.write(`\nreport: ${file}\n`);
}

function summarize(results: RoundResult[]): { text: string; summary: Record<string, unknown> } {
  const row = (cells: Array<string | number>, widths: number[]): string =>
    cells.map((c, i) => (i === 0 ? String(c).padEnd(widths[i]!) : String(c).padStart(widths[i]!))).join('') + '\n';
  const status = (a: Answer): string => `${a.status}${a.error === null ? '' : ` ${a.error}`}`;
  const summary: Record<string, Record<string, unknown>> = {};
  for (const b of builds) summary[b.key] = { root: b.root };
  const lines: string[] = [`\nsummary (medians over ${rounds} round(s))`];
  const perBuild = builds.map((b) => ({ b, mine: results.filter((r) => r.build === b.key), text: [] as string[] }));
  let out = '';

  if (parts.has('memory')) {
    out += `\n1. ${concurrent} concurrent ${mib} MiB bodies: RSS in MB, before → peak (sampled every 50 ms; VmHWM) → ${AFTER_MS / 1000} s after → ${LATE_AFTER_MS / 1000} s after → after ${LOADED_S} s of small requests; answers\n`;
    const w1 = [22, 7, 28, 28, 10, 10, 26];
    out += row(
      ['build / round', 'wall', 'worker b→p(hwm)→a→a10→l', 'master b→p(hwm)→a→a10→l', 'wCPU ms', 'mCPU ms', 'answers'],
      w1,
    );
    const f = (x: MemoryResult['workerMb']): string =>
      [`${Math.round(x.before)}`, `${Math.round(x.peak)}(${Math.round(x.hwm)})`, x.after, x.late, x.loaded]
        .map((v) => (typeof v === 'number' ? Math.round(v) : v))
        .join('→');
    for (const r of results) {
      const m = r.memory!;
      out += row(
        [
          `${labelOf(r.build)} #${r.round}`,
          `${(m.wallMs / 1000).toFixed(1)} s`,
          f(m.workerMb),
          f(m.masterMb),
          m.workerCpuMs,
          m.masterCpuMs,
          Object.entries(m.statuses)
            .map(([k, n]) => `${n}×${k}`)
            .join(', '),
        ],
        w1,
      );
    }
    const mem = (m: MemoryResult['workerMb']): string =>
      `${m.before} → ${m.peak} → ${m.after} (10 s: ${m.late}; after load: ${m.loaded}) MB`;
    for (const p of perBuild) {
      const workerMb = medians(p.mine.map((r) => r.memory!.workerMb));
      const masterMb = medians(p.mine.map((r) => r.memory!.masterMb));
      Object.assign(summary[p.b.key]!, { workerMb, masterMb });
      p.text.push(`worker ${mem(workerMb)}; master ${mem(masterMb)}`);
    }
  }

  if (parts.has('stall')) {
    out += `\n2. one SSE stream (a token every ${STREAM_INTERVAL_MS} ms) on the same worker while a big body is POSTed: longest gap between its events\n`;
    const w2 = [22, 14, 10, 10, 34, 10, 10, 12];
    out += row(
      ['build / round', 'body', 'stall ms', 'quiet ms', 'big request', 'wCPU ms', 'mCPU ms', 'client lag'],
      w2,
    );
    for (const r of results) {
      for (const [name, s] of [
        [`${KEYS / 1000}k keys`, r.stall!],
        [`${mib} MiB text`, r.stallText!],
      ] as const) {
        out += row(
          [
            `${labelOf(r.build)} #${r.round}`,
            name,
            s.stallMs,
            s.quietGapMs,
            `${status(s.big)} in ${s.big.ms} ms`,
            s.workerCpuMs,
            s.masterCpuMs,
            `${s.clientLagMs} ms`,
          ],
          w2,
        );
      }
    }
    for (const p of perBuild) {
      const stallMs = {
        median: median(p.mine.map((r) => r.stall!.stallMs)),
        max: Math.max(...p.mine.map((r) => r.stall!.stallMs)),
      };
      const stallTextMs = {
        median: median(p.mine.map((r) => r.stallText!.stallMs)),
        max: Math.max(...p.mine.map((r) => r.stallText!.stallMs)),
      };
      const bigStatus = [...new Set(p.mine.map((r) => status(r.stall!.big)))];
      Object.assign(summary[p.b.key]!, { stallMs, stallTextMs, bigStatus });
      p.text.push(
        `stall ${stallMs.median} ms (max ${stallMs.max}), ${KEYS / 1000}k-key body ${bigStatus.join(' / ')}; text-body stall ${stallTextMs.median} ms (max ${stallTextMs.max})`,
      );
    }
  }

  if (parts.has('small')) {
    out += `\n3. small POST /v1/chat/completions (${Buffer.byteLength(smallBody())} bytes, 3-token answer), ${connections} connections × ${durationS} s\n`;
    const w3 = [22, 12, 10, 10, 10, 10, 20];
    out += row(['build / round', '2xx req/s', 'p50 ms', 'p99 ms', 'non-2xx', 'errors', 'CPU ms/req m / w'], w3);
    for (const r of results)
      out += row(
        [
          `${labelOf(r.build)} #${r.round}`,
          r.small!.okRps,
          r.small!.p50,
          r.small!.p99,
          r.small!.non2xx,
          r.small!.errors,
          `${r.small!.masterCpuMsPerRequest} / ${r.small!.workerCpuMsPerRequest}`,
        ],
        w3,
      );
    for (const p of perBuild) {
      const smallRps = { median: median(p.mine.map((r) => r.small!.okRps)), rounds: p.mine.map((r) => r.small!.okRps) };
      const smallCpuMsPerRequest = {
        master: median(p.mine.map((r) => r.small!.masterCpuMsPerRequest)),
        worker: median(p.mine.map((r) => r.small!.workerCpuMsPerRequest)),
      };
      Object.assign(summary[p.b.key]!, { smallRps, smallCpuMsPerRequest });
      p.text.push(
        `small ${smallRps.median} req/s, CPU ms/request master ${smallCpuMsPerRequest.master} worker ${smallCpuMsPerRequest.worker}`,
      );
    }
  }

  for (const p of perBuild) lines.push(`  ${p.b.label.padEnd(20)} ${p.text.join('; ')}`);
  if (parts.has('small') && builds.length === 2) {
    // Per round too: each round's two runs sat next to each other in time.
    const rps = (round: number, key: Build['key']): number =>
      results.find((r) => r.round === round && r.build === key)?.small?.okRps ?? NaN;
    const perRound = Array.from(
      { length: rounds },
      (_, i) => Math.round((rps(i + 1, 'current') / rps(i + 1, 'baseline')) * 1000) / 1000,
    );
    const medianOfRatios = median(perRound);
    const cur = summary['current']!['smallRps'] as { median: number };
    const base = summary['baseline']!['smallRps'] as { median: number };
    const ofMedians = Math.round((cur.median / base.median) * 1000) / 1000;
    summary['smallRatio'] = { ofMedians, medianOfRatios, perRound };
    lines.push(
      `  small req/s current ÷ baseline: ${ofMedians} (median of the rounds' ratios ${medianOfRatios}; per round: ${perRound.join(', ')})`,
    );
  }
  return { text: out + lines.join('\n') + '\n', summary };
}

function medians(xs: Array<MemoryResult['workerMb']>): MemoryResult['workerMb'] {
  return {
    before: median(xs.map((x) => x.before)),
    peak: median(xs.map((x) => x.peak)),
    hwm: median(xs.map((x) => x.hwm)),
    after: median(xs.map((x) => x.after)),
    late: median(xs.map((x) => x.late)),
    loaded: median(xs.map((x) => x.loaded)),
  };
}

function labelOf(key: Build['key']): string {
  return builds.find((b) => b.key === key)?.label ?? key;
}

if (process.argv.includes('--upstream')) await serveUpstream();
else {
  await main();
  process.exit(0);
}
