import { runCannon } from '../loadtest/autocannon-process.js';
import { startGateway } from '../loadtest/gateway.js';
import { buildEntries } from '../loadtest/paths.js';
import { interruptSignal, stopAll } from '../loadtest/processes.js';
import { benchArgs } from './args.js';
import { checkCounts } from './counts.js';

// What V8's garbage collector does per small request (issue 10 target 4):
// master + one worker (`mock:` upstream) run with --trace-gc-nvp, autocannon
// asks GET /v1/models for --seconds on --connections connections, and the GC
// lines each process printed during the load are summed per request:
// young-generation GCs (scavenges) and their mean pause, bytes promoted to
// the old generation, full GCs, and the share of the wall time the process
// spent paused. Objects of a request that outlive it (held by a structure
// that keeps them past a scavenge) show as promoted bytes and full GCs.
// Each round runs every build on every path, alternating. Requests are
// autocannon's answers; a run with any that was not 2xx is named, and the
// script exits 1.
// Usage: node dist/scripts/bench/gc-per-request.js [--baseline-root DIR] [--paths relayed,direct]
//        [--rounds 2] [--seconds 8] [--connections 50]

interface GcTotals {
  scavenges: number;
  scavengeMs: number;
  promotedBytes: number;
  fullGcs: number;
  fullGcMs: number;
}

const empty = (): GcTotals => ({ scavenges: 0, scavengeMs: 0, promotedBytes: 0, fullGcs: 0, fullGcMs: 0 });

/**
 * One --trace-gc-nvp line: `[pid:0xISOLATE]  N ms: pause=P … gc=s|mc|ms … promoted=B …`; undefined for any other
 * line. The isolate tells a process's main thread from its helper threads (the worker's body preparer).
 */
function readGcLine(
  line: string,
): { pid: number; isolate: string; isScavenge: boolean; pauseMs: number; promoted: number } | undefined {
  const head = /^\[(\d+):(0x[0-9a-f]+)\]\s+\d+ ms: pause=([\d.]+) /.exec(line);
  if (head === null) return undefined;
  const kind = / gc=(\w+) /.exec(line)?.[1];
  if (kind === undefined) return undefined;
  return {
    pid: Number(head[1]),
    isolate: head[2]!,
    isScavenge: kind === 's',
    pauseMs: Number(head[3]),
    promoted: Number(/ promoted=(\d+)/.exec(line)?.[1] ?? 0),
  };
}

interface Run {
  build: string;
  path: string;
  requests: number;
  /** Answers that were not 2xx, and errors: a run with any is marked. */
  failed: number;
  seconds: number;
  master: GcTotals;
  worker: GcTotals;
}

async function measure(
  root: string | undefined,
  isDirect: boolean,
  values: { seconds: number; connections: number },
  signal: AbortSignal,
): Promise<Omit<Run, 'build' | 'path'>> {
  const entries = buildEntries(root);
  const byPid = new Map<number, GcTotals>();
  /** Each process's main thread: the first isolate it printed a line for (at start, before any helper thread). */
  const mainIsolate = new Map<number, string>();
  let isCounting = false;
  const gw = await startGateway({
    versions: { v1: { entry: entries.worker, weight: 1, upstream: { format: 'openai', url: 'mock:' } } },
    limits: { directStreams: isDirect },
    logLevel: 'info',
    root: entries.root,
    execArgv: ['--trace-gc-nvp'],
    onStdoutLine: (line) => {
      if (line.charCodeAt(0) !== 0x5b /* [ */) return;
      const gc = readGcLine(line);
      if (gc === undefined) return;
      if (!mainIsolate.has(gc.pid)) mainIsolate.set(gc.pid, gc.isolate);
      if (!isCounting || mainIsolate.get(gc.pid) !== gc.isolate) return;
      let t = byPid.get(gc.pid);
      if (t === undefined) byPid.set(gc.pid, (t = empty()));
      if (gc.isScavenge) {
        t.scavenges++;
        t.scavengeMs += gc.pauseMs;
      } else {
        t.fullGcs++;
        t.fullGcMs += gc.pauseMs;
      }
      t.promotedBytes += gc.promoted;
    },
    signal,
  });
  try {
    const url = `${gw.url}/v1/models`;
    // Warm-up: connections open (and, with directStreams, held by the worker), code optimised.
    await runCannon({ url, connections: values.connections, durationS: 3, signal });
    isCounting = true;
    const load = await runCannon({ url, connections: values.connections, durationS: values.seconds, signal });
    isCounting = false;
    const workerPid = (await gw.workers())[0]?.pid;
    return {
      requests: load.total,
      failed: load.non2xx + load.errors,
      seconds: values.seconds,
      master: byPid.get(gw.pid) ?? empty(),
      worker: (workerPid === undefined ? undefined : byPid.get(workerPid)) ?? empty(),
    };
  } finally {
    await gw.stop();
  }
}

