import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

// Secrets never reach a log (SPEC §9). Paths cover request headers as we log
// them and any upstream config that slips into a log object.
export const REDACT_PATHS = [
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers["x-api-key"]',
  'req.headers["api-key"]',
  'req.headers.cookie',
  'headers.authorization',
  'headers["x-api-key"]',
  'apiKey',
  '*.apiKey',
];

export interface LoggerOptions {
  /** `master` or `worker`. */
  role: 'master' | 'worker' | 'cli';
  /** Worker's version name; absent for the master. */
  version?: string;
  /** pino level; default `info`, LOG_LEVEL overrides. */
  level?: string;
  /** Where lines go; default stdout (pino-pretty when stdout is a TTY). Tests pass a sink. */
  destination?: DestinationStream;
}

/** One root logger per process with `{ role, version, pid }` bindings (STYLE §27). */
export function createLogger(options: LoggerOptions): Logger {
  const level = options.level ?? process.env['LOG_LEVEL'] ?? 'info';
  const base: Record<string, unknown> = { role: options.role, pid: process.pid };
  if (options.version !== undefined) base['version'] = options.version;
  const pinoOptions = { level, base, redact: { paths: REDACT_PATHS, censor: '[redacted]' } };
  if (options.destination !== undefined) return pino(pinoOptions, options.destination);
  if (process.stdout.isTTY === true) {
    return pino({ ...pinoOptions, transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } } });
  }
  return pino(pinoOptions);
}
