import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { benchArgs } from './args.js';
import { checkCounts } from './counts.js';
import { convertOllamaEmbedAnswer } from '../../worker/upstream/ollama-embed.js';
import type { AnswerHints, ConvertedAnswer } from '../../worker/upstream/format-adapter.js';

// An Ollama `/api/embed` answer turned into OpenAI's (worker/upstream/ollama-embed.ts), on the worker's event loop
// while every stream on it waits: this tree against --baseline-root's build, one process, the builds alternating within
// each round. Batches of --texts texts of 1,536 dimensions, numbers of 8 significant digits (Ollama's float32s) and of
// 17; ms of CPU a conversion, floats and base64.
// Usage: node dist/scripts/bench/embed-answer.js [--baseline-root DIR] [--rounds 3] [--texts 100,1000]

type Convert = (kind: 'embeddings', body: Buffer, hints: AnswerHints) => ConvertedAnswer;

const { values } = benchArgs({
  options: {
    'baseline-root': { type: 'string' },
    rounds: { type: 'string', default: '3' },
    texts: { type: 'string', default: '100,1000' },
  },
});
const rounds = Number(values.rounds);
const texts = values.texts.split(',').map(Number);
checkCounts({ rounds, ...Object.fromEntries(texts.map((n, i) => [`texts[${i}]`, n])) }, { atLeast: 1 });

const builds: Array<{ name: string; convert: Convert }> = [{ name: 'this tree', convert: convertOllamaEmbedAnswer }];
const baselineRoot = values['baseline-root'];
if (baselineRoot !== undefined) {
  const url = pathToFileURL(resolve(baselineRoot, 'dist/worker/upstream/ollama-embed.js')).href;
  builds.push({
    name: baselineRoot,
    convert: ((await import(url)) as { convertOllamaEmbedAnswer: Convert }).convertOllamaEmbedAnswer,
  });
}

let seed = 7;
const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
function answer(count: number, digits: number): Buffer {
  const vector = (): string =>
    `[${Array.from({ length: 1536 }, () => Number((random() * 2 - 1).toPrecision(digits))).join(',')}]`;
  const embeddings = Array.from({ length: count }, vector).join(',');
  return Buffer.from(`{"model":"nomic-embed-text","embeddings":[${embeddings}],"prompt_eval_count":${count * 9}}`);
}

const results = new Map<string, number[]>();
const inputs = texts.flatMap((count) => [8, 17].map((digits) => ({ count, digits, body: answer(count, digits) })));
for (const build of builds)
  for (const { count, body } of inputs) build.convert('embeddings', body, { encoding: 'float', inputs: count });
let sink = 0;
for (let round = 0; round < rounds; round++) {
  const order = round % 2 === 0 ? builds : [...builds].reverse();
  for (const { count, digits, body } of inputs)
    for (const encoding of ['float', 'base64'] as const)
      for (const build of order) {
        const start = process.cpuUsage();
        sink += build.convert('embeddings', body, { encoding, inputs: count }).body.length;
        const used = process.cpuUsage(start);
        const name = `${count} texts (${(body.length / 1048576).toFixed(1)} MiB), ${digits} digits, ${encoding}, ${build.name}`;
        results.set(name, [...(results.get(name) ?? []), (used.user + used.system) / 1000]);
      }
}
const median = (list: number[]): number => [...list].sort((a, b) => a - b)[Math.floor(list.length / 2)]!;
console.log(`${String(rounds)} rounds, ms of CPU a conversion (median; every round listed)`);
for (const [name, list] of results)
  console.log(`${name.padEnd(72)} ${median(list).toFixed(1).padStart(9)}   ${list.map((v) => v.toFixed(1)).join(' ')}`);
if (sink < 0) console.log(sink);
