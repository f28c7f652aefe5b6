import { readFileSync } from 'node:fs';
import { basename } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/**
 * node's parseArgs for a benchmark script, plus `--help` (its flags with their defaults, exit 0) and, for an unknown
 * or malformed flag, node's one-line message and the same list on stderr (exit 64, as the CLI's usage errors), not
 * a stack trace.
 */
export function benchArgs<T extends ParseArgsConfig>(
  config: T,
  /**
   * What the script takes besides its flags (`FILE.cpuprofile…`, with `allowPositionals`): shown before them in its
   * usage, and at least one is required (none is a usage error).
   */
  operands?: string,
): ReturnType<typeof parseArgs<T>> {
  const usage = (): string => {
    const flags = Object.entries(config.options ?? {}).map(([name, option]) =>
      option.type === 'boolean'
        ? `[--${name}]`
        : `[--${name} ${option.default === undefined ? 'VALUE' : String(option.default)}]`,
    );
    const words = operands === undefined ? flags : [operands, ...flags];
    return `usage: node dist/scripts/bench/${basename(process.argv[1] ?? '')} ${words.join(' ')}`.trimEnd();
  };
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    process.exit(0);
  }
  const fail = (problem: string): never => {
    process.stderr.write(`${problem}\n${usage()}\n`);
    process.exit(64);
  };
  let parsed: ReturnType<typeof parseArgs<T>>;
  try {
    parsed = parseArgs(config);
  } catch (err) {
    return fail(err instanceof Error ? err.message : String(err));
  }
  const positionals = (parsed as { positionals?: string[] }).positionals ?? [];
  if (operands !== undefined && positionals.length === 0) fail(`missing ${operands}`);
  return parsed;
}

/**
 * The positional counts of a benchmark script that takes no flags (`first-token.js 1000 10 3`): `--help` prints them
 * with their defaults (exit 0); a missing one takes its default; one that is not a number ≥ 1, or one too many, is a
 * usage error naming it (exit 64), as `benchArgs` does for flags.
 */
export function benchCounts<K extends string>(defaults: Record<K, number>): Record<K, number> {
  const names = Object.keys(defaults) as K[];
  const usage = `usage: node dist/scripts/bench/${basename(process.argv[1] ?? '')} ${names.map((n) => `[${n}=${defaults[n]}]`).join(' ')}`;
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage}\n`);
    process.exit(0);
  }
  const fail = (problem: string): never => {
    process.stderr.write(`${problem}\n${usage}\n`);
    process.exit(64);
  };
  if (args.length > names.length) fail(`at most ${names.length} arguments, got ${args.length}`);
  const counts = {} as Record<K, number>;
  names.forEach((name, i) => {
    const n = args[i] === undefined ? defaults[name] : Number(args[i]);
    if (!(Number.isFinite(n) && n >= 1)) fail(`${name}: expected a number ≥ 1, got ${args[i]}`);
    counts[name] = n;
  });
  return counts;
}

/**
 * A benchmark's input file, parsed as JSON: one it cannot read, or that is not JSON, is one line naming the file and
 * why on stderr, exit 66 (sysexits' EX_NOINPUT), not node's stack trace (a missing profile exited 1 with one).
 */
export function readJsonFile(path: string): unknown {
  try {
    return JSON.parse(readFileSync(path, 'utf8')) as unknown;
  } catch (err) {
    process.stderr.write(`cannot read ${path}: ${err instanceof Error ? err.message : String(err)}\n`);
    return process.exit(66);
  }
}
