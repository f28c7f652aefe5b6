import type { ServerResponse } from 'node:http';
import type { BodyConsumer } from '../upstream/pipeline.js';
import type { CallResponse } from '../call/call-response.js';
import { UsageTail } from './usage-tail.js';

// A non-streamed answer of an OpenAI upstream relayed byte for byte (SPEC
// §12: embeddings, legacy completions, the Responses API): each upstream
// chunk is written as it arrives, with backpressure, never held whole. The
// status goes out with the first bytes, so a failure before them still gets
// a real HTTP status; after them the answer can only be cut (STYLE §9).

export interface BytesRelayOptions {
  res: ServerResponse;
  /** Extra response headers (e.g. x-request-id). */
  headers: Record<string, string>;
}

export class BytesRelay implements BodyConsumer, CallResponse {
  readonly framing = 'bytes';
  bytesOut = 0;
  readonly #res: ServerResponse;
  readonly #headers: Record<string, string>;
  readonly #tail = new UsageTail();
  #pending: Buffer[] = [];

  constructor(options: BytesRelayOptions) {
    this.#res = options.res;
    this.#headers = options.headers;
  }

  /** A JSON answer is one piece of content. */
  get contentChunks(): number {
    return this.bytesOut > 0 ? 1 : 0;
  }

  get isCommitted(): boolean {
    return this.#res.headersSent;
  }

  event(): void {}

  body(chunk: Buffer): void {
    this.#pending.push(chunk);
    this.#tail.push(chunk);
  }

  /** The upstream's body ended: a relayed answer has no final event to check. */
  end(): void {}

  flush(): boolean {
    const res = this.#res;
    if (this.#pending.length === 0 || res.destroyed) return !res.writableNeedDrain;
    if (!res.headersSent) res.writeHead(200, { ...this.#headers, 'content-type': 'application/json' });
    const parts = this.#pending;
    this.#pending = [];
    let isReady = true;
    for (const part of parts) {
      this.bytesOut += part.length;
      isReady = res.write(part);
    }
    return isReady;
  }

  onWritable(resume: () => void): () => void {
    this.#res.once('drain', resume);
    return () => this.#res.off('drain', resume);
  }

  ping(): void {}

  complete(): void {
    this.flush();
    if (!this.#res.headersSent)
      this.#res.writeHead(200, { ...this.#headers, 'content-type': 'application/json', 'content-length': 0 });
    this.#res.end();
  }

  failAfterCommit(): void {
    this.#res.destroy();
  }

  usage(): { prompt_tokens: number; completion_tokens: number } | undefined {
    return this.#tail.usage();
  }
}
