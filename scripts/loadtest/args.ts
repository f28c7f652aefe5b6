import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { MAX_TIMER_MS } from '../../shared/defaults.js';
import { DEFAULT_REPORT_DIR } from './paths.js';

// `npm run loadtest -- <scenario> [flags]` (SPEC §9, issue 6). Unknown flags
// are an error, so a typo never silently runs the default load.

export const SCENARIOS = ['capacity', 'backlog', 'streams', 'swap', 'compare', 'canary'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];
/**
 * compare --sse workloads (issue 10): 300 streams at 15k events/s, 40 streams at rest, GET /v1/models; `responses` (by
 * name only) is the loaded workload as Responses API streams (POST /v1/responses, relayed unchanged and numbered).
 */
export const SSE_WORKLOADS = ['loaded', 'rest', 'small', 'responses'] as const;
export type SseWorkload = (typeof SSE_WORKLOADS)[number];
/**
 * compare --sse paths: straight to the upstream, nginx, a minimal
 * node:http proxy, graygate, graygate from --baseline-root.
 */
export const SSE_PATHS = [
  'direct',
  'nginx',
  'node',
  'graygate',
  'baseline',
  'onehop',
  'rawbody',
  'rawlean',
  'mux',
  'node2',
  'direct-streams',
  'baseline-direct-streams',
] as const;
export type SsePathKey = (typeof SSE_PATHS)[number];
/**
 * Paths `compare --sse` runs only when `--paths` names them: the prototypes (scripts/loadtest/onehop-prototype.ts,
 * rawbody-proxy.ts, mux-prototype.ts), node2 (two node:http pipe proxies chained: two naive hops, the control of
 * mux), and graygate with the experimental limits.directStreams.
 */
const BY_NAME_ONLY: ReadonlySet<string> = new Set([
  'onehop',
  'rawbody',
  'rawlean',
  'mux',
  'node2',
  'direct-streams',
  'baseline-direct-streams',
]);

/**
 * canary --cases (issue 13): a canary failing 25 % of requests, one whose first token is 400 ms later, one equal to
 * its baseline.
 */
export const CANARY_CASES = ['error25', 'slow400', 'equal'] as const;
export type CanaryCase = (typeof CANARY_CASES)[number];

/**
 * Upper bounds of the counts, so that a value this machine cannot run is a usage error (exit 2) rather than a locked
 * or crashed run. Every connection or stream is an open file here (autocannon's socket, the SSE client's) and another
 * in graygate's master, and autocannon opens all of its connections at once, synchronously: `--connections 1e9` ran
 * out of memory after 145 s, `--streams 1e12` failed with exit 3 once processes had started. 20,000 is this project's
 * machine's open-file limit (`ulimit -n`) and more than twice the largest run in docs/BENCHMARKS.md (9,000 streams).
 */
const MAX_CONNECTIONS = 20_000;
/**
 * canary --rate: each request is started by this one process's event loop, a few thousand a second on the 2 cores
 * this was measured on; 100,000/s is above what any box here can start, and above it a run only queues.
 */
const MAX_RATE = 100_000;
/** --tokens per answer: at the mock's pace a stream of more never ends within any run (1e9 ran for ever). */
const MAX_TOKENS = 1_000_000;
/** compare --sse --rounds: each round runs every path and workload, ~1 min; more is not a run anyone waits for. */
const MAX_ROUNDS = 100;
/** graygate's log levels (pino's); another failed only once graygate had been started (exit 3). */
const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;

