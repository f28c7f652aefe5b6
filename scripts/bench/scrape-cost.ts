import { once } from 'node:events';
import { createServer, connect, type Socket } from 'node:net';
import { Registry, collectDefaultMetrics } from 'prom-client';
import { openFileLimit } from '../../master/file-limit.js';
import { LOOP_DELAY_RESOLUTION_MS } from '../../shared/metric-names.js';
import { collectProcessMetrics } from '../../shared/process-metrics.js';
import { benchArgs } from './args.js';
import { checkCounts } from './counts.js';

// What a /metrics scrape costs a process that holds many connections (shared/process-metrics.ts): this process opens
// --connections loopback TCP connections (two sockets each, as a master holds a client's and its worker's for a
// stream), then scrapes two registries of process series in turn, round after round: graygate's
// (collectProcessMetrics) and prom-client's own defaults (collectDefaultMetrics, what graygate registered before).
// For each: the scrape's wall and CPU time, and the longest stretch the event loop was held (the largest gap between
// two setImmediate turns while the scrape ran, in a scrape of its own), medians over the rounds.
// Usage: node dist/scripts/bench/scrape-cost.js [--connections 8000] [--rounds 7]

const { values } = benchArgs({
  options: {
    connections: { type: 'string', default: '8000' },
    rounds: { type: 'string', default: '7' },
  },
});
const connections = Number(values.connections);
const rounds = Number(values.rounds);
// Two descriptors a connection, under this process's open-file limit with room for node's own (`--connections 1e9`
// opened sockets until EMFILE, then ended with a stack); rounds, a bound a run ends within.
const fileLimit = openFileLimit();
checkCounts(
  { connections },
  { atLeast: 1, atMost: fileLimit === undefined ? 100_000 : Math.floor((fileLimit - 100) / 2) },
);
checkCounts({ rounds }, { atLeast: 1, atMost: 1000 });

const sockets: Socket[] = [];
const server = createServer((socket) => {
  socket.on('error', () => {});
  sockets.push(socket);
});
server.listen(0, '127.0.0.1');
await once(server, 'listening');
const address = server.address();
if (address === null || typeof address === 'string') throw new Error('no port');
for (let i = 0; i < connections; i++) {
  const socket = connect(address.port, '127.0.0.1');
  socket.on('error', () => {});
  sockets.push(socket);
  await once(socket, 'connect');
}

function registry(kind: 'graygate' | 'prom-client'): Registry {
  const r = new Registry();
  if (kind === 'graygate') collectProcessMetrics(r);
  else collectDefaultMetrics({ register: r, eventLoopMonitoringPrecision: LOOP_DELAY_RESOLUTION_MS });
  return r;
}

/** One scrape's wall and CPU ms, with nothing else running. */
async function timed(r: Registry): Promise<{ wallMs: number; cpuMs: number }> {
  const cpu = process.cpuUsage();
  const start = performance.now();
  await r.metrics();
  const wallMs = performance.now() - start;
  const used = process.cpuUsage(cpu);
  return { wallMs, cpuMs: (used.user + used.system) / 1000 };
}

/** The longest the event loop was held during one scrape: the largest gap between two setImmediate turns. */
async function longestHold(r: Registry): Promise<number> {
  let last = performance.now();
  let longest = 0;
  let done = false;
  const turn = (): void => {
    const now = performance.now();
    longest = Math.max(longest, now - last);
    last = now;
    if (!done) setImmediate(turn);
  };
  setImmediate(turn);
  await r.metrics();
  done = true;
  return Math.max(longest, performance.now() - last);
}

const median = (xs: number[]): number => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
const kinds = ['graygate', 'prom-client'] as const;
const results = new Map(
  kinds.map((k) => [k, { registry: registry(k), wall: [] as number[], cpu: [] as number[], hold: [] as number[] }]),
);
// A first scrape of each, not measured: the code compiled, prom-client's collectors warm.
for (const r of results.values()) await r.registry.metrics();
for (let round = 0; round < rounds; round++) {
  for (const kind of round % 2 === 0 ? kinds : [...kinds].reverse()) {
    const r = results.get(kind)!;
    const { wallMs, cpuMs } = await timed(r.registry);
    r.wall.push(wallMs);
    r.cpu.push(cpuMs);
    r.hold.push(await longestHold(r.registry));
  }
}
const handles = (process as unknown as { _getActiveHandles(): unknown[] })._getActiveHandles().length;
process.stdout.write(`${connections} connections, ${handles} handles; medians of ${rounds} rounds, alternating\n`);
process.stdout.write('registry      scrape wall ms  CPU ms  longest loop hold ms\n');
for (const [kind, r] of results) {
  const row = [median(r.wall), median(r.cpu), median(r.hold)].map((x) => x.toFixed(2).padStart(8));
  process.stdout.write(`${kind.padEnd(12)}  ${row[0]}  ${row[1]}  ${row[2]}\n`);
}
for (const socket of sockets) socket.destroy();
server.close();
process.exit(0);
