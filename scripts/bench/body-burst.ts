import { connect } from 'node:net';
import { benchArgs } from './args.js';
import { startGateway } from '../loadtest/gateway.js';
import { buildEntries } from '../loadtest/paths.js';
import { interruptSignal, stopAll } from '../loadtest/processes.js';
import { startHopUpstream } from './hop-upstream.js';
import { RssSampler } from '../loadtest/rss.js';
import { checkCounts } from './counts.js';

// A burst of large prompts against the body budget (SPEC §4a, maxBufferedBodyBytes): --clients raw
// connections each send a streamed chat request with a --mib MiB prompt at once (`Connection: close`,
// the whole body written whatever the answer, as clients without `Expect` do), in front of
// hop-latency's upstream (its own process, so a worker's figures are the worker's). Per build (this
// tree and --baseline-root, alternating per round), with its own budget (--budget-mib,
// --baseline-budget-mib; unset: the default), it samples the RSS of master and worker every 50 ms and
// reports the peak over idle and what each client read: a status, or the error its socket got (a
// reset under the answer shows as EPIPE or ECONNRESET). The Kubernetes config's budget is sized on it.
// Usage: node dist/scripts/bench/body-burst.js [--baseline-root DIR] [--rounds 2] [--clients 24] [--mib 9.5]
//        [--budget-mib 32] [--baseline-budget-mib N]

const MiB = 1024 * 1024;
const SAMPLE_MS = 50;

/** Sends one request on its own connection; resolves with its status line's code, or the socket's error code. */
function send(port: number, head: string, body: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    let first = '';
    let outcome: string | undefined;
    socket.on('data', (chunk: Buffer) => {
      if (first.length < 64) first += chunk.toString('latin1', 0, 64);
    });
    socket.on('error', (err: NodeJS.ErrnoException) => (outcome ??= err.code ?? err.message));
    socket.on('close', () => resolve(/^HTTP\/1\.1 (\d{3})/.exec(first)?.[1] ?? outcome ?? 'closed without an answer'));
    // Not ended: a half-closed client is one Node's server stops answering (httpAllowHalfOpen is off).
    socket.write(head);
    socket.write(body);
  });
}

async function main(): Promise<void> {
  const { values } = benchArgs({
    options: {
      'baseline-root': { type: 'string' },
      rounds: { type: 'string', default: '2' },
      clients: { type: 'string', default: '24' },
      mib: { type: 'string', default: '9.5' },
      'budget-mib': { type: 'string' },
      'baseline-budget-mib': { type: 'string' },
    },
  });
  const [rounds, clients, mib] = [Number(values.rounds), Number(values.clients), Number(values.mib)];
  checkCounts({ rounds, clients, mib }, { above: 0 });
  const budgetOf = (text: string | undefined): number | undefined =>
    text === undefined ? undefined : Math.round(Number(text) * MiB);
  const signal = interruptSignal();
  try {
    const upstream = await startHopUpstream(signal);
    const body = Buffer.from(
      JSON.stringify({
        model: 'hop',
        stream: true,
        messages: [{ role: 'user', content: `tokens=30 ${'y'.repeat(Math.round(mib * MiB))}` }],
      }),
    );
    const builds: Array<[string, string | undefined, number | undefined]> = [
      ['this tree', undefined, budgetOf(values['budget-mib'])],
    ];
    if (values['baseline-root'] !== undefined)
      builds.push([`baseline`, values['baseline-root'], budgetOf(values['baseline-budget-mib'])]);
    const lines: string[] = [];
    for (let round = 0; round < rounds; round++) {
      for (const [name, root, budget] of round % 2 === 0 ? builds : [...builds].reverse()) {
        const entries = buildEntries(root);
        const gw = await startGateway({
          versions: { v1: { entry: entries.worker, weight: 1, upstream: { format: 'openai', url: upstream.url } } },
          limits: budget === undefined ? {} : { maxBufferedBodyBytes: budget },
          logLevel: 'warn',
          root: entries.root,
          signal,
        });
        try {
          const groups = { master: [gw.pid], worker: [(await gw.workers())[0]!.pid] };
          const sampler = new RssSampler({ intervalMs: SAMPLE_MS, pids: () => groups });
          const total = (bytes: Record<string, number>): number => (bytes['master']! + bytes['worker']!) / MiB;
          const idle = total(sampler.samples[0]!.bytes);
          const port = Number(new URL(gw.url).port);
          const head =
            'POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n' +
            `Connection: close\r\nContent-Length: ${body.length}\r\n\r\n`;
          const outcomes = await Promise.all(Array.from({ length: clients }, () => send(port, head, body)));
          sampler.stop();
          const counts = new Map<string, number>();
          for (const o of outcomes) counts.set(o, (counts.get(o) ?? 0) + 1);
          const peak = Math.max(...sampler.samples.map((x) => total(x.bytes)));
          const peakOf = (group: string): string => (sampler.peak(group) / MiB).toFixed(0).padStart(8);
          lines.push(
            `${name.padEnd(10)}${String(round + 1).padStart(6)}${(budget === undefined ? 'default' : `${budget / MiB} MiB`).padStart(11)}` +
              `${idle.toFixed(0).padStart(9)}${peak.toFixed(0).padStart(9)}${peakOf('master')}${peakOf('worker')}  ` +
              [...counts].map(([o, n]) => `${n} × ${o}`).join(', '),
          );
        } finally {
          await gw.stop();
        }
      }
    }
    process.stdout.write(
      `${clients} clients at once, each a ${mib} MiB prompt; RSS in MiB (master + worker; peaks sampled every ${SAMPLE_MS} ms)\n` +
        `${'build'.padEnd(10)}${'round'.padStart(6)}${'budget'.padStart(11)}${'idle'.padStart(9)}${'peak'.padStart(9)}${'master'.padStart(8)}${'worker'.padStart(8)}  answers\n` +
        `${lines.join('\n')}\n`,
    );
  } finally {
    await stopAll();
  }
}

await main();
process.exit(0);