/** Whether every request of every run was answered 2xx. */
async function main(): Promise<boolean> {
  const { values } = benchArgs({
    options: {
      'baseline-root': { type: 'string' },
      paths: { type: 'string', default: 'relayed,direct' },
      rounds: { type: 'string', default: '2' },
      seconds: { type: 'string', default: '8' },
      connections: { type: 'string', default: '50' },
    },
  });
  const [rounds, seconds, connections] = [Number(values.rounds), Number(values.seconds), Number(values.connections)];
  checkCounts({ rounds, seconds, connections }, { atLeast: 1 });
  const paths = values.paths.split(',');
  if (paths.some((p) => p !== 'relayed' && p !== 'direct')) {
    process.stderr.write(`--paths: expected relayed and/or direct, got ${values.paths}\n`);
    process.exit(64);
  }
  const builds: Array<[string, string | undefined]> = [['this tree', undefined]];
  if (values['baseline-root'] !== undefined) builds.push(['baseline', values['baseline-root']]);
  const signal = interruptSignal();
  const runs: Run[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      const order = round % 2 === 0 ? builds : [...builds].reverse();
      for (const path of paths) {
        for (const [build, root] of order) {
          process.stderr.write(`• round ${round + 1}/${rounds}: ${build}, ${path}\n`);
          runs.push({ build, path, ...(await measure(root, path === 'direct', { seconds, connections }, signal)) });
        }
      }
    }
  } finally {
    await stopAll();
  }
  process.stdout.write(
    `GET /v1/models, ${connections} connections × ${seconds} s a run, master + 1 worker (mock:), --trace-gc-nvp\n` +
      `${'build'.padEnd(11)}${'path'.padEnd(9)}${'process'.padEnd(8)}${'req/s'.padStart(8)}` +
      `${'scavenges/10k'.padStart(15)}${'mean ms'.padStart(9)}${'promoted B/req'.padStart(16)}` +
      `${'full GCs/10k'.padStart(14)}${'paused %'.padStart(10)}\n`,
  );
  for (const run of runs) {
    if (run.failed > 0)
      process.stdout.write(`${run.build}, ${run.path}: ${run.failed} of ${run.requests} requests failed (not 2xx)\n`);
    for (const who of ['master', 'worker'] as const) {
      const t = run[who];
      if (t.scavenges === 0)
        process.stdout.write(`${run.build}, ${run.path}: no GC line of the ${who} during the load (none reached us)\n`);
      const per10k = (n: number): string => ((n / Math.max(1, run.requests)) * 10_000).toFixed(1);
      process.stdout.write(
        `${run.build.padEnd(11)}${run.path.padEnd(9)}${who.padEnd(8)}${String(Math.round(run.requests / run.seconds)).padStart(8)}` +
          `${per10k(t.scavenges).padStart(15)}${(t.scavenges === 0 ? 0 : t.scavengeMs / t.scavenges).toFixed(2).padStart(9)}` +
          `${Math.round(t.promotedBytes / Math.max(1, run.requests))
            .toString()
            .padStart(16)}` +
          `${per10k(t.fullGcs).padStart(14)}${(((t.scavengeMs + t.fullGcMs) / (run.seconds * 1000)) * 100).toFixed(1).padStart(10)}\n`,
      );
    }
  }
  return runs.every((run) => run.failed === 0);
}

// Exit 1 when a run had failures: its figures are per request of a load that was not the one asked for.
process.exit((await main()) ? 0 : 1);