export interface Args {
  scenario: ScenarioName;
  /** --duration, seconds of load (per step for capacity). Undefined: the scenario's default. */
  durationS: number | undefined;
  /** --connections. Undefined: the scenario's default (capacity: a single step of this size). */
  connections: number | undefined;
  /** --json: print the JSON report on stdout instead of the tables. */
  isJson: boolean;
  /** --assert: exit 1 when a target is missed. */
  isAssert: boolean;
  /** --report-dir, default reports/. */
  reportDir: string;
  /** --log-level of graygate's processes; default info (the per-request log line is part of the cost). */
  logLevel: string;
  /** capacity: --steps 10,50,100 (connections per step). */
  steps: number[] | undefined;
  /** capacity: --p99-ms, default 100. */
  p99Ms: number;
  /** capacity, compare: --instances per version, default 1. */
  instances: number;
  /** backlog: --naive adds (a) http-proxy-3 and (c) pipe() proxies beside graygate. */
  isNaive: boolean;
  /** backlog: --worker-delay-ms, default 1000 (the incident's 1 s worker). */
  workerDelayMs: number;
  /** backlog: --recovery-limit-s, default 60: longest wait for a fresh request after the load. */
  recoveryLimitS: number;
  /** backlog: --max-queue (graygate maxQueuePerVersion); undefined: graygate's default. */
  maxQueue: number | undefined;
  /** backlog: --queue-timeout-ms; undefined: graygate's default. */
  queueTimeoutMs: number | undefined;
  /**
   * streams: --streams concurrent (default 1000; with --hold the count to ramp
   * to); compare --sse: streams of the loaded workload (default 300).
   */
  streams: number | undefined;
  /** streams, compare --sse: --tokens per stream (streams default 100; --hold: enough to outlast the hold). */
  tokens: number | undefined;
  /** streams, compare --sse: --token-interval-ms between tokens (default 20; --hold: 2000). */
  tokenIntervalMs: number | undefined;
  /** compare: --sse runs the streaming workloads of issue 10 instead of the 20-token request compare. */
  isSse: boolean;
  /** compare --sse: --rounds of every path, interleaved (default 3). */
  rounds: number;
  /** compare --sse: --workloads to run, subset of loaded,rest,small (default all). */
  workloads: SseWorkload[];
  /** compare --sse: --paths to run, subset of SSE_PATHS (default all available but the onehop prototype). */
  paths: SsePathKey[];
  /** --graygate-root: the graygate build to run (its dist/), default this tree. */
  graygateRoot: string | undefined;
  /** --baseline-root: a second graygate build run beside the first in the same run, e.g. /work/before. */
  baselineRoot: string | undefined;
  /** --node-flags: node flags for graygate's master (workers inherit them), e.g. --max-semi-space-size=1. */
  nodeFlags: string[];
  /** --baseline-node-flags: the same for the --baseline-root build (the same tree with and without a flag). */
  baselineNodeFlags: string[];
  /** --cpu-prof-dir: graygate's master and workers run with --cpu-prof, profiles written there on exit. */
  cpuProfDir: string | undefined;
  /**
   * --memory-probe: graygate's processes preload a SIGUSR2 handler that dumps
   * process.memoryUsage() (and, with --heap-snapshot, a heap snapshot).
   */
  isMemoryProbe: boolean;
  /** --heap-snapshot: with --memory-probe, also write a V8 heap snapshot of each worker at the hold. */
  isHeapSnapshot: boolean;
  /** streams: --hold ramps to --streams through graygate only and holds them. */
  isHold: boolean;
  /**
   * streams --hold --direct-streams: graygate with limits.directStreams, and each stream on a kept-alive connection
   * that asked GET /v1/models first, so that its worker holds the connection and the stream is an IPC call.
   */
  isDirectStreams: boolean;
  /** streams --hold: --ramp-s to open all streams (default 30). */
  rampS: number;
  /** compare --sse: unrecorded seconds before each streaming window (default 1). */
  warmS: number;
  /** streams --hold: --hold-s at the full count (default 20). */
  holdS: number;
  /** streams --hold: --max-sockets, graygate maxSocketsPerWorker (default max(1024, streams)). */
  maxSockets: number | undefined;
  /** streams --hold: --upstream-connections, the version's upstream.maxConnections (default graygate's own). */
  upstreamConnections: number | undefined;
  /** canary: --cases to run, subset of error25,slow400,equal (default all). */
  cases: CanaryCase[];
  /** canary: --rate, requests per second started open-loop (default 100). */
  rate: number;
}

