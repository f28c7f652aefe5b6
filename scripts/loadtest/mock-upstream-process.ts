import { startMockUpstream } from '../../shared/mock-upstream/index.js';

// The mock upstream (SPEC §8) in its own process, for `streams`: the same
// upstream is read directly and through graygate, so the difference is what
// the gateway adds, and its RSS is not mixed with the load client's.
// Sends {type:'listening', url: <openai base URL>, pid} over IPC.

const mock = await startMockUpstream({ host: '127.0.0.1', port: 0, format: 'openai' });
process.send?.({ type: 'listening', url: mock.baseUrl, pid: process.pid });
// Our parent is the load script: if it goes, so do we.
process.on('disconnect', () => void mock.close().finally(() => process.exit(0)));
process.on('SIGTERM', () => void mock.close().finally(() => process.exit(0)));
