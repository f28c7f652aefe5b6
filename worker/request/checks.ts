// The small field rules request validation is written with (SPEC §5, §12):
// each returns a problem text or undefined, and `checker` turns them into
// `path: problem` lines, so every problem of a body is reported at once.

import { isExactInteger } from './exact-numbers.js';

export type Rule = (value: unknown) => string | undefined;

export function isObject(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * `check(path, value, rule)`: an absent (undefined) value is fine; a broken rule adds `path: problem` to `problems`.
 */
export function checker(problems: string[]): (path: string, value: unknown, rule: Rule) => void {
  return (path, value, rule) => {
    if (value === undefined) return;
    const problem = rule(value);
    if (problem !== undefined) problems.push(`${path}: ${problem}`);
  };
}

/**
 * The first problem's field path (`messages.0.role` of `messages.0.role: must be one of …`), the error body's `param`,
 * which OpenAI's SDKs read as `err.param`. The paths these checks write are field names and indexes, never a client's
 * key, so the first `: ` ends one.
 */
export function firstProblemPath(problems: readonly string[]): { param: string } | Record<string, never> {
  const first = problems[0];
  const end = first === undefined ? -1 : first.indexOf(': ');
  return first === undefined || end <= 0 ? {} : { param: first.slice(0, end) };
}

export function nullable(rule: Rule): Rule {
  return (v) => (v === null ? undefined : rule(v));
}

export function boolean(v: unknown): string | undefined {
  return typeof v === 'boolean' ? undefined : 'must be a boolean';
}

export function string(v: unknown): string | undefined {
  return typeof v === 'string' ? undefined : 'must be a string';
}

export function nonEmptyString(v: unknown): string | undefined {
  return typeof v !== 'string' ? 'must be a string' : v === '' ? 'must not be empty' : undefined;
}

export function object(v: unknown): string | undefined {
  return isObject(v) ? undefined : 'must be an object';
}

export function number(v: unknown): string | undefined {
  // JSON.parse turns 1e400 into Infinity, which no upstream takes.
  return typeof v === 'number' && Number.isFinite(v) ? undefined : 'must be a number';
}

/** An integer JSON.parse reads exactly (1e30 is not: it is sent on rounded, which no upstream means). */
export function integer(v: unknown): string | undefined {
  // An integer past 2^53 (a 64-bit seed) is kept as written (exact-numbers.ts).
  return (typeof v === 'number' && Number.isSafeInteger(v)) || isExactInteger(v) ? undefined : 'must be an integer';
}

export function nonNegativeInteger(v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) return 'must be an integer';
  return v >= 0 ? undefined : 'must be ≥ 0';
}

export function positiveInteger(v: unknown): string | undefined {
  if (typeof v !== 'number' || !Number.isSafeInteger(v)) return 'must be an integer';
  return v >= 1 ? undefined : 'must be ≥ 1';
}
