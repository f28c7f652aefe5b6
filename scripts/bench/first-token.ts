import { fork } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { startMockUpstream } from '../../shared/mock-upstream/index.js';
import { benchCounts } from './args.js';

// First-token latency added by the gateway (issue 3 benchmark): the same
// client reads N streams from the mock upstream directly, then through
// master + worker in front of that same mock, on warm keep-alive pools.
// Usage: node dist/scripts/bench/first-token.js [streams=1000] [concurrency=10] [rounds=3]
// Loopback only; stops everything it started.

const { streams, concurrency, rounds } = benchCounts({ streams: 1000, concurrency: 10, rounds: 3 });
const root = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
// The directive reaches the mock on both paths (the worker does not forward x-mock-* headers).
const body = JSON.stringify({
  model: 'm',
  stream: true,
  messages: [{ role: 'user', content: '[mock tokens=5 interval-ms=0]' }],
});

interface Quantiles {
  p50: number;
  p99: number;
}

async function measure(url: string, agent: Agent): Promise<Quantiles> {
  const ttft: number[] = [];
  let next = 0;
  const one = (): Promise<void> =>
    new Promise((done, fail) => {
      const start = performance.now();
      let isFirst = true;
      const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
        res.on('data', (chunk: Buffer) => {
          if (isFirst && chunk.includes('"content":"')) {
            isFirst = false;
            ttft.push(performance.now() - start);
          }
        });
        res.on('end', done);
        res.on('error', fail);
      });
      req.on('error', fail);
      req.end(body);
    });
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < streams) await one();
    }),
  );
  ttft.sort((a, b) => a - b);
  return { p50: ttft[Math.floor(ttft.length / 2)]!, p99: ttft[Math.floor(ttft.length * 0.99)]! };
}

const mock = await startMockUpstream({ format: 'openai' });
const dir = mkdtempSync(join(tmpdir(), 'graygate-ttft-'));
const configPath = join(dir, 'graygate.json');
writeFileSync(
  configPath,
  JSON.stringify({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    versions: {
      v1: { entry: join(root, 'dist/worker/main.js'), weight: 1, upstream: { format: 'openai', url: mock.baseUrl } },
    },
  }),
);
const master = fork(join(root, 'dist/master/main.js'), ['--config', configPath], {
  stdio: ['ignore', 'ignore', 'inherit', 'ipc'],
  env: { ...process.env, LOG_LEVEL: process.env['LOG_LEVEL'] ?? 'info' },
});
const stop = (): void => {
  if (master.exitCode === null) master.kill('SIGTERM');
};
process.once('SIGINT', stop);
try {
  const [listening] = (await once(master, 'message')) as [{ url: string }];
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  const direct = `${mock.baseUrl}/chat/completions`;
  const gateway = `${listening.url}/v1/chat/completions`;
  await measure(direct, agent);
  await measure(gateway, agent); // warm-up round for both pools
  console.log(`${streams} streams, ${concurrency} concurrent, 5 tokens each; ms`);
  console.log('round  direct p50/p99   gateway p50/p99   added p50/p99');
  for (let i = 1; i <= rounds; i++) {
    const d = await measure(direct, agent);
    const g = await measure(gateway, agent);
    const f = (n: number): string => n.toFixed(2);
    console.log(
      `${i}      ${f(d.p50)} / ${f(d.p99)}     ${f(g.p50)} / ${f(g.p99)}     ${f(g.p50 - d.p50)} / ${f(g.p99 - d.p99)}`,
    );
  }
  agent.destroy();
} finally {
  stop();
  if (master.exitCode === null) await once(master, 'exit');
  await mock.close();
  rmSync(dir, { recursive: true, force: true });
}
