import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { benchArgs } from './args.js';
import { checkCounts } from './counts.js';
import { CompletionAggregator } from '../../worker/chat/aggregate.js';
import type { ChatCompletionChunk } from '../../worker/types.js';

// What a non-streamed chat answer of an Ollama or Anthropic upstream holds in the worker's heap when it stops just
// under its bound (worker/chat/aggregate.ts: 64 MiB in the worker, --mib here), per shape of answer a hostile or
// unusual upstream can send: short text or reasoning fragments, many tool calls, one call's arguments in short
// fragments, many choices, log probabilities. Each shape is fed (chunks parsed from JSON lines, as the converters'
// strings are) until the aggregator refuses it, then again to one chunk fewer: the heap it holds then, and with the
// completion built from it and its JSON, after full GCs, over the bound. This tree, and --baseline-root's build.
// Usage: node dist/scripts/bench/aggregate-memory.js [--baseline-root DIR] [--mib 16]

interface Aggregator {
  chunk(chunk: ChatCompletionChunk): void;
  toCompletion(): unknown;
}
type Make = (maxHeld: number) => Aggregator;

const { values } = benchArgs({
  options: { 'baseline-root': { type: 'string' }, mib: { type: 'string', default: '16' } },
});
const mib = Number(values.mib);
checkCounts({ mib }, { atLeast: 1 });
const bound = mib * 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heap = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

const builds: Array<{ name: string; make: Make }> = [
  { name: 'this tree', make: (maxHeld) => new CompletionAggregator({ maxHeld }) },
];
const baselineRoot = values['baseline-root'];
if (baselineRoot !== undefined) {
  const url = pathToFileURL(resolve(baselineRoot, 'dist/worker/chat/aggregate.js')).href;
  const { CompletionAggregator: Old } = (await import(url)) as { CompletionAggregator: new (n: number) => Aggregator };
  // Builds of 6 December and before take the bound as their one argument (later ones an options object).
  builds.push({ name: baselineRoot, make: (maxHeld) => new Old(maxHeld) });
}

/** A distinct six-character string a chunk (the parser internalises short strings: equal ones would be shared). */
const word = (i: number): string => i.toString(36).padStart(6, '0');
const line = (choice: string): string =>
  `{"id":"c","object":"chat.completion.chunk","created":1,"model":"m","choices":[${choice}]}`;
const shapes: Array<[string, (i: number) => string]> = [
  ['text fragments', (i) => line(`{"index":0,"delta":{"content":"${word(i)}"},"finish_reason":null}`)],
  ['reasoning fragments', (i) => line(`{"index":0,"delta":{"reasoning":"${word(i)}"},"finish_reason":null}`)],
  [
    'tool calls',
    (i) =>
      line(
        `{"index":0,"delta":{"tool_calls":[{"index":${i},"id":"c${word(i)}","type":"function",` +
          `"function":{"name":"f","arguments":"{}"}}]},"finish_reason":null}`,
      ),
  ],
  [
    'argument fragments',
    (i) =>
      line(
        `{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"${word(i)}"}}]},"finish_reason":null}`,
      ),
  ],
  ['choices', (i) => line(`{"index":${i},"delta":{"content":"a"},"finish_reason":null}`)],
  [
    'log probabilities',
    (i) => {
      const entry = (t: string): string => `{"token":"${t}","logprob":-0.5,"bytes":[1,2,3,4,5,6]`;
      const top = `[${entry(word(i + 1))}},${entry(word(i + 2))}}]`;
      return line(
        `{"index":0,"delta":{},"logprobs":{"content":[${entry(word(i))},"top_logprobs":${top}}]},"finish_reason":null}`,
      );
    },
  ],
];

/** How many chunks of a shape the bound takes. */
function taken(make: Make, chunk: (i: number) => string): number {
  const aggregator = make(bound);
  for (let i = 0; ; i++) {
    try {
      aggregator.chunk(JSON.parse(chunk(i)) as ChatCompletionChunk);
    } catch {
      return i;
    }
  }
}

/** The heap an aggregator of `count` chunks holds, and with its completion's JSON, over what was live before. */
function measure(
  make: Make,
  chunk: (i: number) => string,
  count: number,
): { held: number; peak: number; jsonBytes: number } {
  const before = heap();
  const aggregator = make(bound);
  for (let i = 0; i < count; i++) aggregator.chunk(JSON.parse(chunk(i)) as ChatCompletionChunk);
  const held = heap() - before;
  const json = JSON.stringify(aggregator.toCompletion());
  const peak = heap() - before;
  return { held, peak, jsonBytes: json.length };
}

console.log(
  `bound ${String(mib)} MiB; heap held just under it ÷ the bound (held, and with the completion and its JSON)`,
);
for (const [shape, chunk] of shapes)
  for (const { name, make } of builds) {
    const count = taken(make, chunk);
    const { held, peak, jsonBytes } = measure(make, chunk, count);
    console.log(
      `${shape.padEnd(20)} ${name.padEnd(24)} ${String(count).padStart(9)} chunks  ` +
        `held ${(held / bound).toFixed(2)}×  with the completion ${(peak / bound).toFixed(2)}×  ` +
        `(its JSON ${(jsonBytes / bound).toFixed(2)}×)`,
    );
  }
