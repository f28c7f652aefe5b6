/**
 * Checks a benchmark's numeric flags, given as { flagName: value }: each must be
 * a finite number at least `bound.atLeast`, or above `bound.above` (a typo such
 * as `--warmup 3k` is NaN and would silently skip the work it sizes). A bad one
 * is a usage error naming it (exit 64, as bench/args.ts), not a stack.
 */
export function checkCounts(
  counts: Record<string, number>,
  bound: ({ atLeast: number } | { above: number }) & { atMost?: number },
): void {
  const atMost = bound.atMost ?? Infinity;
  const isOk = (n: number): boolean => ('atLeast' in bound ? n >= bound.atLeast : n > bound.above) && n <= atMost;
  const expected = `${'atLeast' in bound ? `≥ ${bound.atLeast}` : `> ${bound.above}`}${
    atMost === Infinity ? '' : ` and ≤ ${atMost}`
  }`;
  for (const [name, n] of Object.entries(counts)) {
    if (Number.isFinite(n) && isOk(n)) continue;
    process.stderr.write(`--${name}: expected a number ${expected}, got ${String(n)}\n`);
    process.exit(64);
  }
}
