import { CHAT_PATH, JSON_HEADERS, chatBody } from '../chat-request.js';
import { startGateway } from '../gateway.js';
import { workerAddress } from '../listen-port.js';
import { runLoad, type LoadResult } from '../load.js';
import { startNginxIfAble } from '../nginx.js';
import { WORKER_ENTRY } from '../paths.js';
import { RssSampler, processGroupMembers, toMb } from '../rss.js';
import type { Scenario } from '../scenario.js';
import { warmUp, warmUpSeconds } from '../warm-up.js';
import { runCompareSse } from './compare-sse.js';

// The same request under the same load, one after the other in one run
// (issue 6 scenario 5): straight to a graygate worker, through graygate, and
// through nginx in front of that same worker when nginx is installed.

interface Column {
  path: string;
  load: LoadResult;
  /** Peak RSS of the proxy in front (graygate master, nginx group), MB; null for direct. */
  proxyPeakMb: number | null;
  /** Average CPU during the run, % of one core: the proxy in front (null for direct) and the shared worker. */
  proxyCpuPct: number | null;
  workerCpuPct: number;
}

const TOKENS = 20;

function ratio(a: number, b: number): number {
  return b === 0 ? 0 : Math.round((a / b) * 100) / 100;
}

export const runCompare: Scenario = async (ctx) => {
  if (ctx.args.isSse) return runCompareSse(ctx);
  const { args, signal, progress } = ctx;
  const durationS = args.durationS ?? 10;
  const connections = args.connections ?? 50;
  const stops: Array<() => Promise<void>> = [];
  const notes: string[] = [];
  try {
    progress.phase('starting graygate (1 worker, embedded mock upstream)');
    const gw = await startGateway({
      versions: { v1: { entry: WORKER_ENTRY, weight: 1, instances: 1, upstream: { format: 'openai', url: 'mock:' } } },
      logLevel: args.logLevel,
      signal,
    });
    stops.push(gw.stop);
    const worker = (await gw.workers())[0]!;
    // graygate does not publish worker addresses; find the port (or unix socket) this worker listens on.
    const address = workerAddress(worker.pid);
    if (address === undefined)
      throw new Error(`could not find the address worker ${worker.pid} listens on (/proc unavailable?)`);
    const port = address.kind === 'tcp' ? address.hostPort : address.socketPath;
    const targets: Array<{ path: string; url: string; socketPath?: string; proxyPid: number | null }> = [
      address.kind === 'tcp'
        ? { path: 'direct to the worker', url: address.url, proxyPid: null }
        : { path: 'direct to the worker', url: 'http://localhost', socketPath: address.socketPath, proxyPid: null },
      { path: 'through graygate', url: gw.url, proxyPid: gw.pid },
    ];
    progress.phase('starting nginx, when installed, in front of the same worker');
    const front = await startNginxIfAble({
      upstream: address.kind === 'tcp' ? address.hostPort : `unix:${address.socketPath}`,
      keepalive: 64,
      signal,
    });
    if ('skipped' in front) {
      notes.push(front.skipped);
    } else {
      stops.push(front.stop);
      targets.push({ path: 'through nginx', url: front.url, proxyPid: front.pid });
    }
    const body = chatBody({ tokens: TOKENS, intervalMs: 0 });
    const columns: Column[] = [];
    for (const target of targets) {
      signal.throwIfAborted(); // Ctrl-C: no further column
      const url = `${target.url}${CHAT_PATH}`;
      progress.phase(`${target.path}: warm-up, then ${connections} connections × ${durationS} s`);
      const socket = target.socketPath === undefined ? {} : { socketPath: target.socketPath };
      await warmUp({
        url,
        method: 'POST',
        headers: JSON_HEADERS,
        body,
        connections,
        durationS: warmUpSeconds(durationS),
        ...socket,
        signal,
      });
      // nginx: master + worker are one group, both counted; graygate: the master (its worker is shared by all columns).
      const proxyPids =
        target.proxyPid === null
          ? []
          : target.path === 'through nginx'
            ? processGroupMembers(target.proxyPid)
            : [target.proxyPid];
      const sampler = new RssSampler({ pids: () => ({ proxy: proxyPids, worker: [worker.pid] }) });
      const load = await runLoad({
        url,
        method: 'POST',
        headers: JSON_HEADERS,
        body,
        connections,
        durationS,
        ...socket,
        signal,
        onTick: (p) =>
          progress.status(`${target.path} ${p.elapsedS}/${durationS} s  ${p.responses} answers  ${p.errors} errors`),
      });
      sampler.stop();
      columns.push({
        path: target.path,
        load,
        proxyPeakMb: target.proxyPid === null ? null : toMb(sampler.peak('proxy')),
        proxyCpuPct: target.proxyPid === null ? null : sampler.cpuPercent('proxy'),
        workerCpuPct: sampler.cpuPercent('worker'),
      });
    }
    const direct = columns[0]!;
    const graygate = columns[1]!;
    const nginx = columns[2];
    const ratios = {
      graygateOverDirectRps: ratio(graygate.load.okRps, direct.load.okRps),
      graygateOverDirectP99: ratio(graygate.load.latency.p99, direct.load.latency.p99),
      graygateOverNginxRps: nginx === undefined ? null : ratio(graygate.load.okRps, nginx.load.okRps),
      graygateOverNginxP99: nginx === undefined ? null : ratio(graygate.load.latency.p99, nginx.load.latency.p99),
    };
    const failedAll = columns.reduce((n, c) => n + c.load.non2xx + c.load.errors, 0);
    return {
      results: { columns, ratios, connections, durationS, tokens: TOKENS, workerPid: worker.pid, workerAddress: port },
      tables: [
        {
          title: `Compare: POST ${CHAT_PATH} stream:true, ${connections} connections × ${durationS} s each`,
          headers: [
            'path',
            'req/s',
            'p50 ms',
            'p99 ms',
            'p99.9 ms',
            'non-2xx',
            'errors',
            'proxy peak RSS MB',
            'proxy CPU %',
            'worker CPU %',
          ],
          rows: columns.map((c) => [
            c.path,
            c.load.okRps,
            c.load.latency.p50,
            c.load.latency.p99,
            c.load.latency.p999,
            c.load.non2xx,
            c.load.errors,
            c.proxyPeakMb ?? '–',
            c.proxyCpuPct ?? '–',
            c.workerCpuPct,
          ]),
        },
        {
          title: 'Ratios',
          headers: ['ratio', 'req/s', 'p99'],
          rows: [
            ['graygate / direct', ratios.graygateOverDirectRps, ratios.graygateOverDirectP99],
            ['graygate / nginx', ratios.graygateOverNginxRps ?? 'no nginx', ratios.graygateOverNginxP99 ?? 'no nginx'],
          ],
        },
      ],
      targets: [
        {
          name: 'every request answered 2xx on every path',
          value: `${failedAll} failed`,
          limit: '0',
          isMet: failedAll === 0,
        },
      ],
      charts: [],
      notes: [
        `All columns hit the same worker process (pid ${worker.pid}, ${port}) with its embedded mock upstream (${TOKENS} tokens, no pacing); each after an unrecorded ${warmUpSeconds(durationS)} s warm-up.`,
        'nginx: 1 worker process, proxy_buffering off, upstream keepalive 64, HTTP/1.1 to the worker, access log to /dev/null. graygate: LOG_LEVEL ' +
          args.logLevel +
          ', stdout to /dev/null.',
        ...notes,
      ],
    };
  } finally {
    progress.phase('stopping');
    for (const stop of stops.reverse()) await stop();
  }
};
