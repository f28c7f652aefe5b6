import { readWorkerSettings } from '../shared/ipc.js';
import { createLogger } from '../shared/log.js';
import { runWorker } from '../shared/worker-lifecycle.js';
import { createWorkerServer } from './server.js';
import { loadAdapter } from './upstream/load-adapter.js';
import { resolveUpstream } from './upstream/resolve.js';
import { createWorkerMetrics } from './metrics.js';
import { ByteBudget } from '../shared/byte-budget.js';
import { DEFAULTS } from '../shared/defaults.js';
import { GraygateError } from '../shared/errors.js';
import { MISSING_FIX_WARNING, UNDICI_FINISHES_PAUSED_PARSERS } from './upstream/undici-fix.js';

// Entry point of a worker process, forked by the master (SPEC §1). Wiring only.
const settings = readWorkerSettings(process.env);
const log = createLogger({ role: 'worker', version: settings.version, level: settings.logLevel });
if (!UNDICI_FINISHES_PAUSED_PARSERS) log.warn(MISSING_FIX_WARNING);
// limits.maxBufferedAnswerBytes: what all answers held whole may hold at once (call/answer-share.ts).
const answers = new ByteBudget(settings.limits.maxBufferedAnswerBytes ?? DEFAULTS.limits.maxBufferedAnswerBytes);
const metrics = createWorkerMetrics({ version: settings.version, bufferedAnswerBytes: () => answers.heldBytes });
const [adapter, upstream] = await Promise.all([
  loadAdapter(settings.upstream.format),
  resolveUpstream(settings.upstream),
]);
const worker = createWorkerServer({ settings, log, metrics, adapter, upstream, answers });
await runWorker({
  server: worker.server,
  log,
  socketPath: settings.socketPath,
  collectMetrics: () => metrics.collect(),
  collectCounters: () => metrics.collectCounters(),
  connections: worker.connections,
  calls: worker.calls,
  masterReadsCallsTaken: settings.readsCallsTaken === true,
  masterTakesSignals: settings.takesSignals === true,
  // The lifecycle closes the HTTP server; the worker server then lets
  // its requests finish and closes the upstream pool and the mock.
  onDrain: () => {
    worker.close().catch((err: unknown) => log.error({ err }, 'closing the upstream failed'));
  },
  // At the master's shutdown deadline or this worker's own drain deadline: the upstream calls fail with shutting_down,
  // so their answers end as failed ones do (a stream with its final error event).
  cut: (message) => {
    worker
      .destroy(new GraygateError('shutting_down', message))
      .catch((err: unknown) => log.error({ err }, 'cutting failed'));
  },
});
