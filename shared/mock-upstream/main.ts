import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { startMockUpstream, type MockFormat } from './index.js';

// `graygate mock-upstream [--port N] [--format F] [--fail-every N]
// [--first-byte-ms MS] [--interval-ms MS] [--tokens N]` (SPEC §7, §8): runs the
// mock upstream alone and prints the base URL to put in a version's
// upstream.url. The last four set the whole server's defaults (every Nth answer
// a 500; every answer's first byte MS later; tokens MS apart; N tokens an
// answer), so two versions can be given upstreams of different quality (issue
// 13; a request's own `[mock …]` directive still wins).
// The CLI calls runMockUpstreamCli; `node dist/shared/mock-upstream/main.js
// --port N --format F` runs the same thing directly.

const FORMATS: readonly string[] = ['openai', 'ollama', 'anthropic'];

export interface MockUpstreamCliOptions {
  /** Default 0 (a free port). */
  port?: number;
  /** Default 127.0.0.1. */
  host?: string;
  /** Which format's base URL to print; all three are served. Default openai. */
  format?: string | undefined;
  /** Every Nth answer is a 500 in the format's shape; 0 (default): never. */
  failEvery?: number | undefined;
  /** Default first-byte delay of every answer, ms (a request's own control wins). */
  firstByteMs?: number | undefined;
  /** Default pause before each token, ms: a model that streams slower per token (a request's own control wins). */
  intervalMs?: number | undefined;
  /** Default tokens an answer (a request's own control and its max_tokens win). */
  tokens?: number | undefined;
}

/** Starts the mock, prints its URL, stops it on SIGINT/SIGTERM. Exits 64 on a bad option, 69 on a port in use. */
export async function runMockUpstreamCli(options: MockUpstreamCliOptions): Promise<void> {
  const format = options.format ?? 'openai';
  if (!FORMATS.includes(format)) {
    process.stderr.write(`mock-upstream: --format must be one of ${FORMATS.join(', ')}, got ${format}\n`);
    process.exit(64);
  }
  const host = options.host ?? '127.0.0.1';
  const port = options.port ?? 0;
  let mock: Awaited<ReturnType<typeof startMockUpstream>>;
  try {
    mock = await startMockUpstream({
      port,
      host,
      format: format as MockFormat,
      failEvery: options.failEvery ?? 0,
      defaults: {
        firstByteMs: options.firstByteMs ?? 0,
        ...(options.intervalMs === undefined ? {} : { intervalMs: options.intervalMs }),
        ...(options.tokens === undefined ? {} : { tokens: options.tokens }),
      },
    });
  } catch (err) {
    // As the gateway's own ports: one line naming what moves it, and 69 (EX_UNAVAILABLE), not a stack.
    const code = (err as NodeJS.ErrnoException).code;
    const why =
      code === 'EADDRINUSE'
        ? 'is in use; choose another with --port'
        : `cannot be listened on (${code ?? (err as Error).message}); check the address and --port`;
    process.stderr.write(`mock-upstream: ${host}:${port} ${why}\n`);
    process.exit(69);
  }
  const worse = [
    options.failEvery ? `1 answer in ${options.failEvery} a 500` : '',
    options.firstByteMs ? `first byte +${options.firstByteMs} ms` : '',
    options.tokens !== undefined ? `${options.tokens} tokens an answer` : '',
    options.intervalMs ? `tokens ${options.intervalMs} ms apart` : '',
  ].filter((s) => s !== '');
  process.stdout.write(
    `mock upstream (${format}) listening on ${mock.baseUrl}${worse.length > 0 ? ` (${worse.join(', ')})` : ''}\n`,
  );
  const stop = (): void => {
    void mock.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

const USAGE =
  'usage: node dist/shared/mock-upstream/main.js [--port N] [--host H] [--format openai|ollama|anthropic] ' +
  '[--fail-every N] [--first-byte-ms MS] [--interval-ms MS] [--tokens N]\n';

/** The direct entry's flags; `--help` prints the usage (exit 0), a flag it does not take one line and exit 64. */
function readFlags(): Record<'port' | 'host' | 'format' | 'fail-every' | 'first-byte-ms', string> &
  Partial<Record<'interval-ms' | 'tokens', string>> {
  try {
    const { values } = parseArgs({
      options: {
        port: { type: 'string', default: '0' },
        host: { type: 'string', default: '127.0.0.1' },
        format: { type: 'string', default: 'openai' },
        'fail-every': { type: 'string', default: '0' },
        'first-byte-ms': { type: 'string', default: '0' },
        'interval-ms': { type: 'string' },
        tokens: { type: 'string' },
        help: { type: 'boolean', short: 'h', default: false },
      },
    });
    if (values.help) {
      process.stdout.write(USAGE);
      process.exit(0);
    }
    return values;
  } catch (err) {
    process.stderr.write(`mock-upstream: ${(err as Error).message}\n${USAGE}`);
    process.exit(64);
  }
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const values = readFlags();
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`mock-upstream: --port must be 0–65535, got ${values.port}\n`);
    process.exit(64);
  }
  const count = (flag: string, raw: string): number => {
    if (!/^\d+$/.test(raw)) {
      process.stderr.write(`mock-upstream: --${flag} must be a whole number, got ${raw}\n`);
      process.exit(64);
    }
    return Number(raw);
  };
  // As the CLI's: an answer of 0 tokens is no upstream to test a canary on.
  const atLeastOne = (flag: string, raw: string): number => {
    const n = count(flag, raw);
    if (n === 0) {
      process.stderr.write(`mock-upstream: --${flag} must be at least 1\n`);
      process.exit(64);
    }
    return n;
  };
  await runMockUpstreamCli({
    port,
    host: values.host,
    format: values.format,
    failEvery: count('fail-every', values['fail-every']),
    firstByteMs: count('first-byte-ms', values['first-byte-ms']),
    intervalMs: values['interval-ms'] === undefined ? undefined : count('interval-ms', values['interval-ms']),
    tokens: values.tokens === undefined ? undefined : atLeastOne('tokens', values.tokens),
  });
}
