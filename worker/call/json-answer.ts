import type { ServerResponse } from 'node:http';
import { GraygateError } from '../../shared/errors.js';
import type { BodyConsumer } from '../upstream/pipeline.js';
import type { CallResponse } from './call-response.js';
import type { AnswerShare } from './answer-share.js';

// A non-streamed answer written once, whole, when the upstream is done: a
// chat completion aggregated from chunks (chat/aggregate.ts), or an answer
// converted as a whole (Ollama embeddings). Until then the client gets only
// `102 Processing` pings (call/processing-pings.ts).

export interface JsonAnswerOptions {
  res: ServerResponse;
  /** Extra response headers (e.g. x-request-id). */
  headers: Record<string, string>;
  /** The answer's JSON bytes, built when the upstream finished. */
  build: () => Buffer;
  /** Content pieces the answer holds (for the log line). */
  contentChunks: () => number;
}

export class JsonAnswer implements CallResponse {
  bytesOut = 0;
  readonly #options: JsonAnswerOptions;

  constructor(options: JsonAnswerOptions) {
    this.#options = options;
  }

  get contentChunks(): number {
    return this.#options.contentChunks();
  }

  get isCommitted(): boolean {
    return this.#options.res.headersSent;
  }

  // Nothing is written before the end, so the output never pushes back.
  flush(): boolean {
    return true;
  }

  onWritable(): () => void {
    return () => undefined;
  }

  ping(): void {}

  complete(): void {
    const body = this.#options.build();
    this.#options.res.writeHead(200, {
      ...this.#options.headers,
      'content-type': 'application/json',
      'content-length': body.length,
    });
    this.#options.res.end(body);
    this.bytesOut = body.length;
  }

  // One write at the end: nothing can fail after it.
  failAfterCommit(): void {
    this.#options.res.destroy();
  }
}

export interface CollectedBodyOptions {
  /** Largest answer held, bytes. */
  maxBytes: number;
  /** The error past it. Default upstream_protocol_error. */
  tooLarge?: 'upstream_protocol_error' | 'answer_too_large';
  /** What that error says after the size (`; ask for it with stream: true`). */
  hint?: string;
  /** Its worker's budget for answers held whole (limits.maxBufferedAnswerBytes), which its bytes are taken from. */
  share?: AnswerShare;
}

/** Reads a whole upstream answer into memory, for answers that are converted or checked as a whole. */
export class CollectedBody implements BodyConsumer {
  readonly framing = 'bytes';
  readonly #options: CollectedBodyOptions;
  readonly #parts: Buffer[] = [];
  #bytes = 0;

  constructor(options: CollectedBodyOptions) {
    this.#options = options;
  }

  event(): void {}

  body(chunk: Buffer): void {
    this.#bytes += chunk.length;
    const { maxBytes, tooLarge = 'upstream_protocol_error', hint = '', share } = this.#options;
    if (this.#bytes > maxBytes) {
      throw new GraygateError(
        tooLarge,
        `the upstream answer is larger than ${maxBytes} bytes${hint}`,
        // A retry would have the upstream produce the same answer again.
        tooLarge === 'answer_too_large' ? { shouldRetry: false } : {},
      );
    }
    share?.take(chunk.length);
    this.#parts.push(chunk);
  }

  end(): void {}

  /** The whole answer, once the body ended (its parts are let go: the answer is converted from this one copy). */
  bytes(): Buffer {
    const whole = Buffer.concat(this.#parts, this.#bytes);
    this.#parts.length = 0;
    return whole;
  }
}