export const USAGE = `usage: npm run loadtest -- <scenario> [flags]

scenarios:
  capacity   step up connections against a chat completion through graygate
  backlog    the slow-worker flood (400 connections, 1 s worker, 1 socket); --naive adds the naive proxies
  streams    N concurrent SSE streams through graygate and straight to the upstream
  swap       load while v2 is deployed twice and rolled back once
  compare    direct to a worker vs through graygate vs through nginx (when installed)
  canary     issue 13: time for a canary (steps 10/50/100, 3 s each) to be rolled back when its
             upstream fails 25 % of requests or is 400 ms slower to the first token, or promoted
             when it is equal to its baseline, at 100 req/s

flags:
  --duration S          whole seconds of load, ≥ 1 (capacity: per step)
  --connections N       concurrent connections, 1 to ${MAX_CONNECTIONS} (capacity: one step of N)
  --json                print the JSON report on stdout
  --assert              exit 1 when a target is missed
  --report-dir DIR      where reports go (default reports/)
  --log-level LEVEL     graygate LOG_LEVEL, one of ${LOG_LEVELS.join(', ')} (default info)
  --steps 10,50,…       capacity: connection steps
  --p99-ms MS           capacity: p99 bound of a passing step (default 100)
  --instances N         capacity, compare --sse, streams: workers per version (default 1);
                        --workers is the same
  --naive               backlog: also run (a) http-proxy-3 and (c) pipe() proxies, side by side
  --worker-delay-ms MS  backlog: the slow worker's answer time (default 1000)
  --recovery-limit-s S  backlog: give up waiting for a fresh answer after S (default 60)
  --max-queue N         backlog: graygate maxQueuePerVersion (default graygate's)
  --queue-timeout-ms MS backlog: graygate queueTimeoutMs (default graygate's)
  --streams N           streams: concurrent streams (default 1000, at most ${MAX_CONNECTIONS});
                        compare --sse: loaded workload (300)
  --tokens N            streams: tokens per stream (default 100)
  --token-interval-ms MS streams: time between tokens (default 20; --hold 2000)
  --sse                 compare: issue 10's streaming workloads (CPU per event vs the upstream's,
                        added first token, RSS) plus GET /v1/models, interleaved over --rounds
  --rounds N            compare --sse: interleaved rounds (default 3)
  --workloads a,b       compare --sse: any of ${SSE_WORKLOADS.join(',')} (default all but
                        responses: the loaded workload as POST /v1/responses streams)
  --paths a,b           compare --sse: any of ${SSE_PATHS.join(',')} (default all available but onehop,
                        a prototype of a one-hop design, not graygate: scripts/loadtest/onehop-prototype.ts,
                        rawbody and rawlean (rawbody-proxy.ts), mux, a prototype of a multiplexed
                        master↔worker hop (mux-prototype.ts), node2, two node:http pipe proxies chained,
                        and direct-streams, this graygate with limits.directStreams (baseline-direct-streams:
                        the --baseline-root build with it); give it --warm-s 10 or
                        more, so that its 300 connections have reached the worker)
  --graygate-root DIR   backlog, streams, compare --sse: run the graygate build in DIR (its dist/) instead of this tree
  --baseline-root DIR   compare --sse, backlog: also run the build in DIR as "graygate (before)"
  --node-flags="F…"     compare --sse, streams --hold: node flags for graygate's master and workers
                        (e.g. --node-flags=--max-semi-space-size=1); the mock, the proxies and the load run without
  --baseline-node-flags="F…"  compare --sse: the same for the --baseline-root build (A/B of a flag: the same
                        tree as both roots)
  --cpu-prof-dir DIR    streams --hold, compare --sse: graygate's master and workers, and the streaming workloads'
                        node proxy, run with --cpu-prof; profiles in DIR/<label>/
  --memory-probe        graygate's processes dump process.memoryUsage() on SIGUSR2 (streams --hold
                        does so at the hold); --heap-snapshot adds a heap snapshot of each worker
  --hold                streams: ramp to --streams through graygate and hold them (no direct phase)
  --direct-streams      streams --hold: with limits.directStreams, each stream on a kept-alive connection
                        that first asked GET /v1/models (so the stream is an IPC call on a held connection)
  --ramp-s S            streams --hold: seconds to open all streams (default 30)
  --warm-s S            compare --sse: unrecorded seconds before each streaming window (default 1)
  --hold-s S            streams --hold: seconds to hold the full count (default 20)
  --max-sockets N       streams --hold: graygate maxSocketsPerWorker (default max(1024, streams))
  --upstream-connections N  streams --hold: upstream.maxConnections (default graygate's own)
  --workers N           alias of --instances
  --cases a,b           canary: any of ${CANARY_CASES.join(',')} (default all)
  --rate R              canary: streamed chat completions started per second (default 100, at most ${MAX_RATE})
                        (canary also takes --duration S, the longest wait for a verdict per
                        case, default 60; --tokens, default 5; --token-interval-ms, default 10)
`;

