import { parseArgs } from 'node:util';
import { pathToFileURL } from 'node:url';
import { startMockUpstream, type MockFormat } from './index.js';

// `graygate mock-upstream [--port N] [--format F]` (SPEC §7, §8): runs the mock
// upstream alone and prints the base URL to put in a version's upstream.url.
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
}

/** Starts the mock, prints its URL, and stops it on SIGINT/SIGTERM. Exits 64 on a bad option. */
export async function runMockUpstreamCli(options: MockUpstreamCliOptions): Promise<void> {
  const format = options.format ?? 'openai';
  if (!FORMATS.includes(format)) {
    process.stderr.write(`mock-upstream: --format must be one of ${FORMATS.join(', ')}, got ${format}\n`);
    process.exit(64);
  }
  const mock = await startMockUpstream({ port: options.port ?? 0, host: options.host ?? '127.0.0.1', format: format as MockFormat });
  process.stdout.write(`mock upstream (${format}) listening on ${mock.baseUrl}\n`);
  const stop = (): void => {
    void mock.close().then(() => process.exit(0));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const { values } = parseArgs({
    options: {
      port: { type: 'string', default: '0' },
      host: { type: 'string', default: '127.0.0.1' },
      format: { type: 'string', default: 'openai' },
    },
  });
  const port = Number(values.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    process.stderr.write(`mock-upstream: --port must be 0–65535, got ${values.port}\n`);
    process.exit(64);
  }
  await runMockUpstreamCli({ port, host: values.host, format: values.format });
}
