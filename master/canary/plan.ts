import { z } from 'zod';
import { parseWith } from '../../shared/config.js';
import { VERSION_NAME } from '../../shared/defaults.js';
import { GraygateError } from '../../shared/errors.js';
import { resolveJudgeOptions, type ResolvedJudgeOptions } from './statistics.js';

// The body of POST /admin/versions/:name/canary (SPEC §11) → a validated plan
// with its defaults. Every problem is reported (400 invalid_request, one line
// each), like the config file.

const CANARY_DEFAULTS = {
  steps: [5, 25, 50, 100], // % of the pair's combined weight the canary gets at each step
  stepMs: 60_000, // 1 min at least at each step
  minRequests: 200, // canary requests at a step before it may advance
  maxStepMs: 600_000, // 10 min without a verdict → onInconclusive
  onInconclusive: 'hold' as 'hold' | 'rollback',
} as const;

export interface CanaryPlan {
  canary: string;
  baseline: string;
  /** Ascending, each in (0, 100], the last 100. */
  steps: readonly number[];
  /** Steps (of `steps`) the canary pauses at as it reaches them, until resumed (Argo Rollouts' `pause: {}` step). */
  pauseAt: readonly number[];
  stepMs: number;
  maxStepMs: number;
  onInconclusive: 'hold' | 'rollback';
  /** alpha, minRequests, requireNonInferiority, criteria (statistics.ts). */
  judge: ResolvedJudgeOptions;
}

const ms = z.number({ error: 'must be a number of milliseconds' }).int('must be an integer').min(0, 'must be ≥ 0');
const ratio = z.number({ error: 'must be a number' });
const latency = z.union(
  [z.literal(false), z.strictObject({ maxRatio: ratio.optional(), marginMs: ratio.optional() })],
  {
    error: 'must be false or { maxRatio, marginMs }',
  },
);

const canaryBody = z.strictObject({
  baseline: z.string().regex(VERSION_NAME, 'must be a version name').optional(),
  steps: z
    .array(z.number({ error: 'must be a number' }).gt(0, 'must be > 0').max(100, 'must be ≤ 100'), {
      error: 'must be an array of percentages',
    })
    .min(1, 'must not be empty')
    .max(20, 'at most 20 steps')
    .optional(),
  pauseAt: z
    .array(z.number({ error: 'must be a number' }), { error: 'must be an array of percentages of steps' })
    .max(20, 'at most 20 steps')
    .optional(),
  stepMs: ms.optional(),
  minRequests: z.number({ error: 'must be a number' }).int('must be an integer').min(1, 'must be ≥ 1').optional(),
  maxStepMs: ms.optional(),
  onInconclusive: z.enum(['hold', 'rollback'], { error: 'must be "hold" or "rollback"' }).optional(),
  alpha: z.number({ error: 'must be a number' }).optional(),
  requireNonInferiority: z.boolean({ error: 'must be a boolean' }).optional(),
  criteria: z
    .strictObject({
      errorRate: z
        .union([z.literal(false), z.strictObject({ maxRatio: ratio.optional(), marginAbs: ratio.optional() })], {
          error: 'must be false or { maxRatio, marginAbs }',
        })
        .optional(),
      firstTokenP99: latency.optional(),
      responseTimeP99: latency.optional(),
      timePerTokenP99: latency.optional(),
      maxErrorRate: z.union([z.literal(false), ratio], { error: 'must be false or a rate, 0 < rate < 1' }).optional(),
    })
    .optional(),
});

/** Validates a canary body for `canary`; `defaultBaseline` is routing.default. Throws 400 naming every problem. */
export function parseCanaryPlan(canary: string, raw: unknown, defaultBaseline: string): CanaryPlan {
  const parsed = parseWith(canaryBody, raw ?? {});
  if (!parsed.ok) throw new GraygateError('invalid_request', parsed.problems.join('\n'));
  const body = parsed.value;
  const problems: string[] = [];
  const steps = body.steps ?? CANARY_DEFAULTS.steps;
  for (let i = 1; i < steps.length; i++) {
    if (!(steps[i]! > steps[i - 1]!))
      problems.push(`steps: must go up (weights never go back down), got ${steps.join(', ')}`);
  }
  if (steps.at(-1) !== 100) problems.push(`steps: the last step must be 100, got ${steps.at(-1)}`);
  const pauseAt = [...new Set(body.pauseAt ?? [])].sort((a, b) => a - b);
  for (const percent of pauseAt)
    if (!(steps as readonly number[]).includes(percent))
      problems.push(`pauseAt: ${percent} is not one of the steps (${steps.join(', ')})`);
  const stepMs = body.stepMs ?? CANARY_DEFAULTS.stepMs;
  const maxStepMs = body.maxStepMs ?? Math.max(CANARY_DEFAULTS.maxStepMs, stepMs);
  if (maxStepMs < stepMs) problems.push(`maxStepMs: must be ≥ stepMs (${stepMs})`);
  const baseline = body.baseline ?? defaultBaseline;
  if (baseline === canary) problems.push(`baseline: must be another version than the canary (${canary})`);
  let judge: ResolvedJudgeOptions | undefined;
  try {
    judge = resolveJudgeOptions({
      ...(body.alpha === undefined ? {} : { alpha: body.alpha }),
      minRequests: body.minRequests ?? CANARY_DEFAULTS.minRequests,
      ...(body.requireNonInferiority === undefined ? {} : { requireNonInferiority: body.requireNonInferiority }),
      ...(body.criteria === undefined ? {} : { criteria: body.criteria }),
    });
  } catch (err) {
    problems.push(...(err as Error).message.replace(/^invalid judge options: /, '').split('; '));
  }
  if (problems.length > 0 || judge === undefined) throw new GraygateError('invalid_request', problems.join('\n'));
  return {
    canary,
    baseline,
    steps: [...steps],
    pauseAt,
    stepMs,
    maxStepMs,
    onInconclusive: body.onInconclusive ?? CANARY_DEFAULTS.onInconclusive,
    judge,
  };
}