/** Node flags given as one argument, split at spaces; each must be a flag. */
function flags(raw: string | undefined): string[] {
  const out = (raw ?? '').split(' ').filter((f) => f !== '');
  for (const f of out) if (!f.startsWith('-')) throw new Error(`--node-flags: ${f} is not a node flag`);
  return out;
}

function list<T extends string>(name: string, raw: string | undefined, allowed: readonly T[]): T[] {
  if (raw === undefined) return [...allowed];
  const items = raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s !== '');
  const bad = items.filter((s) => !(allowed as readonly string[]).includes(s));
  if (items.length === 0 || bad.length > 0)
    throw new Error(`--${name}: a comma-separated list of ${allowed.join(', ')}, got "${raw}"`);
  return items as T[];
}

function positive(name: string, raw: string | undefined, fallback: number): number;
function positive(name: string, raw: string | undefined, fallback: undefined): number | undefined;
function positive(name: string, raw: string | undefined, fallback: number | undefined): number | undefined {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: must be a number ≥ 0, got "${raw}"`);
  return n;
}

/** A graygate tree whose build is there (its dist/master/main.js). */
function buildRoot(name: string, raw: string | undefined): string | undefined {
  if (raw === undefined) return undefined;
  if (!existsSync(join(raw, 'dist', 'master', 'main.js')))
    throw new Error(`--${name}: ${raw} has no dist/master/main.js (build it there with npm run build)`);
  return raw;
}

/** A number from `min` to `max`, fractions allowed (a rate). */
function within(name: string, raw: string | undefined, fallback: number, min: number, max: number): number {
  const n = positive(name, raw, fallback);
  if (n < min || n > max) throw new Error(`--${name}: must be from ${min} to ${max}, got "${raw}"`);
  return n;
}

/**
 * A whole number from `min` to `max`. Counts are whole: autocannon opened 2 connections for `--connections 1.5`
 * and the report said 1.5.
 */
function between(name: string, raw: string | undefined, fallback: number, min: number, max: number): number;
function between(
  name: string,
  raw: string | undefined,
  fallback: undefined,
  min: number,
  max: number,
): number | undefined;
function between(
  name: string,
  raw: string | undefined,
  fallback: number | undefined,
  min: number,
  max: number,
): number | undefined {
  const n = positive(name, raw, undefined);
  if (n === undefined) return fallback;
  if (!Number.isInteger(n) || n < min || n > max)
    throw new Error(`--${name}: must be a whole number from ${min} to ${max}, got "${raw}"`);
  return n;
}

export function parseLoadtestArgs(argv: string[]): Args {
  const { values, positionals } = parseArgs({
    args: argv,
    allowPositionals: true,
    strict: true,
    options: {
      duration: { type: 'string' },
      connections: { type: 'string' },
      json: { type: 'boolean', default: false },
      assert: { type: 'boolean', default: false },
      'report-dir': { type: 'string' },
      'log-level': { type: 'string' },
      steps: { type: 'string' },
      'p99-ms': { type: 'string' },
      instances: { type: 'string' },
      naive: { type: 'boolean', default: false },
      'worker-delay-ms': { type: 'string' },
      'recovery-limit-s': { type: 'string' },
      'max-queue': { type: 'string' },
      'queue-timeout-ms': { type: 'string' },
      streams: { type: 'string' },
      tokens: { type: 'string' },
      'token-interval-ms': { type: 'string' },
      sse: { type: 'boolean', default: false },
      rounds: { type: 'string' },
      workloads: { type: 'string' },
      paths: { type: 'string' },
      'graygate-root': { type: 'string' },
      'baseline-root': { type: 'string' },
      'node-flags': { type: 'string' },
      'baseline-node-flags': { type: 'string' },
      'cpu-prof-dir': { type: 'string' },
      'memory-probe': { type: 'boolean', default: false },
      'heap-snapshot': { type: 'boolean', default: false },
      hold: { type: 'boolean', default: false },
      'direct-streams': { type: 'boolean', default: false },
      'ramp-s': { type: 'string' },
      'warm-s': { type: 'string' },
      'hold-s': { type: 'string' },
      'max-sockets': { type: 'string' },
      'upstream-connections': { type: 'string' },
      workers: { type: 'string' },
      cases: { type: 'string' },
      rate: { type: 'string' },
    },
  });
  const scenario = positionals[0];
  if (positionals.length !== 1 || !(SCENARIOS as readonly string[]).includes(scenario ?? '')) {
    throw new Error(
      `expected one scenario (${SCENARIOS.join(', ')}), got ${positionals.length === 0 ? 'none' : positionals.join(' ')}`,
    );
  }
  const steps = values.steps?.split(',').map((s) => Number(s.trim() === '' ? NaN : s));
  if (steps !== undefined && steps.some((s) => !Number.isInteger(s) || s < 1 || s > MAX_CONNECTIONS))
    throw new Error(`--steps: a comma-separated list of whole connection counts from 1 to ${MAX_CONNECTIONS}`);
  const connections = between('connections', values.connections, undefined, 1, MAX_CONNECTIONS);
  const logLevel = values['log-level'] ?? 'info';
  if (!(LOG_LEVELS as readonly string[]).includes(logLevel))
    throw new Error(`--log-level: one of ${LOG_LEVELS.join(', ')}, got "${logLevel}"`);
  if (values['direct-streams'] === true && !(scenario === 'streams' && values.hold === true))
    throw new Error('--direct-streams: only with streams --hold (compare --sse takes --paths direct-streams)');
  // A flag is refused where the scenario would ignore it: `capacity --graygate-root /work/before` measured this tree
  // without a word (a read of BENCHMARKS' commands against the code), and `streams --duration 60` or `compare
  // --rounds 5` (without --sse) ran as if neither had been given. Every flag but --json, --assert, --report-dir and
  // --log-level is some scenarios' only.
  const isHold = scenario === 'streams' && values.hold === true;
  const isSse = scenario === 'compare' && values.sse === true;
  const is = (...names: ScenarioName[]): boolean => (names as string[]).includes(scenario ?? '');
  const onlyIn: Array<[string, boolean, string]> = [
    ['duration', is('capacity', 'backlog', 'swap', 'compare', 'canary'), 'capacity, backlog, swap, compare, canary'],
    ['connections', is('capacity', 'backlog', 'swap', 'compare'), 'capacity, backlog, swap, compare'],
    ['steps', is('capacity'), 'capacity'],
    ['p99-ms', is('capacity'), 'capacity'],
    ['naive', is('backlog'), 'backlog'],
    ['worker-delay-ms', is('backlog'), 'backlog'],
    ['recovery-limit-s', is('backlog'), 'backlog'],
    ['max-queue', is('backlog'), 'backlog'],
    ['queue-timeout-ms', is('backlog'), 'backlog'],
    ['streams', is('streams') || isSse, 'streams, compare --sse'],
    ['tokens', is('streams', 'canary') || isSse, 'streams, compare --sse, canary'],
    ['token-interval-ms', is('streams', 'canary') || isSse, 'streams, compare --sse, canary'],
    ['sse', is('compare'), 'compare'],
    ['rounds', isSse, 'compare --sse'],
    ['workloads', isSse, 'compare --sse'],
    ['paths', isSse, 'compare --sse'],
    ['warm-s', isSse, 'compare --sse'],
    ['hold', is('streams'), 'streams'],
    ['ramp-s', isHold, 'streams --hold'],
    ['hold-s', isHold, 'streams --hold'],
    ['max-sockets', isHold, 'streams --hold'],
    ['upstream-connections', isHold, 'streams --hold'],
    ['memory-probe', isHold, 'streams --hold'],
    ['heap-snapshot', isHold, 'streams --hold'],
    ['cases', is('canary'), 'canary'],
    ['rate', is('canary'), 'canary'],
    ['graygate-root', is('backlog', 'streams') || isSse, 'backlog, streams, compare --sse'],
    ['baseline-root', is('backlog') || isSse, 'backlog, compare --sse'],
    ['cpu-prof-dir', isHold || isSse, 'streams --hold, compare --sse'],
    ['node-flags', isHold || isSse, 'streams --hold, compare --sse'],
    ['baseline-node-flags', isSse, 'compare --sse'],
    ['instances', is('capacity', 'streams') || isSse, 'capacity, streams, compare --sse'],
    ['workers', is('capacity', 'streams') || isSse, 'capacity, streams, compare --sse'],
  ];
  for (const [flag, isTaken, where] of onlyIn) {
    const value = values[flag as keyof typeof values];
    if (value !== undefined && value !== false && !isTaken)
      throw new Error(`--${flag}: only with ${where} (${scenario} would ignore it)`);
  }
  return {
    scenario: scenario as ScenarioName,
    // Whole seconds, at least 1: autocannon checks its end once a second, so `--duration 1e-9` ran 1 s and 2.5 ran 3.
    durationS: between('duration', values.duration, undefined, 1, Math.floor(MAX_TIMER_MS / 1000)),
    connections,
    isJson: values.json === true,
    isAssert: values.assert === true,
    reportDir: values['report-dir'] ?? DEFAULT_REPORT_DIR,
    logLevel,
    steps,
    p99Ms: positive('p99-ms', values['p99-ms'], 100),
    // The config's bound on a version's instances.
    instances: between(
      values.instances === undefined ? 'workers' : 'instances',
      values.instances ?? values.workers,
      1,
      1,
      64,
    ),
    isNaive: values.naive === true,
    workerDelayMs: positive('worker-delay-ms', values['worker-delay-ms'], 1000),
    recoveryLimitS: positive('recovery-limit-s', values['recovery-limit-s'], 60),
    // graygate's own rules for limits.maxQueuePerVersion and queueTimeoutMs: otherwise refused once it had started.
    maxQueue: between('max-queue', values['max-queue'], undefined, 0, Number.MAX_SAFE_INTEGER),
    queueTimeoutMs: between('queue-timeout-ms', values['queue-timeout-ms'], undefined, 1, MAX_TIMER_MS),
    streams: between('streams', values.streams, undefined, 1, MAX_CONNECTIONS),
    tokens: between('tokens', values.tokens, undefined, 1, MAX_TOKENS),
    tokenIntervalMs: positive('token-interval-ms', values['token-interval-ms'], undefined),
    isSse: values.sse === true,
    rounds: between('rounds', values.rounds, 3, 1, MAX_ROUNDS),
    workloads: list('workloads', values.workloads, SSE_WORKLOADS).filter(
      (w) => values.workloads !== undefined || w !== 'responses',
    ),
    paths: list('paths', values.paths, SSE_PATHS).filter((p) => values.paths !== undefined || !BY_NAME_ONLY.has(p)),
    graygateRoot: buildRoot('graygate-root', values['graygate-root']),
    baselineRoot: buildRoot('baseline-root', values['baseline-root']),
    nodeFlags: flags(values['node-flags']),
    baselineNodeFlags: flags(values['baseline-node-flags']),
    cpuProfDir: values['cpu-prof-dir'],
    isMemoryProbe: values['memory-probe'] === true || values['heap-snapshot'] === true,
    isHeapSnapshot: values['heap-snapshot'] === true,
    isHold: values.hold === true,
    isDirectStreams: values['direct-streams'] === true,
    rampS: positive('ramp-s', values['ramp-s'], 30),
    warmS: positive('warm-s', values['warm-s'], 1),
    holdS: positive('hold-s', values['hold-s'], 20),
    maxSockets: between('max-sockets', values['max-sockets'], undefined, 1, Number.MAX_SAFE_INTEGER),
    upstreamConnections: between(
      'upstream-connections',
      values['upstream-connections'],
      undefined,
      1,
      Number.MAX_SAFE_INTEGER,
    ),
    cases: list('cases', values.cases, CANARY_CASES),
    rate: within('rate', values.rate, 100, 1, MAX_RATE),
  };
}
