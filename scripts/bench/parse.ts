import { performance } from 'node:perf_hooks';
import { FRAMES, mockToken, type MockFormat } from '../../shared/mock-upstream/index.js';
import { LineDecoder } from '../../worker/sse/line-decoder.js';
import { EventDecoder } from '../../worker/sse/event-decoder.js';
import { encodeChunk } from '../../worker/sse/encoder.js';
import { createStreamState, type ChatCompletionChunk } from '../../worker/types.js';
import type { UpstreamAdapter } from '../../worker/upstream/format-adapter.js';
import { benchArgs } from './args.js';
import { anthropicAdapter } from '../../worker/upstream/anthropic.js';
import { ollamaAdapter } from '../../worker/upstream/ollama.js';
import { openaiAdapter } from '../../worker/upstream/openai.js';

const ADAPTERS: Record<MockFormat, UpstreamAdapter> = {
  openai: openaiAdapter,
  ollama: ollamaAdapter,
  anthropic: anthropicAdapter,
};

// Issue 3 benchmark: parse+convert throughput (MB/s of upstream bytes) of the
// worker's incremental pipeline, per upstream format, next to the naive
// approach (concatenate every chunk to a growing string and re-split and
// JSON.parse all of it on each chunk), on streams of 10 KB, 100 KB and 1 MB
// cut into 1 KiB network chunks. Run: `npm run build && node dist/scripts/bench/parse.js`.

benchArgs({ options: {} }); // no flags: one it does not know is a usage error, not ignored

const SIZES = [10_000, 100_000, 1_000_000];
const CHUNK_BYTES = 1024;
const MIN_RUN_MS = 300;

function makeStream(format: MockFormat, targetBytes: number): Buffer {
  const frames = FRAMES[format];
  const a = { id: 'bench', created: 1, model: 'm', promptTokens: 10, nl: '\n', includeUsage: true };
  const parts = [frames.start(a)];
  let bytes = parts[0]!.length;
  let i = 0;
  while (bytes < targetBytes) {
    const part = frames.token(a, mockToken(i++));
    parts.push(part);
    bytes += Buffer.byteLength(part);
  }
  parts.push(frames.end(a, i, 'stop'));
  return Buffer.from(parts.join(''));
}

function split(buf: Buffer): Buffer[] {
  const chunks: Buffer[] = [];
  for (let i = 0; i < buf.length; i += CHUNK_BYTES) chunks.push(buf.subarray(i, i + CHUNK_BYTES));
  return chunks;
}

/** The worker's pipeline: bytes → lines → events → OpenAI chunks → SSE text, one output string per chunk. */
function runIncremental(format: MockFormat, chunks: Buffer[]): number {
  const adapter = ADAPTERS[format];
  const state = createStreamState({ id: 'chatcmpl-bench', created: 1, model: 'm' });
  let batch = '';
  let out = 0;
  const sink = { chunk: (c: ChatCompletionChunk, raw?: string) => void (batch += encodeChunk(c, raw)) };
  const onEvent = (type: string, data: string): void => adapter.convertEvent(state, type, data, sink);
  let lines: LineDecoder;
  if (adapter.framing === 'sse') {
    const events = new EventDecoder({ onEvent, maxEventBytes: 1 << 20 });
    lines = new LineDecoder({ onLine: (l) => events.line(l), maxLineBytes: 1 << 20 });
  } else {
    lines = new LineDecoder({ onLine: (l) => onEvent('', l), maxLineBytes: 1 << 20 });
  }
  for (const c of chunks) {
    lines.push(c);
    out += batch.length;
    batch = '';
  }
  lines.end();
  return out;
}

/**
 * The naive way: a growing string, re-split and every event JSON.parsed
 * again on each chunk; only new events are converted.
 */
function runNaive(format: MockFormat, chunks: Buffer[]): number {
  const adapter = ADAPTERS[format];
  const state = createStreamState({ id: 'chatcmpl-bench', created: 1, model: 'm' });
  let text = '';
  let seen = 0;
  let out = 0;
  const sep = adapter.framing === 'sse' ? '\n\n' : '\n';
  for (const c of chunks) {
    text += c.toString('utf8'); // also wrong for characters split across chunks
    const blocks = text.split(sep);
    blocks.pop();
    const parsed = blocks.map((b) => {
      const dataLine =
        adapter.framing === 'sse'
          ? b
              .split('\n')
              .find((l) => l.startsWith('data: '))!
              .slice(6)
          : b;
      return dataLine === '[DONE]' ? null : (JSON.parse(dataLine) as unknown);
    });
    for (let i = seen; i < parsed.length; i++) {
      const block = blocks[i]!;
      const type =
        adapter.framing === 'sse' && block.startsWith('event: ')
          ? block.slice(7, block.indexOf('\n'))
          : adapter.framing === 'sse'
            ? 'message'
            : '';
      const data = parsed[i] === null ? '[DONE]' : JSON.stringify(parsed[i]);
      adapter.convertEvent(state, type, data, { chunk: (ch, raw) => void (out += encodeChunk(ch, raw).length) });
    }
    seen = parsed.length;
  }
  return out;
}

function measure(fn: () => number, bytes: number): number {
  fn(); // warm up
  let runs = 0;
  const start = performance.now();
  let elapsed = 0;
  while (elapsed < MIN_RUN_MS) {
    fn();
    runs++;
    elapsed = performance.now() - start;
  }
  return (bytes * runs) / 1e6 / (elapsed / 1000);
}

const rows: string[][] = [['format', 'stream', 'incremental MB/s', 'naive MB/s', 'speed-up']];
for (const format of ['openai', 'ollama', 'anthropic'] as MockFormat[]) {
  for (const size of SIZES) {
    const stream = makeStream(format, size);
    const chunks = split(stream);
    if (runIncremental(format, chunks) === 0) throw new Error('the pipeline produced nothing');
    const fast = measure(() => runIncremental(format, chunks), stream.length);
    const naive = measure(() => runNaive(format, chunks), stream.length);
    rows.push([
      format,
      `${(stream.length / 1000).toFixed(0)} KB`,
      fast.toFixed(1),
      naive.toFixed(2),
      `${(fast / naive).toFixed(1)}×`,
    ]);
  }
}
const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
for (const r of rows)
  process.stdout.write(r.map((c, i) => (i < 2 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ') + '\n');
process.stdout.write(`\nnode ${process.version}, ${CHUNK_BYTES}-byte chunks, ≥${MIN_RUN_MS} ms per cell\n`);
