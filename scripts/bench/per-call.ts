import { randomBytes } from 'node:crypto';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchArgs } from './args.js';
import { completionId } from '../../worker/call/handler.js';
import { Deadlines, type DeadlinesOptions } from '../../worker/upstream/timeouts.js';
import { checkCounts } from './counts.js';

// What the worker spends once per upstream call on its deadline signal and its
// completion id (issue 10: per-call costs the rest profile showed), in one
// process, the variants alternating within each round so that the box's
// noise falls on both: µs of CPU per call, GC included. The event loop gets a
// turn every 1,000 calls, as a server's does between requests: without it,
// AbortSignal.any's WeakRefs keep every call's signals alive to the end of
// the run, and the growing heap is charged to every variant that runs after.
//   deadlines  new Deadlines(…) on a fresh client signal, then dispose():
//              this tree, and --baseline-root's build when given (before
//              7aa99c6 it combined the signals with AbortSignal.any);
//   id         completionId() against an inline copy of what the worker did
//              before, randomBytes(12).toString('base64url').
// Usage: node dist/scripts/bench/per-call.js [--baseline-root DIR] [--rounds 3] [--calls 100000]

type DeadlinesClass = new (options: DeadlinesOptions) => { readonly signal: AbortSignal; dispose(): void };

const { values } = benchArgs({
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

/** Calls between turns of the event loop: AbortSignal.any's WeakRefs keep their targets alive until the turn ends. */
const CALLS_PER_TURN = 1000;

/** Runs `fn` n times, handing the event loop a turn every CALLS_PER_TURN calls, as a server does between requests. */
async function run(fn: () => void, n: number): Promise<void> {
  for (let i = 0; i < n; i++) {
    fn();
    if (i % CALLS_PER_TURN === CALLS_PER_TURN - 1) await new Promise(setImmediate);
  }
}

/** µs of this process's CPU (user + system) per call of `fn`, after a tenth as many calls to warm it up. */
async function cpuUsPerCall(fn: () => void): Promise<number> {
  await run(fn, calls / 10);
  const start = process.cpuUsage();
  await run(fn, calls);
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
  for (const v of order) results.get(v.name)!.push(await cpuUsPerCall(v.fn));
}

console.log(`${String(calls)} calls per variant per round, ${String(rounds)} rounds, µs of CPU per call (GC included)`);
for (const [name, us] of results)
  console.log(`${name.padEnd(56)} ${us.map((u) => u.toFixed(2).padStart(8)).join(' ')}`);
if (sink < 0) console.log(sink);
