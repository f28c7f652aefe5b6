import { readWorkerSettings } from '../shared/ipc.js';
import { createLogger } from '../shared/log.js';
import { runWorker } from '../shared/worker-lifecycle.js';
import { createWorkerServer } from './server.js';
import { resolveUpstream } from './upstream/resolve.js';
import { createWorkerMetrics } from './metrics.js';

// Entry point of a worker process, forked by the master (SPEC §1). Wiring only.
const settings = readWorkerSettings(process.env);
const log = createLogger({ role: 'worker', version: settings.version, level: settings.logLevel });
const metrics = createWorkerMetrics({ version: settings.version });
const upstream = await resolveUpstream(settings.upstream);
const { server } = createWorkerServer({ settings, log, metrics, upstreamBaseUrl: upstream.baseUrl });
await runWorker({ server, log, collectMetrics: () => metrics.collect() });
