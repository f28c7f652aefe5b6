import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchArgs } from './args.js';
import { checkCounts } from './counts.js';
import { LineDecoder, type LineDecoderOptions } from '../../worker/sse/line-decoder.js';

// The worker's line splitting (worker/sse/line-decoder.ts, a per-chunk hot path) in this tree against
// --baseline-root's build, in one process, the builds alternating within each round:
//   events   ns of CPU per event of an OpenAI stream cut into 1 KiB and 100 B reads, and one event per read;
//   slow     one 1 MiB line arriving a byte per read (an upstream, or a network, that dribbles): ms of CPU, and how
//            much the process's RSS grew while the line was held (the decoder held a Buffer per read before 7e2aa76).
// Usage: node dist/scripts/bench/line-decoder.js [--baseline-root DIR] [--rounds 9] [--events 20000]

type DecoderClass = new (options: LineDecoderOptions) => { push(chunk: Buffer): void; end(): void };

const { values } = benchArgs({
  options: {
    'baseline-root': { type: 'string' },
    rounds: { type: 'string', default: '9' },
    events: { type: 'string', default: '20000' },
  },
});
const rounds = Number(values.rounds);
const events = Number(values.events);
checkCounts({ rounds, events }, { atLeast: 1 });

const builds: Array<{ name: string; Decoder: DecoderClass }> = [{ name: 'this tree', Decoder: LineDecoder }];
const baselineRoot = values['baseline-root'];
if (baselineRoot !== undefined) {
  const url = pathToFileURL(resolve(baselineRoot, 'dist/worker/sse/line-decoder.js')).href;
  builds.push({ name: baselineRoot, Decoder: ((await import(url)) as { LineDecoder: DecoderClass }).LineDecoder });
}

const event = (i: number): string =>
  `data: {"id":"chatcmpl-x","object":"chat.completion.chunk","created":1,"model":"m",` +
  `"choices":[{"index":0,"delta":{"content":"tok${i} "},"finish_reason":null}]}\n\n`;
const text = Array.from({ length: events }, (_, i) => event(i)).join('');
const bytes = Buffer.from(text);
const cut = (n: number): Buffer[] => {
  const out: Buffer[] = [];
  for (let i = 0; i < bytes.length; i += n) out.push(bytes.subarray(i, i + n));
  return out;
};
const shapes: Array<[string, Buffer[]]> = [
  ['1 KiB reads', cut(1024)],
  ['100 B reads', cut(100)],
  ['an event per read', text.split(/(?<=\n\n)/).map((s) => Buffer.from(s))],
];

let sink = 0;

function nsPerEvent(Decoder: DecoderClass, chunks: Buffer[]): number {
  const decoder = new Decoder({ onLine: (line) => void (sink += line.length), maxLineBytes: 1 << 20 });
  const start = process.cpuUsage();
  for (const chunk of chunks) decoder.push(chunk);
  decoder.end();
  const used = process.cpuUsage(start);
  return ((used.user + used.system) * 1000) / events;
}

/** A 1 MiB line a byte per read, in one reused buffer (undici reuses its chunks' memory): ms of CPU, RSS growth MB. */
function slowLine(Decoder: DecoderClass): { ms: number; rssMb: number } {
  const lineBytes = 1 << 20;
  const decoder = new Decoder({ onLine: (line) => void (sink += line.length), maxLineBytes: lineBytes });
  const byte = Buffer.alloc(1, 0x61);
  const rssBefore = process.memoryUsage.rss();
  const start = process.cpuUsage();
  for (let i = 0; i < lineBytes; i++) decoder.push(byte);
  const used = process.cpuUsage(start);
  const rssMb = (process.memoryUsage.rss() - rssBefore) / 1e6;
  decoder.push(Buffer.from('\n'));
  return { ms: (used.user + used.system) / 1000, rssMb };
}

const results = new Map<string, number[]>();
const record = (name: string, value: number): void => {
  const list = results.get(name) ?? [];
  list.push(value);
  results.set(name, list);
};
for (let round = 0; round < rounds; round++) {
  // A B, then B A: neither build always runs first.
  const order = round % 2 === 0 ? builds : [...builds].reverse();
  for (const [shape, chunks] of shapes)
    for (const build of order) record(`${shape}, ns/event, ${build.name}`, nsPerEvent(build.Decoder, chunks));
}
// The slow line last and once per build: the RSS it grows is not given back to the process's later rounds.
for (const build of builds) {
  const { ms, rssMb } = slowLine(build.Decoder);
  record(`1 MiB line a byte per read, ms CPU, ${build.name}`, ms);
  record(`1 MiB line a byte per read, RSS growth MB, ${build.name}`, rssMb);
}

const median = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
console.log(`${String(events)} events, ${String(rounds)} rounds (median; every round listed)`);
for (const [name, list] of results)
  console.log(`${name.padEnd(64)} ${median(list).toFixed(1).padStart(9)}   ${list.map((v) => v.toFixed(0)).join(' ')}`);
if (sink < 0) console.log(sink);
