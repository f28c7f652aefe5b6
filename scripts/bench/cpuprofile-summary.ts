import { basename } from 'node:path';
import { benchArgs, readJsonFile } from './args.js';
import { checkCounts } from './counts.js';

// Where a process's CPU went, from a V8 .cpuprofile (`node --cpu-prof`, see
// `npm run loadtest -- compare --sse --cpu-prof-dir DIR`; issue 10):
// self and total time per function and per file, top N, and a breakdown into
// the buckets the issue asks about (http parser, streams, http-proxy-3, pino,
// prom-client, JSON, undici, timers, AbortSignal, GC, syscalls…).
// Usage: node dist/scripts/bench/cpuprofile-summary.js FILE.cpuprofile… [--top 40] [--json]

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}

interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  children?: number[];
}

interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  /** µs since the previous sample, one per sample. */
  timeDeltas: number[];
}

export interface Row {
  name: string;
  selfMs: number;
  totalMs: number;
}

export interface Summary {
  file: string;
  /** All sampled time, idle included, ms. */
  sampledMs: number;
  /** Sampled time minus (idle), ms: what the process really spent on CPU (as V8 saw it). */
  busyMs: number;
  buckets: Row[];
  functions: Row[];
  files: Row[];
}

// Ordered: the first rule that matches a frame names its bucket (issue 10's list).
const BUCKETS: Array<[string, (f: CallFrame) => boolean]> = [
  ['idle', (f) => f.functionName === '(idle)'],
  ['GC', (f) => f.functionName === '(garbage collector)'],
  ['(program): V8/native, unattributed', (f) => f.functionName === '(program)'],
  ['http-proxy-3', (f) => f.url.includes('/node_modules/http-proxy-3/')],
  [
    'pino logging',
    (f) =>
      /\/node_modules\/(pino|sonic-boom|fast-redact|thread-stream|quick-format-unescaped|@pinojs|fast-safe-stringify|safe-stable-stringify)/.test(
        f.url,
      ),
  ],
  ['prom-client', (f) => /\/node_modules\/(prom-client|tdigest|bintrees)\//.test(f.url)],
  ['undici', (f) => f.url.includes('/node_modules/undici/') || f.url.startsWith('node:internal/deps/undici')],
  ['zod', (f) => f.url.includes('/node_modules/zod/')],
  ['other npm packages', (f) => f.url.includes('/node_modules/')],
  ['JSON.parse/stringify', (f) => f.url === '' && (f.functionName === 'parse' || f.functionName === 'stringify')],
  [
    'socket writes (native)',
    (f) =>
      f.url === '' &&
      /^(writev|writeBuffer|writeString|writeUtf8String|writeLatin1String|writeAsciiString|writeUcs2String|shutdown)$/.test(
        f.functionName,
      ),
  ],
  // node's llhttp runs inside socketOnData/parser.execute (native, no frame of its own); undici's is WebAssembly.
  [
    'http parser',
    (f) =>
      f.url === 'node:_http_common' ||
      f.url.startsWith('wasm://') ||
      (f.url === '' && /^(execute|finish|consume|unconsume|initialize)$/.test(f.functionName)),
  ],
  [
    'module loading (start-up)',
    (f) =>
      /^node:internal\/(modules|bootstrap)\//.test(f.url) ||
      (f.url === '' &&
        /^(compileFunction|ModuleWrap|evaluate|link|instantiate|internalModuleStat|internalModuleReadJSON|readFileUtf8|openFileHandle|fstat|lstat|read|close|FSReqCallback)$/.test(
          f.functionName,
        )),
  ],
  ['node:http server/client/outgoing', (f) => /^node:_http_(server|client|outgoing|incoming|agent)$/.test(f.url)],
  ['stream machinery', (f) => f.url.startsWith('node:internal/streams/') || f.url === 'node:stream'],
  ['net / stream_base', (f) => f.url === 'node:net' || f.url === 'node:internal/stream_base_commons'],
  ['timers', (f) => f.url === 'node:internal/timers' || f.url === 'node:timers'],
  [
    'AbortSignal / EventTarget',
    (f) => f.url === 'node:internal/abort_controller' || f.url === 'node:internal/event_target',
  ],
  ['EventEmitter', (f) => f.url === 'node:events' || f.url === 'node:internal/events/abort_listener'],
  [
    'process.nextTick / microtasks',
    (f) =>
      f.url === 'node:internal/process/task_queues' ||
      f.functionName === '(microtasks)' ||
      f.functionName === 'runMicrotasks',
  ],
  [
    'Buffer / string encoding',
    (f) => f.url === 'node:buffer' || f.url === 'node:internal/buffer' || f.url === 'node:string_decoder',
  ],
  ['crypto (randomUUID/randomBytes)', (f) => f.url.startsWith('node:internal/crypto/')],
  ['graygate master', (f) => f.url.includes('/dist/master/')],
  ['graygate worker', (f) => f.url.includes('/dist/worker/')],
  ['graygate shared', (f) => f.url.includes('/dist/shared/')],
  ['other node internals', (f) => f.url.startsWith('node:')],
  ['other native', (f) => f.url === ''],
];

function bucketOf(f: CallFrame): string {
  for (const [name, test] of BUCKETS) if (test(f)) return name;
  return 'other';
}

/** A short, stable name for a file: package-relative for node_modules, from dist/ for ours. */
function fileOf(f: CallFrame): string {
  if (f.functionName === '(idle)') return '(idle)';
  if (f.url === '') return '(native)';
  const nm = f.url.lastIndexOf('/node_modules/');
  if (nm !== -1) return f.url.slice(nm + '/node_modules/'.length);
  const dist = f.url.lastIndexOf('/dist/');
  if (dist !== -1) return f.url.slice(dist + 1);
  return f.url;
}

function functionOf(f: CallFrame): string {
  const name = f.functionName === '' ? '(anonymous)' : f.functionName;
  return f.url === '' ? name : `${name} ${fileOf(f)}:${f.lineNumber + 1}`;
}

export function summarize(file: string, profile: CpuProfile, top: number): Summary {
  const byId = new Map<number, ProfileNode>();
  const parent = new Map<number, number>();
  for (const n of profile.nodes) {
    byId.set(n.id, n);
    for (const c of n.children ?? []) parent.set(c, n.id);
  }
  const self = { fn: new Map<string, number>(), file: new Map<string, number>(), bucket: new Map<string, number>() };
  const total = { fn: new Map<string, number>(), file: new Map<string, number>(), bucket: new Map<string, number>() };
  const add = (m: Map<string, number>, k: string, us: number): void => void m.set(k, (m.get(k) ?? 0) + us);
  let sampledUs = 0;
  let idleUs = 0;
  for (let i = 0; i < profile.samples.length; i++) {
    // timeDeltas[i] is the gap before sample i; attribute it to that sample (V8 DevTools does the same).
    const us = Math.max(0, profile.timeDeltas[i] ?? 0);
    sampledUs += us;
    const leaf = byId.get(profile.samples[i]!);
    if (leaf === undefined) continue;
    if (leaf.callFrame.functionName === '(idle)') idleUs += us;
    add(self.fn, functionOf(leaf.callFrame), us);
    add(self.file, fileOf(leaf.callFrame), us);
    add(self.bucket, bucketOf(leaf.callFrame), us);
    // Total: each function/file/bucket once per sample, however often it recurses on the stack.
    const seen = { fn: new Set<string>(), file: new Set<string>(), bucket: new Set<string>() };
    for (let id: number | undefined = leaf.id; id !== undefined; id = parent.get(id)) {
      const f = byId.get(id)!.callFrame;
      if (f.functionName === '(root)') break;
      for (const [kind, key] of [
        ['fn', functionOf(f)],
        ['file', fileOf(f)],
        ['bucket', bucketOf(f)],
      ] as const) {
        if (seen[kind].has(key)) continue;
        seen[kind].add(key);
        add(total[kind], key, us);
      }
    }
  }
  const rows = (kind: 'fn' | 'file' | 'bucket', n: number): Row[] =>
    [...self[kind].keys(), ...[...total[kind].keys()].filter((k) => !self[kind].has(k))]
      .map((name) => ({
        name,
        selfMs: (self[kind].get(name) ?? 0) / 1000,
        totalMs: (total[kind].get(name) ?? 0) / 1000,
      }))
      .sort((a, b) => b.selfMs - a.selfMs || b.totalMs - a.totalMs)
      .slice(0, n);
  return {
    file,
    sampledMs: sampledUs / 1000,
    busyMs: (sampledUs - idleUs) / 1000,
    buckets: rows('bucket', BUCKETS.length + 1),
    functions: rows('fn', top),
    files: rows('file', top),
  };
}

function render(s: Summary, top: number): string {
  const pct = (ms: number): string => `${((ms / s.busyMs) * 100).toFixed(1)}%`;
  const table = (title: string, rows: Row[], isBusyOnly: boolean): string[] => [
    title,
    `${'self ms'.padStart(9)} ${'self'.padStart(6)} ${'total'.padStart(6)}  name`,
    ...rows
      .filter((r) => !isBusyOnly || r.name !== 'idle')
      .map(
        (r) =>
          `${r.selfMs.toFixed(0).padStart(9)} ${pct(r.selfMs).padStart(6)} ${pct(r.totalMs).padStart(6)}  ${r.name}`,
      ),
    '',
  ];
  return [
    `== ${basename(s.file)}: sampled ${(s.sampledMs / 1000).toFixed(1)} s, busy (not idle) ${(s.busyMs / 1000).toFixed(1)} s; percentages are of busy time`,
    '',
    ...table("by bucket (self: time in the bucket's own frames; total: with everything they called)", s.buckets, true),
    ...table(
      `top ${top} functions by self time`,
      s.functions.filter((r) => r.name !== '(idle)'),
      false,
    ),
    ...table(
      `top ${top} files by self time`,
      s.files.filter((r) => r.name !== '(idle)'),
      false,
    ),
  ].join('\n');
}

const { values, positionals: files } = benchArgs(
  {
    allowPositionals: true,
    options: { top: { type: 'string', default: '40' }, json: { type: 'boolean', default: false } },
  },
  'FILE.cpuprofile…',
);
const top = Number(values.top);
checkCounts({ top }, { atLeast: 1 });
const isJson = values.json;
const summaries = files.map((f) => summarize(f, readJsonFile(f) as CpuProfile, top));
process.stdout.write(
  isJson ? JSON.stringify(summaries, null, 2) + '\n' : summaries.map((s) => render(s, top)).join('\n') + '\n',
);
