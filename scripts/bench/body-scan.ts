import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchArgs } from './args.js';
import { checkCounts } from './counts.js';
import { scanTopLevel, type TopLevelFacts } from '../../master/body-user.js';

// The master's scan of a body's top level for `user` and `stream` (master/body-user.ts: it runs on every request body
// up to 4 MiB, in the one event loop every client shares) in this tree against --baseline-root's build, one process,
// the builds alternating within each round. Four shapes at each size: a chat body (a few long messages) and one of
// many short top-level members (`"a":"b",` over and over, legal JSON, an attacker's), of escaped keys, and of a
// repeated `user`; ms of CPU a scan.
// Usage: node dist/scripts/bench/body-scan.js [--baseline-root DIR] [--rounds 3] [--max-kib 4096]

type Scan = (body: Buffer) => TopLevelFacts;

const { values } = benchArgs({
  options: {
    'baseline-root': { type: 'string' },
    rounds: { type: 'string', default: '3' },
    'max-kib': { type: 'string', default: '4096' },
  },
});
const rounds = Number(values.rounds);
const maxKib = Number(values['max-kib']);
checkCounts({ rounds, 'max-kib': maxKib }, { atLeast: 1 });

const builds: Array<{ name: string; scan: Scan }> = [{ name: 'this tree', scan: scanTopLevel }];
const baselineRoot = values['baseline-root'];
if (baselineRoot !== undefined) {
  const url = pathToFileURL(resolve(baselineRoot, 'dist/master/body-user.js')).href;
  builds.push({ name: baselineRoot, scan: ((await import(url)) as { scanTopLevel: Scan }).scanTopLevel });
}

const TAIL = '"model":"m","user":"u1","stream":true}';
function chatBody(bytes: number): Buffer {
  const content = 'x'.repeat(Math.max(0, Math.floor((bytes - 200) / 4)));
  const message = `{"role":"user","content":"${content}"}`;
  return Buffer.from(`{"messages":[${[message, message, message, message].join(',')}],${TAIL}`);
}
/** `member` over and over to `bytes`, then the tail. */
function repeated(member: string, bytes: number): Buffer {
  return Buffer.from(`{${member.repeat(Math.max(0, Math.floor((bytes - TAIL.length - 1) / member.length)))}${TAIL}`);
}
const shapes: Array<[string, (bytes: number) => Buffer]> = [
  ['chat', chatBody],
  ['many members', (bytes) => repeated('"a":"b",', bytes)],
  ['escaped keys', (bytes) => repeated('"\\u0061":1,', bytes)],
  ['repeated user', (bytes) => repeated('"user":"u",', bytes)],
];

const sizes: number[] = [];
for (let kib = 256; kib <= maxKib; kib *= 4) sizes.push(kib);
if (sizes.length === 0) sizes.push(maxKib);

let sink = 0;
// A warm-up: the first scans pay for the JIT.
for (const build of builds) for (const [, make] of shapes) sink += build.scan(make(64 * 1024)).user?.length ?? 0;
const results = new Map<string, number[]>();
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? builds : [...builds].reverse();
  for (const kib of sizes)
    for (const [shape, make] of shapes) {
      const body = make(kib * 1024);
      for (const build of order) {
        const start = process.cpuUsage();
        const facts = build.scan(body);
        const used = process.cpuUsage(start);
        if (facts.user !== undefined) sink += facts.user.length;
        const name = `${String(kib)} KiB ${shape}, ms CPU, ${build.name}`;
        results.set(name, [...(results.get(name) ?? []), (used.user + used.system) / 1000]);
      }
    }
}

const median = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
console.log(`${String(rounds)} rounds (median; every round listed)`);
for (const [name, list] of results)
  console.log(
    `${name.padEnd(64)} ${median(list).toFixed(2).padStart(10)}   ${list.map((v) => v.toFixed(1)).join(' ')}`,
  );
if (sink < 0) console.log(sink);
