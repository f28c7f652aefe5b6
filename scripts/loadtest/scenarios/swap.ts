import { CHAT_PATH, JSON_HEADERS, chatBody } from '../chat-request.js';
import { startGateway } from '../gateway.js';
import { runLoad } from '../load.js';
import { WORKER_ENTRY } from '../paths.js';
import { RssSampler, toMb } from '../rss.js';
import type { Scenario } from '../scenario.js';
import { lineChart } from '../svg-chart.js';
import { warmUp } from '../warm-up.js';

// Deploy under load (SPEC §6 "No request fails or is cut during a swap";
// issue 6 scenario 4): autocannon -c 50 for 30 s on v2 while the script
// deploys v2 twice and rolls it back once through the admin API.

interface Operation {
  name: string;
  /** s since the load started. */
  startS: number;
  durationMs: number;
  status: number;
  /** Entry/env the version ran afterwards, or the error message. */
  outcome: string;
  oldPids: number[];
  newPids: number[];
}

const BUILD_ENV = 'LOADTEST_BUILD';

export const runSwap: Scenario = async (ctx) => {
  const { args, signal, progress } = ctx;
  const durationS = args.durationS ?? 30;
  const connections = args.connections ?? 50;
  progress.phase('starting graygate: v1 and v2 on the embedded mock upstream');
  const gw = await startGateway({
    versions: {
      v1: { entry: WORKER_ENTRY, weight: 90, upstream: { format: 'openai', url: 'mock:' } },
      v2: { entry: WORKER_ENTRY, weight: 10, env: { [BUILD_ENV]: 'b1' }, upstream: { format: 'openai', url: 'mock:' } },
    },
    logLevel: args.logLevel,
    signal,
  });
  try {
    let workerPids = (await gw.workers()).map((w) => w.pid);
    const sampler = new RssSampler({ pids: () => ({ master: [gw.pid], workers: workerPids }) });
    const body = chatBody({ tokens: 20, intervalMs: 0 });
    // All load pinned to v2 (SPEC §3 header), the version being swapped.
    const headers = { ...JSON_HEADERS, 'x-version': 'v2' };
    const url = `${gw.url}${CHAT_PATH}`;
    progress.phase('warm-up');
    await warmUp({ url, method: 'POST', headers, body, connections, durationS: 1, signal });

    // Deploy b2 at 20 %, deploy b3 at 50 %, roll back (to b2) at 80 % of the run; each waits for the one before.
    const plan: Array<{ name: string; atS: number; call: () => Promise<{ status: number; body: unknown }> }> = [
      {
        name: 'deploy v2 (b2)',
        atS: durationS * 0.2,
        call: () => gw.admin('POST', '/admin/versions/v2/deploy', { env: { [BUILD_ENV]: 'b2' } }),
      },
      {
        name: 'deploy v2 (b3)',
        atS: durationS * 0.5,
        call: () => gw.admin('POST', '/admin/versions/v2/deploy', { env: { [BUILD_ENV]: 'b3' } }),
      },
      { name: 'rollback v2', atS: durationS * 0.8, call: () => gw.admin('POST', '/admin/versions/v2/rollback') },
    ];
    const operations: Operation[] = [];
    progress.phase(
      `${connections} connections × ${durationS} s on v2; ${plan.map((p) => `${p.name} at ${Math.round(p.atS * 10) / 10} s`).join(', ')}`,
    );
    const loadStartedAt = performance.now();
    const elapsedS = (): number => (performance.now() - loadStartedAt) / 1000;
    // The load runs at least durationS and until 1 s after the last operation, so
    // every swap happens under load even when deploys are slow; bounded at +60 s.
    const stopLoad = new AbortController();
    signal.addEventListener('abort', () => stopLoad.abort(), { once: true });
    const loadPromise = runLoad({
      url,
      method: 'POST',
      headers,
      body,
      connections,
      durationS: durationS + 60,
      signal: stopLoad.signal,
      onTick: (p) =>
        progress.status(
          `${p.elapsedS}/≥${durationS} s  ${p.responses} answers  ${p.errors} errors  ${operations.length}/${plan.length} swaps done`,
        ),
    });
    const opsPromise = (async () => {
      for (const step of plan) {
        const waitMs = step.atS * 1000 - (performance.now() - loadStartedAt);
        if (waitMs > 0) await new Promise((r) => setTimeout(r, waitMs));
        if (signal.aborted) return;
        const oldPids = (await gw.workers()).filter((w) => w.version === 'v2').map((w) => w.pid);
        const startS = elapsedS();
        const started = performance.now();
        let status = 0;
        let outcome: string;
        try {
          const res = await step.call();
          status = res.status;
          const b = res.body as { entry?: string; error?: { message?: string } };
          outcome = status === 200 ? 'done' : (b.error?.message ?? `status ${status}`);
        } catch (err) {
          outcome = err instanceof Error ? err.message : String(err);
        }
        const durationMs = Math.round(performance.now() - started);
        const now = await gw.workers();
        workerPids = now.map((w) => w.pid);
        operations.push({
          name: step.name,
          startS: Math.round(startS * 10) / 10,
          durationMs,
          status,
          outcome,
          oldPids,
          newPids: now.filter((w) => w.version === 'v2').map((w) => w.pid),
        });
      }
    })().finally(async () => {
      const tailMs = Math.max(1000, durationS * 1000 - (performance.now() - loadStartedAt));
      await new Promise((r) => setTimeout(r, tailMs));
      stopLoad.abort();
    });
    const [load] = await Promise.all([loadPromise, opsPromise]);
    sampler.stop();
    const masterExit = gw.exitedWith();
    const failed = load.non2xx + load.errors;
    const around = (op: Operation): Array<string | number> => {
      const window = load.perSecond.filter(
        (b) => b.t >= Math.floor(op.startS) - 1 && b.t <= Math.ceil(op.startS + op.durationMs / 1000),
      );
      const p99 = Math.max(0, ...window.map((b) => b.p99));
      const before = load.perSecond.find((b) => b.t === Math.floor(op.startS) - 2)?.p99 ?? '–';
      return [op.name, op.startS, op.durationMs, op.status, before, p99, op.oldPids.join(' '), op.newPids.join(' ')];
    };
    return {
      results: { load, operations, failed, masterPeakMb: toMb(sampler.peak('master')) },
      tables: [
        {
          title: `Swap under load: ${connections} connections × ${Math.round(load.durationS)} s on v2`,
          headers: ['answers', '2xx req/s', '2xx', 'non-2xx', 'errors', 'timeouts', 'p50 ms', 'p99 ms', 'max ms'],
          rows: [
            [
              load.responses,
              // 2xx only, as every other scenario's req/s: load.rps counted the failures the swap must not have.
              load.okRps,
              load.responses - load.non2xx,
              load.non2xx,
              load.errors,
              load.timeouts,
              load.latency.p50,
              load.latency.p99,
              load.latency.max,
            ],
          ],
        },
        {
          title: 'Latency around each swap',
          headers: [
            'operation',
            'at s',
            'took ms',
            'status',
            'p99 ms 2 s before',
            'worst 1-s p99 ms during',
            'old v2 pids',
            'new v2 pids',
          ],
          rows: operations.map(around),
        },
      ],
      targets: [
        { name: 'failed requests during the swaps', value: String(failed), limit: '0', isMet: failed === 0 },
        {
          name: 'admin operations that succeeded',
          value: `${operations.filter((o) => o.status === 200).length}/${plan.length}`,
          limit: `${plan.length}`,
          isMet: operations.filter((o) => o.status === 200).length === plan.length,
        },
      ],
      charts: [
        {
          name: 'latency',
          title: 'Latency per second with the swaps marked',
          svg: lineChart({
            title: 'p50 / p99 latency per second (ms); dashed lines: swaps',
            xLabel: 's since the load started',
            yLabel: 'ms',
            series: [
              { label: 'p50', points: load.perSecond.map((b) => [b.t, b.p50] as [number, number]) },
              { label: 'p99', points: load.perSecond.map((b) => [b.t, b.p99] as [number, number]) },
            ],
            markers: operations.map((o) => ({ x: o.startS, label: o.name.split(' (')[0]! })),
          }),
        },
      ],
      notes: [
        `Load: autocannon, POST ${CHAT_PATH} stream:true (20 tokens, embedded mock), header x-version: v2. Failed = non-2xx answers + connection errors + timeouts.`,
        'Each deploy changes only the worker env (LOADTEST_BUILD), which is enough for graygate to start new worker processes, move traffic and drain the old ones; the rollback returns to the previous build.',
        ...operations.filter((o) => o.status !== 200).map((o) => `${o.name} failed: ${o.outcome}`),
        ...(masterExit === undefined
          ? []
          : [
              `graygate's master (pid ${gw.pid}) exited during the run (${masterExit}): these figures are of a dead target.`,
            ]),
      ],
      ...(masterExit === undefined ? {} : { failure: `graygate's master exited during the run (${masterExit})` }),
    };
  } finally {
    progress.phase('stopping');
    await gw.stop();
  }
};
