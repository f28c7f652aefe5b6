import { basename } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

/**
 * node's parseArgs for a benchmark script, plus `--help` (its flags with their defaults, exit 0) and, for an unknown
 * or malformed flag, node's one-line message and the same list on stderr (exit 64, as the CLI's usage errors), not
 * a stack trace.
 */
export function benchArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  const usage = (): string => {
    const flags = Object.entries(config.options ?? {}).map(([name, option]) =>
      option.type === 'boolean'
        ? `[--${name}]`
        : `[--${name} ${option.default === undefined ? 'VALUE' : String(option.default)}]`,
    );
    return `usage: node dist/scripts/bench/${basename(process.argv[1] ?? '')} ${flags.join(' ')}`;
  };
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`${usage()}\n`);
    process.exit(0);
  }
  try {
    return parseArgs(config);
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n${usage()}\n`);
    process.exit(64);
  }
}
