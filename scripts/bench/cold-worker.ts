import { Agent, request } from 'node:http';
import { startMockUpstream } from '../../shared/mock-upstream/index.js';
import { benchArgs } from './args.js';
import { startGateway, type RunningGateway } from '../loadtest/gateway.js';
import { WORKER_ENTRY } from '../loadtest/paths.js';

// What a freshly started worker's first answers cost against a warm one's (README, Canary: a build started for the
// canary is cold). Two versions on one mock upstream: v1 is warmed with --warmup requests, v2 has served none; then
// requests alternate between them (pinned, --concurrency at a time), and each version's latencies (a stream's first
// body byte, else the whole answer) are counted above 1.2 × v1's p99 over the run, per window of 100 of its
// requests: what the canary's default latency criteria would see. --first-byte-ms sets the upstream's own latency
// (0: the mock's, a few ms; 300: an LLM's first token).
// Usage: node dist/scripts/bench/cold-worker.js [--warmup 3000] [--requests 4000] [--concurrency 4]
//        [--first-byte-ms 0] [--stream]
// Loopback only; stops everything it started.

const { values } = benchArgs({
  options: {
    warmup: { type: 'string', default: '3000' },
    requests: { type: 'string', default: '4000' },
    concurrency: { type: 'string', default: '4' },
    'first-byte-ms': { type: 'string', default: '0' },
    stream: { type: 'boolean', default: false },
  },
});
const parseCount = (name: string, raw: string, min: number): number => {
  const n = Number(raw);
  if (!Number.isInteger(n) || n < min) {
    process.stderr.write(`--${name} must be an integer ≥ ${min}\n`);
    process.exit(64);
  }
  return n;
};
const warmup = parseCount('warmup', values.warmup, 0);
const requests = parseCount('requests', values.requests, 2);
const concurrency = parseCount('concurrency', values.concurrency, 1);
const firstByteMs = parseCount('first-byte-ms', values['first-byte-ms'], 0);
const isStream = values.stream;

const RATIO = 1.2;
const WINDOW = 100;
const body = JSON.stringify({
  model: 'm',
  stream: isStream,
  messages: [{ role: 'user', content: `[mock tokens=5 first-byte-ms=${firstByteMs}]` }],
});

/** One request's latency (a stream's first body byte, else the whole answer); anything but a 200 fails the run. */
function timeRequest(url: string, agent: Agent): Promise<number> {
  return new Promise((done, fail) => {
    const start = performance.now();
    let firstMs = -1;
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      if (res.statusCode !== 200) {
        res.resume();
        return fail(new Error(`${url}: ${res.statusCode}, not 200: a refusal would read as a quick answer`));
      }
      res.on('data', () => {
        if (firstMs < 0) firstMs = performance.now() - start;
      });
      res.on('end', () => done(isStream ? firstMs : performance.now() - start));
      res.on('error', fail);
    });
    req.on('error', fail);
    req.end(body);
  });
}

/** `n` requests, `concurrency` at a time, to each of `versions` in turn: latencies by version, in the order sent. */
async function run(base: string, agent: Agent, versions: string[], n: number): Promise<Map<string, number[]>> {
  const out = new Map(versions.map((v) => [v, [] as number[]]));
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < n) {
        const i = next++;
        const version = versions[i % versions.length]!;
        const index = Math.floor(i / versions.length);
        out.get(version)![index] = await timeRequest(`${base}/v1/chat/completions?version=${version}`, agent);
      }
    }),
  );
  return out;
}

const mock = await startMockUpstream({ format: 'openai' });
const upstream = { format: 'openai', url: mock.baseUrl };
let gw: RunningGateway | undefined;
try {
  gw = await startGateway({
    versions: { v1: { entry: WORKER_ENTRY, weight: 1, upstream }, v2: { entry: WORKER_ENTRY, weight: 0, upstream } },
    logLevel: process.env['LOG_LEVEL'] ?? 'warn',
  });
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  await run(gw.url, agent, ['v1'], warmup);
  const latencies = await run(gw.url, agent, ['v1', 'v2'], requests);
  agent.destroy();
  const warm = [...latencies.get('v1')!].sort((a, b) => a - b);
  const p99 = warm[Math.min(warm.length - 1, Math.floor(warm.length * 0.99))]!;
  const limit = RATIO * p99;
  const formatMs = (n: number): string => n.toFixed(1);
  console.log(
    `${isStream ? 'streams (first byte)' : 'answers'}, upstream first byte ${firstByteMs} ms, ${concurrency} at a time; ` +
      `v1 warmed with ${warmup}, v2 fresh`,
  );
  console.log(
    `v1 over the run: p50 ${formatMs(warm[warm.length >> 1]!)} ms, p99 ${formatMs(p99)} ms; limit ${RATIO} × p99 = ${formatMs(limit)} ms`,
  );
  for (const [version, values] of latencies) {
    const windows: number[] = [];
    for (let i = 0; i < values.length; i += WINDOW)
      windows.push(values.slice(i, i + WINDOW).filter((v) => v > limit).length);
    const over = windows.reduce((a, b) => a + b, 0);
    console.log(
      `${version}: ${over} of ${values.length} above the limit; per ${WINDOW}: ${windows.join(' ')}; ` +
        `first 8: ${values.slice(0, 8).map(formatMs).join(' ')} ms`,
    );
  }
} finally {
  await gw?.stop();
  await mock.close();
}
