import { readFileSync, readdirSync } from 'node:fs';
import { Agent, request } from 'node:http';
import { benchArgs } from './args.js';
import { startGateway, type RunningGateway } from '../loadtest/gateway.js';
import { buildEntries } from '../loadtest/paths.js';
import { interruptSignal, stopAll } from '../loadtest/processes.js';
import { startHopUpstream } from './hop-upstream.js';
import { readCpuMs } from '../loadtest/rss.js';
import { checkCounts } from './counts.js';

// What graygate costs when little happens (issue 10 targets 2 and 5): master +
// one worker in front of hop-latency's upstream, per build (this tree and
// --baseline-root, alternating within each round):
//   idle       CPU ms per second, voluntary context switches per second and
//              RSS (anonymous / file-backed) of each process after --idle-s
//              seconds with no request;
//   one by one --requests streams of 2 tokens, one at a time, after --warmup
//              streams 20 at a time: CPU ms, context switches and minor page
//              faults per stream, per process.
// Every figure is read from /proc (utime+stime, voluntary_ctxt_switches of
// every thread, minflt, smaps_rollup), so the processes run unmodified.
// Usage: node dist/scripts/bench/rest-cost.js [--baseline-root DIR] [--rounds 2] [--idle-s 10]
//        [--requests 300] [--warmup 3000]

interface Counters {
  cpuMs: number;
  switches: number;
  minorFaults: number;
}

function counters(pid: number): Counters {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  let switches = 0;
  for (const task of readdirSync(`/proc/${pid}/task`)) {
    const status = readFileSync(`/proc/${pid}/task/${task}/status`, 'utf8');
    switches += Number(/^voluntary_ctxt_switches:\s+(\d+)/m.exec(status)?.[1] ?? 0);
  }
  return { cpuMs: readCpuMs(pid) ?? 0, switches, minorFaults: Number(fields[7]) };
}

function rssMiB(pid: number): { rss: number; anon: number } {
  const text = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
  const kb = (key: string): number => Number(new RegExp(`^${key}:\\s+(\\d+)`, 'm').exec(text)?.[1] ?? 0);
  return { rss: kb('Rss') / 1024, anon: kb('Anonymous') / 1024 };
}

const diff = (a: Counters, b: Counters): Counters => ({
  cpuMs: b.cpuMs - a.cpuMs,
  switches: b.switches - a.switches,
  minorFaults: b.minorFaults - a.minorFaults,
});

const BODY = JSON.stringify({ model: 'hop', stream: true, messages: [{ role: 'user', content: 'hi tokens=2' }] });

function stream(url: string, agent: Agent): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: 'POST', agent, headers: { 'content-type': 'application/json' } }, (res) => {
      res.resume();
      res.on('end', resolve);
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(BODY);
  });
}

async function streams(url: string, count: number, concurrency: number): Promise<void> {
  const agent = new Agent({ keepAlive: true, maxSockets: concurrency });
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next++ < count) await stream(url, agent);
    }),
  );
  agent.destroy();
}

interface Row {
  idle: Record<'master' | 'worker', Counters & { rss: number; anon: number }>;
  perStream: Record<'master' | 'worker', Counters>;
  idleS: number;
  requests: number;
}

async function measureBuild(
  gw: RunningGateway,
  workerPid: number,
  values: { idleS: number; requests: number },
): Promise<Row> {
  const url = `${gw.url}/v1/chat/completions`;
  const pids = { master: gw.pid, worker: workerPid } as const;
  const before = { master: counters(pids.master), worker: counters(pids.worker) };
  await new Promise((r) => setTimeout(r, values.idleS * 1000));
  const afterIdle = { master: counters(pids.master), worker: counters(pids.worker) };
  const idle = {
    master: { ...diff(before.master, afterIdle.master), ...rssMiB(pids.master) },
    worker: { ...diff(before.worker, afterIdle.worker), ...rssMiB(pids.worker) },
  };
  await streams(url, values.requests, 1);
  const afterStreams = { master: counters(pids.master), worker: counters(pids.worker) };
  return {
    idle,
    perStream: {
      master: diff(afterIdle.master, afterStreams.master),
      worker: diff(afterIdle.worker, afterStreams.worker),
    },
    idleS: values.idleS,
    requests: values.requests,
  };
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      'baseline-root': { type: 'string' },
      rounds: { type: 'string', default: '2' },
      'idle-s': { type: 'string', default: '10' },
      requests: { type: 'string', default: '300' },
      warmup: { type: 'string', default: '3000' },
    },
  });
  const [rounds, idleS, requests, warmup] = [
    Number(values.rounds),
    Number(values['idle-s']),
    Number(values.requests),
    Number(values.warmup),
  ];
  checkCounts({ rounds, 'idle-s': idleS, requests }, { atLeast: 1 });
  checkCounts({ warmup }, { atLeast: 0 });
  const signal = interruptSignal();
  try {
    const upstream = await startHopUpstream(signal);
    const builds: Array<[string, string | undefined]> = [['this tree', undefined]];
    if (values['baseline-root'] !== undefined)
      builds.push([`baseline ${values['baseline-root']}`, values['baseline-root']]);
    const gateways = [];
    for (const [name, root] of builds) {
      const entries = buildEntries(root);
      const gw = await startGateway({
        versions: { v1: { entry: entries.worker, weight: 1, upstream: { format: 'openai', url: upstream.url } } },
        logLevel: 'info',
        root: entries.root,
        signal,
      });
      const workerPid = (await gw.workers())[0]!.pid;
      await streams(`${gw.url}/v1/chat/completions`, warmup, 20);
      gateways.push({ name, gw, workerPid, rows: [] as Row[] });
    }
    process.stdout.write(
      `${warmup} warm-up streams per build; per round: ${idleS} s idle, then ${requests} streams one at a time\n`,
    );
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? gateways : [...gateways].reverse();
      for (const g of order) g.rows.push(await measureBuild(g.gw, g.workerPid, { idleS, requests }));
    }
    const f = (n: number, d = 2): string => n.toFixed(d).padStart(8);
    process.stdout.write(
      `\n${'build'.padEnd(34)}${'process'.padEnd(8)}${'idle CPU ms/s'.padStart(15)}${'switches/s'.padStart(12)}${'RSS MiB'.padStart(10)}${'anon'.padStart(8)}${'CPU ms/stream'.padStart(15)}${'switches'.padStart(10)}${'faults'.padStart(9)}\n`,
    );
    for (const g of gateways) {
      for (const row of g.rows) {
        for (const p of ['master', 'worker'] as const) {
          const i = row.idle[p];
          const s = row.perStream[p];
          process.stdout.write(
            `${g.name.padEnd(34)}${p.padEnd(8)}${f(i.cpuMs / row.idleS).padStart(15)}${f(i.switches / row.idleS, 1).padStart(12)}${f(i.rss, 1).padStart(10)}${f(i.anon, 1)}${f(s.cpuMs / row.requests, 3).padStart(15)}${f(s.switches / row.requests, 1).padStart(10)}${f(s.minorFaults / row.requests, 1).padStart(9)}\n`,
          );
        }
      }
    }
  } finally {
    await stopAll();
  }
}

await main();
process.exit(0);
