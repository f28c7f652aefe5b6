import { readWorkerSettings } from '../shared/ipc.js';
import { createLogger } from '../shared/log.js';
import { runWorker } from '../shared/worker-lifecycle.js';
import { createWorkerServer } from './server.js';
import { loadAdapter } from './upstream/load-adapter.js';
import { resolveUpstream } from './upstream/resolve.js';
import { createWorkerMetrics } from './metrics.js';
import { MISSING_FIX_WARNING, UNDICI_FINISHES_PAUSED_PARSERS } from './upstream/undici-fix.js';

// Entry point of a worker process, forked by the master (SPEC §1). Wiring only.
const settings = readWorkerSettings(process.env);
const log = createLogger({ role: 'worker', version: settings.version, level: settings.logLevel });
if (!UNDICI_FINISHES_PAUSED_PARSERS) log.warn(MISSING_FIX_WARNING);
const metrics = createWorkerMetrics({ version: settings.version });
const [adapter, upstream] = await Promise.all([
  loadAdapter(settings.upstream.format),
  resolveUpstream(settings.upstream),
]);
const worker = createWorkerServer({ settings, log, metrics, adapter, upstream });
await runWorker({
  server: worker.server,
  log,
  socketPath: settings.socketPath,
  collectMetrics: () => metrics.collect(),
  collectCounters: () => metrics.collectCounters(),
  connections: worker.connections,
  calls: worker.calls,
  masterReadsCallsTaken: settings.readsCallsTaken === true,
  // The lifecycle closes the HTTP server; the worker server then lets
  // its requests finish and closes the upstream pool and the mock.
  onDrain: () => {
    worker.close().catch((err: unknown) => log.error({ err }, 'closing the upstream failed'));
  },
});
