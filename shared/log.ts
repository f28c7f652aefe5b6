import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

// Secrets never reach a log (SPEC §9). Credentials travel in these headers:
// the client's own (Authorization, and keys some SDKs send instead), the
// worker's to the upstream (openai `authorization`, anthropic `x-api-key`),
// and cookies. Paths cover headers at the top of a log object, under `req`,
// and one level down (`{ request: { headers } }`, an upstream call), plus
// API keys wherever a config object slips into a line.
const SECRET_HEADERS = [
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
  'cookie',
  'set-cookie',
];
// Explicit paths only: pino's wildcard redaction (`*.headers`, `*.apiKey`)
// walks every logged object and cost 14 µs per request line against 1.2 µs
// without it (measured with a null sink), halving the master's 503 rate under a
// flood. These are every place a header set or an upstream config is logged.
const HEADER_HOLDERS = ['headers', 'req.headers', 'request.headers', 'upstream.headers', 'res.headers'];
const KEY_HOLDERS = ['', 'upstream.', 'settings.upstream.', 'config.'];

const REDACT_PATHS: readonly string[] = [
  ...HEADER_HOLDERS.flatMap((holder) => SECRET_HEADERS.map((h) => `${holder}["${h}"]`)),
  ...KEY_HOLDERS.flatMap((holder) => [`${holder}apiKey`, `${holder}api_key`]),
];
export const REDACTED = '[redacted]';

export interface LoggerOptions {
  /** Which process writes: `master`, `worker` or `cli`. */
  role: 'master' | 'worker' | 'cli';
  /** Worker's version name; absent for the master. */
  version?: string;
  /** pino level; default the LOG_LEVEL env var, else `info`. */
  level?: string;
  /** Where lines go; default stdout (pino-pretty when stdout is a TTY, JSON lines otherwise). Tests pass a sink. */
  destination?: DestinationStream;
}

/** One root logger per process with `{ role, version, pid }` bindings (STYLE §27). */
export function createLogger(options: LoggerOptions): Logger {
  const level = options.level ?? process.env['LOG_LEVEL'] ?? 'info';
  const base: Record<string, unknown> = { role: options.role, pid: process.pid };
  if (options.version !== undefined) base['version'] = options.version;
  const pinoOptions = { level, base, redact: { paths: [...REDACT_PATHS], censor: REDACTED } };
  if (options.destination !== undefined) return pino(pinoOptions, options.destination);
  // Issue 5: readable on a terminal (`npm start`), JSON for anything that parses it.
  if (process.stdout.isTTY === true) {
    return pino({
      ...pinoOptions,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  return pino(pinoOptions, stdoutPerLoopTurn());
}

/**
 * Log lines to stdout, written synchronously once per event-loop turn: every
 * line a turn produced, in one write(2). pino's default destination writes
 * each line through libuv's thread pool (fs.write), which costs a wakeup of a
 * pool thread and one of the event loop per line: at one request at a time
 * that was 1.5 of the ~7 context switches a request costs each process
 * (issue 10, docs/BENCHMARKS.md "Background wakeups"). Under load a turn's
 * lines share one write, as they shared one fs.write before. sonic-boom's
 * synchronous mode does the write (partial writes, EAGAIN retried). Lines
 * still pending when the process exits are written by the `exit` handler.
 */
function stdoutPerLoopTurn(): DestinationStream {
  if (stdoutBatch !== undefined) return stdoutBatch;
  const out = pino.destination({ dest: 1, sync: true });
  let pending = '';
  let isScheduled = false;
  const flush = (): void => {
    isScheduled = false;
    if (pending.length === 0) return;
    const lines = pending;
    pending = '';
    out.write(lines);
  };
  process.on('exit', flush);
  stdoutBatch = {
    write(line: string): void {
      pending += line;
      if (isScheduled) return;
      isScheduled = true;
      setImmediate(flush);
    },
  };
  return stdoutBatch;
}
let stdoutBatch: DestinationStream | undefined;
