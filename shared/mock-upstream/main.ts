import { parseArgs } from 'node:util';
import { startMockUpstream, type MockFormat } from './index.js';

// `graygate mock-upstream [--port N] [--format F]` (SPEC §7, §8): runs the mock
// upstream alone and prints the base URL to put in a version's upstream.url.
// Wiring only; the CLI calls this file.

const FORMATS: readonly string[] = ['openai', 'ollama', 'anthropic'];

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
if (!FORMATS.includes(values.format)) {
  process.stderr.write(`mock-upstream: --format must be one of ${FORMATS.join(', ')}, got ${values.format}\n`);
  process.exit(64);
}
const mock = await startMockUpstream({ port, host: values.host, format: values.format as MockFormat });
process.stdout.write(`mock upstream (${values.format}) listening on ${mock.baseUrl}\n`);
const stop = (): void => {
  void mock.close().then(() => process.exit(0));
};
process.on('SIGINT', stop);
process.on('SIGTERM', stop);
