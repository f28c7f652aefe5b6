import type { ServerResponse } from 'node:http';
import type { BodyConsumer } from '../upstream/pipeline.js';
import type { CallResponse } from '../call/call-response.js';
import { UsageTail } from './usage-tail.js';
import { notJsonObject, upstreamErrorIn, UTF8_BOM, withoutBom } from '../upstream/format-adapter.js';
import { MAX_ERROR_BODY_BYTES } from '../upstream/pipeline.js';

// A non-streamed answer of an OpenAI upstream relayed byte for byte (SPEC
// §12: embeddings, legacy completions, the Responses API): each upstream
// chunk is written as it arrives, with backpressure, never held whole. The
// status goes out with the first bytes, so a failure before them still gets
// a real HTTP status; after them the answer can only be cut (STYLE §9).
// Those first bytes are looked at before the status goes out: an answer that
// is no JSON object (an HTML page of a proxy in front of the model) is
// upstream_protocol_error, and one whose first key is `"error"` (a 200 carrying
// an error) is held, up to MAX_ERROR_BODY_BYTES, and ends as the upstream's
// error: relayed as a 200, the client and the canary took both for answers.

/** What the answer's first bytes said: not yet seen (whitespace so far), an answer, an error object being held. */
type Start = 'unknown' | 'answer' | 'error';

const WHITESPACE: ReadonlySet<number> = new Set([0x20, 0x09, 0x0a, 0x0d]);
const ERROR_KEY = Buffer.from('"error"');
/** Bytes of small reads that wait for one write at the end of a loop turn (flush). */
const COALESCE_BYTES = 16 * 1024;

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
  #pendingBytes = 0;
  #start: Start = 'unknown';
  readonly #scan = new StartScan();
  /** A write of what is pending is due at the end of this loop turn (flush). */
  #isWriteDue = false;
  readonly #writeDue = (): void => {
    this.#isWriteDue = false;
    this.#write();
  };

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
    this.#pendingBytes += chunk.length;
    this.#tail.push(chunk);
    if (this.#start === 'unknown') {
      // Each byte looked at once: the whole of what was held, looked at again for each chunk, was quadratic in an
      // upstream's whitespace sent a byte a read (a probe: 16,384 of them, 12.5 s of the worker's loop).
      const start = this.#scan.push(chunk);
      // Not a JSON object: what it is, in the message, from what came so far.
      if (start === 'not_object') throw notObject(Buffer.concat(this.#pending));
      this.#start = start;
    }
    // Whitespace, or an error object, longer than any error body is an answer after all: relayed.
    if (this.#start !== 'answer' && this.#pendingBytes > MAX_ERROR_BODY_BYTES) this.#start = 'answer';
  }

  /** The upstream's body ended: an error object held is the upstream's error. */
  end(): void {
    if (this.#start !== 'error') return;
    const error = upstreamErrorIn(Buffer.concat(this.#pending).toString('utf8'));
    if (error !== undefined) throw error;
    this.#start = 'answer'; // `"error": null`, or not JSON after all: relayed as it came
  }

  /**
   * Less than COALESCE_BYTES pending waits for the end of this loop turn, so that an upstream's small reads of one
   * turn go out as one write, not one each (a probe: an upstream's one-byte chunks were one-byte writes, each of which
   * the master relays as a write of its own: 8.1 s of its CPU for 1 MiB). At most that much waits.
   */
  flush(): boolean {
    const res = this.#res;
    if (this.#pending.length === 0 || res.destroyed || this.#start !== 'answer') return !res.writableNeedDrain;
    if (this.#pendingBytes >= COALESCE_BYTES) return this.#write();
    if (!this.#isWriteDue) {
      this.#isWriteDue = true;
      setImmediate(this.#writeDue);
    }
    return !res.writableNeedDrain;
  }

  /** What is pending, in one write (the head first, with the first). */
  #write(): boolean {
    const res = this.#res;
    if (this.#pending.length === 0 || res.destroyed || this.#start !== 'answer') return !res.writableNeedDrain;
    const parts = this.#pending;
    this.#pending = [];
    this.#pendingBytes = 0;
    let data = parts.length === 1 ? parts[0]! : Buffer.concat(parts);
    if (!res.headersSent) {
      res.writeHead(200, { ...this.#headers, 'content-type': 'application/json' });
      data = withoutBom(data); // as a chat answer's: JSON sent on has none (RFC 8259 §8.1)
    }
    this.bytesOut += data.length;
    return res.write(data);
  }

  onWritable(resume: () => void): () => void {
    this.#res.once('drain', resume);
    return () => this.#res.off('drain', resume);
  }

  ping(): void {}

  complete(): void {
    if (this.#start === 'unknown') this.#start = 'answer'; // empty, or whitespace only: relayed as it came
    this.#write();
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

/**
 * What an answer's first bytes say, read a byte at a time as chunks come: a byte-order mark, whitespace, `{`,
 * whitespace, then the first key's bytes against `"error"` (`{"error": …` is an error to hold, any other object an
 * answer, too few bytes to tell unknown yet). `not_object`: something else came first.
 */
class StartScan {
  /** 0: the mark's bytes, 1: before `{`, 2: after it, 3: the first key. */
  #phase = 0;
  /** Bytes of the mark, or of `"error"`, matched so far. */
  #matched = 0;

  push(chunk: Buffer): Start | 'not_object' {
    for (let i = 0; i < chunk.length; i++) {
      const byte = chunk[i]!;
      if (this.#phase === 0) {
        if (byte === UTF8_BOM[this.#matched]) {
          if (++this.#matched === UTF8_BOM.length) [this.#phase, this.#matched] = [1, 0];
          continue;
        }
        if (this.#matched > 0) return 'not_object'; // a mark's first bytes, then something else
        this.#phase = 1;
      }
      if (this.#phase === 1) {
        if (WHITESPACE.has(byte)) continue;
        if (byte !== 0x7b /* { */) return 'not_object';
        this.#phase = 2;
        continue;
      }
      if (this.#phase === 2) {
        if (WHITESPACE.has(byte)) continue;
        this.#phase = 3;
      }
      if (byte !== ERROR_KEY[this.#matched]) return 'answer';
      if (++this.#matched === ERROR_KEY.length) return 'error';
    }
    return 'unknown';
  }
}

/**
 * An answer that is no JSON object, as upstream_protocol_error quoting its start (a byte-order mark and whitespace
 * skipped): StartScan found the byte; this says what came.
 */
function notObject(bytes: Buffer): ReturnType<typeof notJsonObject> {
  const head = withoutBom(bytes);
  let i = 0;
  while (i < head.length && WHITESPACE.has(head[i]!)) i++;
  return notJsonObject(head.toString('utf8', i, i + 160));
}
