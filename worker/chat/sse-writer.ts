import type { ServerResponse } from 'node:http';
import type { ChatCompletionChunk, ChatOutput } from '../types.js';
import { DONE_EVENT, PING_COMMENT, SSE_HEADERS, encodeChunk } from '../sse/encoder.js';
import { toSseErrorEvent } from '../../shared/errors.js';

// A streaming answer (SPEC §5, issue 3 parts 6–8). The status is committed
// late: headers go out with the first batch of chunks (or the first ping), so
// a failure before any content still gets a real HTTP status. Chunks produced
// by one upstream read are joined and written at once: one write, one
// Buffer conversion and one syscall per upstream chunk, not per event.

export interface SseWriterOptions {
  res: ServerResponse;
  /** stream_options.include_usage: forward the usage chunk. */
  includeUsage: boolean;
  /** Monotonic clock in ms, for first-token latency. */
  now: () => number;
  /** Extra response headers (e.g. x-request-id). */
  headers?: Record<string, string>;
  /** Called once, with the `now()` reading, when the first content chunk is written (the first-token metric, issue 5). */
  onFirstToken?: (atMs: number) => void;
}

export class SseWriter implements ChatOutput {
  /** Bytes written to the client. */
  bytes = 0;
  /** Content chunks sent. */
  contentChunks = 0;
  /** Clock reading when the first content chunk was written; undefined until then. */
  firstTokenAtMs: number | undefined = undefined;
  /** Highest res.writableLength seen: what this stream held in memory on our side. */
  peakBufferedBytes = 0;
  readonly #res: ServerResponse;
  readonly #options: SseWriterOptions;
  #batch = '';

  constructor(options: SseWriterOptions) {
    this.#res = options.res;
    this.#options = options;
  }

  chunk(chunk: ChatCompletionChunk, raw?: string): void {
    // A usage-only chunk (`choices: []`) goes out only when the client asked with stream_options.include_usage.
    if (!this.#options.includeUsage && chunk.choices.length === 0) return;
    const content = chunk.choices[0]?.delta.content;
    if (typeof content === 'string' && content !== '') {
      this.contentChunks++;
      if (this.firstTokenAtMs === undefined) {
        this.firstTokenAtMs = this.#options.now();
        this.#options.onFirstToken?.(this.firstTokenAtMs);
      }
    }
    // Bounded by what one upstream chunk produces, then written and reset.
    this.#batch += encodeChunk(chunk, raw);
  }

  flush(): boolean {
    if (this.#batch === '') return !this.#res.writableNeedDrain;
    const text = this.#batch;
    this.#batch = '';
    return this.#write(text);
  }

  onWritable(resume: () => void): () => void {
    this.#res.once('drain', resume);
    return () => this.#res.off('drain', resume);
  }

  ping(): void {
    // A client that is not reading needs no keep-alive, and a ping must never grow its buffer.
    if (this.#res.writableNeedDrain || this.#res.destroyed) return;
    this.#write(PING_COMMENT);
  }

  /** The upstream finished: pending chunks, `[DONE]`, end. */
  end(): void {
    this.#batch += DONE_EVENT;
    this.flush();
    this.#res.end();
  }

  get isCommitted(): boolean {
    return this.#res.headersSent;
  }

  /** After the status went out (STYLE §9): a final error event, no `[DONE]`, end. */
  failAfterCommit(err: unknown): void {
    if (this.#res.destroyed || this.#res.writableEnded) return;
    this.#batch = '';
    this.#write(toSseErrorEvent(err));
    this.#res.end();
  }

  #write(text: string): boolean {
    const res = this.#res;
    if (res.destroyed) return true;
    if (!res.headersSent) res.writeHead(200, { ...this.#options.headers, ...SSE_HEADERS });
    const buf = Buffer.from(text, 'utf8');
    this.bytes += buf.length;
    const isReady = res.write(buf);
    if (res.writableLength > this.peakBufferedBytes) this.peakBufferedBytes = res.writableLength;
    return isReady;
  }
}
