import { table } from './format.js';

// `graygate canary …` (SPEC §11): the start flags turned into the admin API's
// body, and the canary's status as a short human summary (issue 13 part 4).

export interface CanaryDecision {
  step: number;
  metric: string;
  baseline: { n: number; value: number | null };
  canary: { n: number; value: number | null };
  verdict: string;
  statistic: number;
}

export interface CanaryStatusBody {
  version: string;
  baseline: string;
  state: string;
  step: number;
  canaryPercent: number;
  steps: number[];
  /** Steps it pauses at until resumed (absent from a gateway older than this CLI). */
  pauseAt?: number[];
  stepMs: number;
  minRequests: number;
  /** The settings it judges by (absent from a gateway older than this CLI). */
  maxStepMs?: number;
  onInconclusive?: string;
  alpha?: number;
  requireNonInferiority?: boolean;
  criteria?: {
    errorRate: { maxRatio: number; marginAbs: number } | false;
    firstTokenP99: { maxRatio: number; marginMs: number } | false;
    responseTimeP99: { maxRatio: number; marginMs: number } | false;
    /** Absent from a gateway older than this CLI. */
    timePerTokenP99?: { maxRatio: number; marginMs: number } | false;
    maxErrorRate?: number | false;
  };
  startedAt: string;
  endedAt: string | null;
  reason: string;
  /** Paused, by hand or at a step of pauseAt, until resumed (absent from a gateway older than this CLI). */
  paused?: boolean;
  observed: { baseline: { requests: number; errors: number }; canary: { requests: number; errors: number } };
  decisions: CanaryDecision[];
}

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** `60s`, `500ms`, `2m`, `1h`, or a plain number of seconds → ms; undefined when malformed. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d+(?:\.\d+)?)(ms|s|m|h)?$/.exec(text.trim());
  if (m === null) return undefined;
  return Math.round(Number(m[1]) * UNITS[m[2] ?? 's']!);
}

/** `5,25,50,100` → [5, 25, 50, 100]; undefined when malformed (the API checks the order and the last 100). */
export function parseSteps(text: string): number[] | undefined {
  const parts = text.split(',').map((s) => s.trim());
  // Number('') is 0: an empty item (`--steps ""`, `5,,100`) is malformed, not a step of 0 for the API to refuse.
  if (parts.some((s) => s === '')) return undefined;
  const steps = parts.map(Number);
  return steps.every((n) => Number.isFinite(n)) ? steps : undefined;
}

function pct(value: number | null): string {
  return value === null ? '-' : `${(value * 100).toFixed(2)} %`;
}

function ms(value: number | null): string {
  return value === null ? '-' : `${value.toFixed(1)} ms`;
}

/** A few lines a person reads at a glance: where the canary is, why, and the numbers behind it. */
export function formatCanary(c: CanaryStatusBody): string {
  const stepOf = `step ${c.step + 1}/${c.steps.length} (${c.steps[c.step]} %)`;
  // An ended canary's share is what it left: weights changed since (PUT /admin/weights, a reload) are not its doing,
  // and "now at 100 %" after a reload had set it to 0 was a probe's lie; graygate status has the weights now.
  const isRunning = c.state === 'running' || c.state === 'held';
  const share = `${isRunning ? 'canary now at' : 'it left the canary at'} ${c.canaryPercent} % of the pair`;
  // Paused by hand or at a step of pauseAt: its why says which.
  const state = c.paused === true ? 'paused (until resumed)' : c.state.replace('_', ' ');
  const head = `canary ${c.version} (baseline ${c.baseline}): ${state} at ${stepOf}, ${share}`;
  const gates = c.pauseAt === undefined || c.pauseAt.length === 0 ? '' : `, pausing at ${c.pauseAt.join('/')} %`;
  const when = `started ${c.startedAt}${c.endedAt === null ? '' : `, ended ${c.endedAt}`}; steps ${c.steps.join('/')} %${gates}, at least ${c.stepMs / 1000} s and ${c.minRequests} canary requests each`;
  const seen = `this step: baseline ${c.observed.baseline.requests} requests (${c.observed.baseline.errors} errors), canary ${c.observed.canary.requests} (${c.observed.canary.errors} errors)`;
  const rows = c.decisions.map((d) => {
    const format = d.metric === 'error_rate' ? pct : ms;
    return [
      String(d.step + 1),
      d.metric,
      `${d.baseline.n}`,
      format(d.baseline.value),
      `${d.canary.n}`,
      format(d.canary.value),
      d.verdict,
      d.statistic.toFixed(2),
    ];
  });
  const decisions =
    rows.length === 0
      ? 'no judgement yet'
      : table(['STEP', 'METRIC', 'BASE N', 'BASE', 'CANARY N', 'CANARY', 'VERDICT', 'LOG E'], rows);
  const judged = judgedBy(c);
  return [head, when, ...(judged === undefined ? [] : [judged]), `why: ${c.reason}`, seen, decisions].join('\n');
}

/** `judged by: error rate ≤ 1.2 × baseline + 1 %, first token p99 off, …; alpha 0.01; no verdict in 600 s: hold`. */
function judgedBy(c: CanaryStatusBody): string | undefined {
  const { criteria } = c;
  if (criteria === undefined || c.alpha === undefined || c.onInconclusive === undefined || c.maxStepMs === undefined)
    return undefined;
  const latency = (name: string, k: { maxRatio: number; marginMs: number } | false): string =>
    k === false ? `${name} off` : `${name} ≤ ${k.maxRatio} × baseline${k.marginMs > 0 ? ` + ${k.marginMs} ms` : ''}`;
  const errorRate =
    criteria.errorRate === false
      ? 'error rate off'
      : `error rate ≤ ${criteria.errorRate.maxRatio} × baseline + ${+(criteria.errorRate.marginAbs * 100).toFixed(4)} %`;
  const metrics = [
    errorRate,
    latency('first token p99', criteria.firstTokenP99),
    latency('response time p99', criteria.responseTimeP99),
    ...(criteria.timePerTokenP99 === undefined ? [] : [latency('time per token p99', criteria.timePerTokenP99)]),
    ...(typeof criteria.maxErrorRate === 'number'
      ? [`error rate ≤ ${+(criteria.maxErrorRate * 100).toFixed(4)} % whatever the baseline's`]
      : []),
  ].join(', ');
  const proof = c.requireNonInferiority === true ? ', each step proven within them' : '';
  return `judged by: ${metrics}${proof}; alpha ${c.alpha}; no verdict in ${c.maxStepMs / 1000} s: ${c.onInconclusive}`;
}
