// node:util parseArgs' refusals in a command line's words. Its own messages
// advise what fits no typo ("To specify a positional argument starting with a
// '-', place it at the end of the command after '--'" for `--cofig`) and call
// `--weight -1` "ambiguous" (a README walk-through); both exit 64 (2 for
// loadtest) as before, with one line that names the flag.

/** The usage line for a parseArgs error (code ERR_PARSE_ARGS_*), or undefined for any other error. */
export function parseArgsProblem(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) return undefined;
  const message = err instanceof Error ? err.message : String(err);
  const flag = /^(?:Unknown option|Option) '(-{1,2}[^' <]*)/.exec(message)?.[1];
  if (flag === undefined) return message.split('\n')[0];
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION') return `unknown flag ${flag} (--help lists the flags)`;
  if (message.includes('argument is ambiguous'))
    return `${flag} needs a value, and one that starts with a dash reads as a flag: write ${flag}=VALUE`;
  if (message.includes('argument missing')) return `${flag} needs a value`;
  if (message.includes('does not take an argument')) return `${flag} takes no value`;
  return message.split('\n')[0];
}
