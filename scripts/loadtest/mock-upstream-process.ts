import { parseArgs } from 'node:util';
import { startMockUpstream } from '../../shared/mock-upstream/index.js';

// The mock upstream (SPEC §8) in its own process, for `streams`: the same
// upstream is read directly and through graygate, so the difference is what
// the gateway adds, and its RSS is not mixed with the load client's. `canary`
// starts one per version, the canary's made worse by `--fail-every N` (every
// Nth answer a 500) or `--first-byte-ms MS` (every first byte MS later).
// Sends {type:'listening', url: <openai base URL>, pid} over IPC.

const { values } = parseArgs({
  options: { 'fail-every': { type: 'string', default: '0' }, 'first-byte-ms': { type: 'string', default: '0' } },
});
const mock = await startMockUpstream({
  host: '127.0.0.1',
  port: 0,
  format: 'openai',
  failEvery: Number(values['fail-every']),
  defaults: { firstByteMs: Number(values['first-byte-ms']) },
});
process.send?.({ type: 'listening', url: mock.baseUrl, pid: process.pid });
// Our parent is the load script: if it goes, so do we.
process.on('disconnect', () => void mock.close().finally(() => process.exit(0)));
process.on('SIGTERM', () => void mock.close().finally(() => process.exit(0)));
