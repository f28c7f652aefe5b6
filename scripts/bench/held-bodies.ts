import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, request, type ClientRequest } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { benchArgs } from './args.js';
import { startGateway, type RunningGateway } from '../loadtest/gateway.js';
import { graygateLaunch, probeMemory } from '../loadtest/graygate-env.js';
import { buildEntries } from '../loadtest/paths.js';
import { interruptSignal, stopAll } from '../loadtest/processes.js';
import { startHopUpstream } from './hop-upstream.js';
import { checkCounts } from './counts.js';

// What a stream holds of its prompt while it streams (issue 10: "per-stream objects that can be
// dropped … buffers"). Per build (this tree and --baseline-root, alternating within each round):
// a master and one worker in front of hop-latency's upstream; --streams streams, each with a
// prompt of --kib KiB, are opened and held (the upstream streams a token every 20 ms and never
// ends them), then every graygate process is probed: its RSS and, after two full GCs
// (--expose-gc), the live `external` memory, where Buffers live. Each figure is given over the
// same processes' idle ones. The streams are then dropped and the gateway stopped.
// Usage: node dist/scripts/bench/held-bodies.js [--baseline-root DIR] [--rounds 2] [--streams 100] [--kib 512]

const MiB = 1024 * 1024;

interface Figures {
  rss: number;
  liveExternal: number;
}

async function probe(
  dir: string,
  pids: { master: number; worker: number },
): Promise<Record<'master' | 'worker', Figures>> {
  const probes = await probeMemory(dir, [pids.master, pids.worker], 30_000);
  const figures = (pid: number): Figures => {
    const p = probes.find((x) => x.pid === pid);
    if (p?.live == null) throw new Error(`process ${pid} did not report its live memory`);
    // RSS as the process saw it before its GCs: what it held, garbage included.
    return { rss: p.memory.rss / MiB, liveExternal: p.live.external / MiB };
  };
  return { master: figures(pids.master), worker: figures(pids.worker) };
}

/** Opens `count` streams with `body`; resolves with their requests once each has its first bytes. */
async function holdStreams(
  url: string,
  body: string,
  count: number,
): Promise<{ requests: ClientRequest[]; agent: Agent }> {
  const agent = new Agent({ keepAlive: true, maxSockets: count });
  const requests: ClientRequest[] = [];
  await Promise.all(
    Array.from(
      { length: count },
      () =>
        new Promise<void>((resolve, reject) => {
          const req = request(
            url,
            { method: 'POST', agent, headers: { 'content-type': 'application/json' } },
            (res) => {
              if (res.statusCode !== 200) reject(new Error(`status ${res.statusCode}`));
              res.once('data', () => resolve());
              res.on('error', () => undefined);
            },
          );
          req.on('error', reject);
          req.end(body);
          requests.push(req);
        }),
    ),
  );
  return { requests, agent };
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      'baseline-root': { type: 'string' },
      rounds: { type: 'string', default: '2' },
      streams: { type: 'string', default: '100' },
      kib: { type: 'string', default: '512' },
    },
  });
  const [rounds, streams, kib] = [Number(values.rounds), Number(values.streams), Number(values.kib)];
  checkCounts({ rounds, streams, kib }, { atLeast: 1 });
  const signal = interruptSignal();
  const probeDir = mkdtempSync(join(tmpdir(), 'graygate-held-bodies-'));
  try {
    const upstream = await startHopUpstream(signal);
    // tokens=… sets the stream's length (hop-latency's upstream reads it from the text): it never ends here.
    const body = JSON.stringify({
      model: 'hop',
      stream: true,
      messages: [{ role: 'user', content: `${'x'.repeat(kib * 1024)} tokens=1000000` }],
    });
    const builds: Array<[string, string | undefined]> = [['this tree', undefined]];
    if (values['baseline-root'] !== undefined)
      builds.push([`baseline ${values['baseline-root']}`, values['baseline-root']]);
    const lines: string[] = [];
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? builds : [...builds].reverse();
      for (const [name, root] of order) {
        const entries = buildEntries(root);
        const launch = graygateLaunch({ memoryProbeDir: probeDir, isLiveMemory: true });
        const gw: RunningGateway = await startGateway({
          versions: { v1: { entry: entries.worker, weight: 1, upstream: { format: 'openai', url: upstream.url } } },
          // Room for every body at once in the master's budget (SPEC §4a), whatever --streams × --kib.
          limits: { maxBufferedBodyBytes: 2 * streams * (kib + 1) * 1024 },
          logLevel: 'info',
          root: entries.root,
          execArgv: launch.execArgv,
          env: launch.env,
          signal,
        });
        try {
          const pids = { master: gw.pid, worker: (await gw.workers())[0]!.pid };
          const idle = await probe(probeDir, pids);
          const held = await holdStreams(`${gw.url}/v1/chat/completions`, body, streams);
          const during = await probe(probeDir, pids);
          for (const req of held.requests) req.destroy();
          held.agent.destroy();
          for (const p of ['master', 'worker'] as const) {
            const d = (k: keyof Figures): string => `+${(during[p][k] - idle[p][k]).toFixed(1)}`.padStart(9);
            lines.push(
              `${name.padEnd(40)}${String(round + 1).padStart(6)}  ${p.padEnd(8)}${idle[p].rss.toFixed(1).padStart(9)}${during[p].rss.toFixed(1).padStart(9)}${d('rss')}${d('liveExternal')}`,
            );
          }
        } finally {
          await gw.stop();
        }
      }
    }
    process.stdout.write(
      `${streams} streams held, each with a ${kib} KiB prompt (${((streams * kib) / 1024).toFixed(1)} MiB of prompts); MiB\n` +
        `${'build'.padEnd(40)}${'round'.padStart(6)}  ${'process'.padEnd(8)}${'idle RSS'.padStart(9)}${'held RSS'.padStart(9)}${'RSS'.padStart(9)}${'live ext'.padStart(9)}\n` +
        `${lines.join('\n')}\n` +
        `RSS and live ext: over the same processes' idle figures; live ext = process.memoryUsage().external after two full GCs.\n`,
    );
  } finally {
    await stopAll();
    rmSync(probeDir, { recursive: true, force: true });
  }
}

await main();
process.exit(0);
