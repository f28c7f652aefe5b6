import type { Server } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';
import { Registry } from 'prom-client';
import { validateConfig } from '../../shared/config.js';
import { createLogger } from '../../shared/log.js';
import { Supervisor } from '../../master/supervisor.js';
import { VersionRegistry } from '../../master/version-registry.js';
import { createGateway } from '../../master/gateway.js';
import { createMainServer } from '../../master/main-server.js';
import { ByteBudget } from '../../shared/byte-budget.js';
import { createMasterMetrics, type MasterMetrics } from '../../master/metrics.js';
import { gatherMetrics } from '../../master/admin/metrics-endpoint.js';
import { TEST_WORKER_ENTRY } from '../loadtest/paths.js';
import { benchCounts } from './args.js';

// Issue 5 figure: requests/s through the master with metrics on vs off. One
// supervisor and worker set; the gateway handler is built twice, with the real
// MasterMetrics (with BENCH_SCRAPE=1 also /metrics gathered every second, as
// `graygate top` does) and with a no-op one, and runs alternate (on, off, off, on, …) so drift hits
// both alike. The worker is the test build answering at once, so the master's
// own per-request cost is as large a share of the total as it can be.
// Run: `npm run build && node dist/scripts/bench/metrics-overhead.js [rounds] [seconds] [connections]`.

const counts = benchCounts({ rounds: 4, seconds: 8, connections: 64 });
const ROUNDS = counts.rounds;
const DURATION_S = counts.seconds;
const CONNECTIONS = counts.connections;

// autocannon in its own process: in this one it would compete with the master for the event loop.
const AUTOCANNON_BIN = createRequire(import.meta.url).resolve('autocannon/autocannon.js');
const SCRAPE = process.env['BENCH_SCRAPE'] === '1';

const noopMetrics: MasterMetrics = {
  registry: new Registry(),
  onRequestDone() {},
  observeHeaderLatency() {},
  onRejected() {},
  forgetVersion() {},
  retireWorker() {},
  retiredMetrics: () => [],
};

const parsed = validateConfig({
  listen: { host: '127.0.0.1', port: 0 },
  admin: { host: '127.0.0.1', port: 0 },
  versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1, instances: 2 } },
});
if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
const config = parsed.value;
// Request lines off in both runs: this measures metrics, not logging.
const log = createLogger({ role: 'master', level: 'warn' });
const supervisor = new Supervisor({ log, limits: () => config.limits, redactEnv: () => [] });
const registry = new VersionRegistry({ config, supervisor, log });
await registry.startAll();

async function run(mode: 'on' | 'off'): Promise<number> {
  const metrics = mode === 'on' ? createMasterMetrics({ versions: () => registry }) : noopMetrics;
  const budget = new ByteBudget(config.limits.maxBufferedBodyBytes);
  const gateway = createGateway({ registry, log, metrics, budget, isClosing: () => false });
  const server: Server = createMainServer({ gateway, limits: config.limits, log });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/slow?ms=0`;
  const scraper =
    mode === 'on' && SCRAPE
      ? setInterval(() => void gatherMetrics(registry, metrics).then((r) => r.metrics()), 1000)
      : undefined;
  const load = (durationS: number): Promise<{ requests: { total: number }; non2xx: number; errors: number }> =>
    new Promise((resolve, reject) =>
      execFile(
        process.execPath,
        [AUTOCANNON_BIN, '--json', '-c', String(CONNECTIONS), '-d', String(durationS), url],
        { maxBuffer: 1 << 24 },
        (err: Error | null, stdout) =>
          err
            ? reject(err)
            : resolve(JSON.parse(stdout) as { requests: { total: number }; non2xx: number; errors: number }),
      ),
    );
  await load(2); // warm-up: JIT, keep-alive sockets
  const result = await load(DURATION_S);
  clearInterval(scraper);
  server.closeAllConnections();
  await new Promise((r) => server.close(r));
  if (result.non2xx > 0 || result.errors > 0)
    throw new Error(`${mode}: ${result.non2xx} non-2xx, ${result.errors} errors`);
  return result.requests.total / DURATION_S;
}

const results: Record<'on' | 'off', number[]> = { on: [], off: [] };
// A B, then B A: the process's first run is its coldest (a README walk-through's 1-round run read an 82 % gap that
// three rounds put at 15 %); with an even number of rounds each mode has as many first and second places.
for (let i = 0; i < ROUNDS; i++) {
  for (const mode of i % 2 === 0 ? (['on', 'off'] as const) : (['off', 'on'] as const)) {
    const rps = await run(mode);
    results[mode].push(rps);
    process.stdout.write(`round ${i + 1} metrics ${mode.padEnd(3)} ${rps.toFixed(0)} req/s\n`);
  }
}
const median = (xs: number[]): number => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 === 1 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const on = median(results.on);
const off = median(results.off);
process.stdout.write(
  `\nmedian req/s: metrics on ${on.toFixed(0)}, off ${off.toFixed(0)}; difference ${(((off - on) / off) * 100).toFixed(2)}% ` +
    `(${SCRAPE ? 'scraping every 1 s, ' : ''}${ROUNDS} rounds × ${DURATION_S} s, ${CONNECTIONS} connections, node ${process.version})\n`,
);
await supervisor.stopAll(3000);
process.exit(0);
