import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { startMockUpstream } from '../../shared/mock-upstream/index.js';
import { benchArgs } from './args.js';
import { checkCounts } from './counts.js';
import { startGateway } from '../loadtest/gateway.js';
import { graygateLaunch, probeMemory } from '../loadtest/graygate-env.js';
import { buildEntries } from '../loadtest/paths.js';

// What pipelined heads cost the master (SPEC §4a; a resource probe of 6 December): --connections connections, each
// sending a slow stream and, in the same write, --heads pipelined `GET /v1/models` with an `x-pad` header of
// --header-bytes, reading nothing. Node parses a read whole, so each connection's heads wait in the master behind its
// stream. Per build (this tree, and --baseline-root's if given, alternating in each round): the master's RSS over its
// idle RSS at its peak, what is live in its heap after two full GCs once it has settled (what it holds, not garbage),
// and how many connections it closed as floods (its warn lines). Loopback only; stops what it started.
// Usage: node dist/scripts/bench/pipelined-heads.js [--baseline-root DIR] [--rounds 1] [--connections 1000]
//        [--heads 120] [--header-bytes 1900]

const { values } = benchArgs({
  options: {
    'baseline-root': { type: 'string' },
    rounds: { type: 'string', default: '1' },
    connections: { type: 'string', default: '1000' },
    heads: { type: 'string', default: '120' },
    'header-bytes': { type: 'string', default: '1900' },
  },
});
const rounds = Number(values.rounds);
const connections = Number(values.connections);
const heads = Number(values.heads);
const headerBytes = Number(values['header-bytes']);
checkCounts({ rounds, connections, heads, 'header-bytes': headerBytes }, { atLeast: 1 });

const MB = 1e6;
const rssOf = (pid: number): number => {
  const line = /^VmRSS:\s+(\d+) kB$/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return line === null ? 0 : Number(line[1]) * 1024;
};

const body = JSON.stringify({
  model: 'm',
  stream: true,
  messages: [{ role: 'user', content: '[mock tokens=60 interval-ms=500]' }],
});
const stream =
  `POST /v1/chat/completions HTTP/1.1\r\nHost: g\r\nContent-Type: application/json\r\n` +
  `Content-Length: ${Buffer.byteLength(body)}\r\n\r\n${body}`;
const pipelined = `GET /v1/models HTTP/1.1\r\nHost: g\r\nx-pad: ${'p'.repeat(headerBytes)}\r\n\r\n`.repeat(heads);
const write = stream + pipelined;

const roots: Array<string | undefined> = [undefined];
if (values['baseline-root'] !== undefined) roots.push(values['baseline-root']);
const mock = await startMockUpstream({ format: 'openai' });
const probeDir = mkdtempSync(join(tmpdir(), 'graygate-pipelined-heads-'));
const rows: string[] = [];
try {
  for (let round = 0; round < rounds; round++) {
    for (const root of round % 2 === 0 ? roots : [...roots].reverse()) {
      const launch = graygateLaunch({ memoryProbeDir: probeDir, isLiveMemory: true });
      let floods = 0;
      const gw = await startGateway({
        versions: {
          v1: { entry: buildEntries(root).worker, weight: 1, upstream: { format: 'openai', url: mock.baseUrl } },
        },
        logLevel: 'warn',
        execArgv: launch.execArgv,
        env: launch.env,
        onStdoutLine: (line) => {
          if (line.includes('pipelined more requests')) floods++;
        },
        ...(root === undefined ? {} : { root }),
      });
      const sockets: Socket[] = [];
      try {
        const liveOf = async (): Promise<number> => {
          const [probe] = await probeMemory(probeDir, [gw.pid], 30_000);
          if (probe?.live == null) throw new Error(`the master (${gw.pid}) did not report its live memory`);
          return probe.live.heapUsed + probe.live.external;
        };
        const port = Number(new URL(gw.url).port);
        const idle = rssOf(gw.pid);
        const liveIdle = await liveOf();
        for (let i = 0; i < connections; i++) {
          const socket = connect(port, '127.0.0.1');
          socket.on('error', () => undefined);
          socket.pause(); // reads nothing: every answer waits in the master
          socket.write(write);
          sockets.push(socket);
        }
        // Settled: RSS moves less than 1 MB over three looks 500 ms apart, or 30 s.
        let peak = idle;
        let last = -Infinity;
        let still = 0;
        for (let look = 0; look < 60 && still < 3; look++) {
          await delay(500);
          const rss = rssOf(gw.pid);
          peak = Math.max(peak, rss);
          still = Math.abs(rss - last) < MB ? still + 1 : 0;
          last = rss;
        }
        const live = await liveOf();
        rows.push(
          `${(root ?? 'this tree').padEnd(24)} round ${round + 1}: master RSS idle ${(idle / MB).toFixed(1)} MB, ` +
            `peak +${((peak - idle) / MB).toFixed(1)} MB; live after GC +${((live - liveIdle) / MB).toFixed(1)} MB ` +
            `(${((live - liveIdle) / connections / 1000).toFixed(1)} KB a connection); ${floods} of ${connections} ` +
            `connections closed as floods`,
        );
      } finally {
        for (const s of sockets) s.destroy();
        await gw.stop();
      }
    }
  }
} finally {
  await mock.close();
  rmSync(probeDir, { recursive: true, force: true });
}
console.log(
  `${connections} connections, each a slow stream and ${heads} pipelined heads of ~${headerBytes + 40} bytes, read by no one`,
);
for (const row of rows) console.log(row);
