import { readdir } from 'node:fs/promises';
import { Gauge, collectDefaultMetrics, type Registry } from 'prom-client';
import { LOOP_DELAY_RESOLUTION_MS } from './metric-names.js';

// prom-client's default process metrics (`process_*`, `nodejs_*`), for the master's registry and each worker's, less
// what costs a scrape time in proportion to the process's connections, on its event loop, while every stream it
// relays waits (prom-client issue #615). A master holding 9,000 streams has ~18,000 sockets: prom-client collects
// `nodejs_active_handles` and `nodejs_active_handles_total` by listing every handle (process._getActiveHandles(),
// 6.2 ms each at 17,500 handles), `nodejs_active_resources` and `_total` by naming every resource
// (process.getActiveResourcesInfo(), 9.5 ms) and `process_open_fds` by readdirSync('/proc/self/fd') (16.6 ms): one
// turn of the loop, each scrape (scripts/bench/scrape-cost.ts; docs/BENCHMARKS.md, 7 December 13:26). The four handle
// and resource series are left out (graygate_client_connections and graygate_streams_active count what matters of
// them here); process_open_fds stays, every socket counted against the file limit a master lives under, read by an
// asynchronous readdir: the directory is read on libuv's thread pool, and the loop only turns its names into an array
// (~5 ms at 17,500, 20 ms of CPU either way).

/** The default series left out: their collection is linear in the process's handles, on its event loop. */
export const LINEAR_IN_HANDLES = [
  'nodejs_active_handles',
  'nodejs_active_handles_total',
  'nodejs_active_resources',
  'nodejs_active_resources_total',
] as const;

const OPEN_FDS = 'process_open_fds';

/** Registers prom-client's default metrics in `registry`, but LINEAR_IN_HANDLES, process_open_fds read off the loop. */
export function collectProcessMetrics(registry: Registry): void {
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: LOOP_DELAY_RESOLUTION_MS });
  for (const name of LINEAR_IN_HANDLES) registry.removeSingleMetric(name);
  // Only where prom-client has it (Linux: /proc/self/fd).
  if (registry.getSingleMetric(OPEN_FDS) === undefined) return;
  registry.removeSingleMetric(OPEN_FDS);
  new Gauge({
    name: OPEN_FDS,
    help: 'Number of open file descriptors.',
    registers: [registry],
    async collect() {
      try {
        // Less the descriptor the read itself held open, as prom-client counts.
        this.set((await readdir('/proc/self/fd')).length - 1);
      } catch {
        // No figure this scrape, as prom-client's own gauge gives none.
      }
    },
  });
}
