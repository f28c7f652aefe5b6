import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { completionId } from '../../worker/call/handler.js';
import { Deadlines, type DeadlinesOptions } from '../../worker/upstream/timeouts.js';
import { checkCounts } from './counts.js';

// What the worker spends once per upstream call on its deadline signal and its
// completion id (issue 10: per-call costs the rest profile showed), in one
// process, the variants alternating within each round so that the box's
// noise falls on both: µs of CPU per call, GC included.
//   deadlines  new Deadlines(…) on a fresh client signal, then dispose():
//              this tree, and --baseline-root's build when given (before
//              7aa99c6 it combined the signals with AbortSignal.any);
//   id         completionId() against randomBytes(12).toString('base64url'),
//              what the worker did before.
// Usage: node dist/scripts/bench/per-call.js [--baseline-root DIR] [--rounds 3] [--calls 100000]

type DeadlinesClass = new (options: DeadlinesOptions) => { readonly signal: AbortSignal; dispose(): void };

const { values } = parseArgs({
  options: {
    'baseline-root': { type: 'string' },
    rounds: { type: 'string', default: '3' },
    calls: { type: 'string', default: '100000' },
  },
});
const rounds = Number(values.rounds);
const calls = Number(values.calls);
checkCounts({ rounds, calls }, { atLeast: 1 });

let sink = 0;

/** µs of this process's CPU (user + system) per call of `fn`, after a tenth as many calls to warm it up. */
function cpuUsPerCall(fn: () => void): number {
  for (let i = 0; i < calls / 10; i++) fn();
  const start = process.cpuUsage();
  for (let i = 0; i < calls; i++) fn();
  const used = process.cpuUsage(start);
  return (used.user + used.system) / calls;
}

function deadlinesCall(Class: DeadlinesClass): () => void {
  return () => {
    const client = new AbortController();
    const d = new Class({ signal: client.signal, firstByteMs: 30_000, idleMs: 30_000, totalMs: 600_000 });
    if (d.signal.aborted) sink++;
    d.dispose();
  };
}

const variants: Array<{ name: string; fn: () => void }> = [
  { name: 'deadlines, this tree', fn: deadlinesCall(Deadlines) },
];
const baselineRoot = values['baseline-root'];
if (baselineRoot !== undefined) {
  const url = pathToFileURL(resolve(baselineRoot, 'dist/worker/upstream/timeouts.js')).href;
  const baseline = (await import(url)) as { Deadlines: DeadlinesClass };
  variants.push({ name: `deadlines, ${baselineRoot}`, fn: deadlinesCall(baseline.Deadlines) });
}
variants.push(
  { name: 'id, completionId()', fn: () => void (sink += completionId().length) },
  {
    name: "id, randomBytes(12).toString('base64url')",
    fn: () => void (sink += `chatcmpl-${randomBytes(12).toString('base64url')}`.length),
  },
);

const results = new Map<string, number[]>(variants.map((v) => [v.name, []]));
for (let round = 0; round < rounds; round++) {
  // A B …, then … B A: neither variant always runs first.
  const order = round % 2 === 0 ? variants : [...variants].reverse();
  for (const v of order) results.get(v.name)!.push(cpuUsPerCall(v.fn));
}

console.log(`${String(calls)} calls per variant per round, ${String(rounds)} rounds, µs of CPU per call (GC included)`);
for (const [name, us] of results)
  console.log(`${name.padEnd(56)} ${us.map((u) => u.toFixed(2).padStart(8)).join(' ')}`);
if (sink < 0) console.log(sink);
