import { parseArgs } from 'node:util';
import { DEFAULT_REPORT_DIR } from './paths.js';

// `npm run loadtest -- <scenario> [flags]` (SPEC §9, issue 6). Unknown flags
// are an error, so a typo never silently runs the default load.

export const SCENARIOS = ['capacity', 'backlog', 'streams', 'swap', 'compare'] as const;
export type ScenarioName = (typeof SCENARIOS)[number];

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
  /** streams: --streams, default 1000 concurrent. */
  streams: number;
  /** streams: --tokens per stream, default 100. */
  tokens: number;
  /** streams: --token-interval-ms between tokens, default 20. */
  tokenIntervalMs: number;
}

export const USAGE = `usage: npm run loadtest -- <scenario> [flags]

scenarios:
  capacity   step up connections against a chat completion through graygate
  backlog    the slow-worker flood (400 connections, 1 s worker, 1 socket); --naive adds the naive proxies
  streams    N concurrent SSE streams through graygate and straight to the upstream
  swap       load while v2 is deployed twice and rolled back once
  compare    direct to a worker vs through graygate vs through nginx (when installed)

flags:
  --duration S          seconds of load (capacity: per step)
  --connections N       concurrent connections (capacity: one step of N)
  --json                print the JSON report on stdout
  --assert              exit 1 when a target is missed
  --report-dir DIR      where reports go (default reports/)
  --log-level LEVEL     graygate LOG_LEVEL (default info)
  --steps 10,50,…       capacity: connection steps
  --p99-ms MS           capacity: p99 bound of a passing step (default 100)
  --instances N         capacity, compare, streams: workers per version (default 1)
  --naive               backlog: also run (a) http-proxy-3 and (c) pipe() proxies, side by side
  --worker-delay-ms MS  backlog: the slow worker's answer time (default 1000)
  --recovery-limit-s S  backlog: give up waiting for a fresh answer after S (default 60)
  --max-queue N         backlog: graygate maxQueuePerVersion (default graygate's)
  --queue-timeout-ms MS backlog: graygate queueTimeoutMs (default graygate's)
  --streams N           streams: concurrent streams (default 1000)
  --tokens N            streams: tokens per stream (default 100)
  --token-interval-ms MS streams: time between tokens (default 20)
`;

function positive(name: string, raw: string | undefined, fallback: number): number;
function positive(name: string, raw: string | undefined, fallback: undefined): number | undefined;
function positive(name: string, raw: string | undefined, fallback: number | undefined): number | undefined {
  if (raw === undefined) return fallback;
  const n = Number(raw);
  if (!Number.isFinite(n) || n < 0) throw new Error(`--${name}: must be a number ≥ 0, got "${raw}"`);
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
    },
  });
  const scenario = positionals[0];
  if (positionals.length !== 1 || !(SCENARIOS as readonly string[]).includes(scenario ?? '')) {
    throw new Error(`expected one scenario (${SCENARIOS.join(', ')}), got ${positionals.length === 0 ? 'none' : positionals.join(' ')}`);
  }
  const steps = values.steps?.split(',').map((s) => positive('steps', s.trim(), 0));
  if (steps !== undefined && (steps.length === 0 || steps.some((s) => s < 1))) throw new Error('--steps: a comma-separated list of connection counts ≥ 1');
  const connections = positive('connections', values.connections, undefined);
  if (connections !== undefined && connections < 1) throw new Error('--connections: must be ≥ 1');
  return {
    scenario: scenario as ScenarioName,
    durationS: positive('duration', values.duration, undefined),
    connections,
    isJson: values.json === true,
    isAssert: values.assert === true,
    reportDir: values['report-dir'] ?? DEFAULT_REPORT_DIR,
    logLevel: values['log-level'] ?? 'info',
    steps,
    p99Ms: positive('p99-ms', values['p99-ms'], 100),
    instances: Math.max(1, positive('instances', values.instances, 1)),
    isNaive: values.naive === true,
    workerDelayMs: positive('worker-delay-ms', values['worker-delay-ms'], 1000),
    recoveryLimitS: positive('recovery-limit-s', values['recovery-limit-s'], 60),
    maxQueue: positive('max-queue', values['max-queue'], undefined),
    queueTimeoutMs: positive('queue-timeout-ms', values['queue-timeout-ms'], undefined),
    streams: Math.max(1, positive('streams', values.streams, 1000)),
    tokens: Math.max(1, positive('tokens', values.tokens, 100)),
    tokenIntervalMs: positive('token-interval-ms', values['token-interval-ms'], 20),
  };
}
