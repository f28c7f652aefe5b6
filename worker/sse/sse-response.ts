import type { ServerResponse } from 'node:http';
import { toSseErrorEvent } from '../../shared/errors.js';
import { DirectAnswer, directAnswerOf, type DirectRoute } from '../direct/direct-answer.js';
import { PING_COMMENT, SSE_HEADERS } from './encoder.js';
import { STREAM_FAILED_TRAILER, TIME_PER_TOKEN_TRAILER } from '../../shared/direct.js';
import { drainTarget, isBehind, writeChunk } from '../../shared/chunked-write.js';

// What every streamed answer shares (SPEC §5, issue 3 parts 6–8), chat chunks
// and relayed events alike. The status is committed late: headers go out with
// the first batch of events (or the first ping), so a failure before any
// content still gets a real HTTP status. Events produced by one upstream read
// are joined and written at once: one write, one Buffer conversion and one
// syscall per upstream chunk, not per event.

const PING_BYTES = Buffer.from(PING_COMMENT);

export interface SseResponseOptions {
  res: ServerResponse;
  /** Monotonic clock in ms, for first-token latency. */
  now: () => number;
  /** Extra response headers (e.g. x-request-id). */
  headers?: Record<string, string>;
  /**
   * Called once, with the `now()` reading, when the first content event is written (the first-token metric, issue 5).
   */
  onFirstToken?: (atMs: number) => void;
  /** limits.directStreams: the client's connection was offered; the answer goes straight to it if it is free. */
  direct?: DirectRoute | undefined;
}

export abstract class SseResponse {
  /** Bytes written to the client. */
  bytesOut = 0;
  /** Content events sent (text, tool-call fragments). */
  contentChunks = 0;
  /** Clock reading when the first content event was queued; undefined until then. */
  firstTokenAtMs: number | undefined = undefined;
  /** Clock reading when the last batch with a content event was written. */
  lastTokenAtMs = 0;
  /** Highest res.writableLength seen: what this stream held in memory on our side. */
  peakBufferedBytes = 0;
  /** Where the answer is written: the master's request, or the client's connection on a direct answer. */
  private res: ServerResponse;
  readonly #options: SseResponseOptions;
  #direct: DirectAnswer | undefined = undefined;
  #batch = '';
  /** The batch queued since the last write holds a content event: its write's time is the last token's. */
  #hasPendingContent = false;
  /**
   * Time the answer waited on its client (behind, until `drain`) since the last content write, and between the first
   * content write and the last: not the version's time per token (a client that reads slowly would make it look slow).
   */
  #behindPendingMs = 0;
  #behindInSpanMs = 0;
  // Upstream bytes relayed as they came (queueBytes). Only one of #batch and #bytes holds anything at a time.
  #bytes: Buffer | undefined = undefined;

  constructor(options: SseResponseOptions) {
    this.res = options.res;
    this.#options = options;
    // An IPC call's response is the client's from the start (direct-answer.ts).
    this.#direct = directAnswerOf(options.res);
  }

  /** Queues framed event text; written at the next flush. Bounded by what one upstream chunk produces. */
  protected queue(text: string, isContent: boolean): void {
    if (this.#bytes !== undefined) this.flush();
    if (isContent) {
      this.contentChunks++;
      this.#hasPendingContent = true;
      if (this.firstTokenAtMs === undefined) this.#onFirstContent();
    }
    this.#batch += text;
  }

  /**
   * Queues bytes that are already SSE events (a relayed upstream chunk), `contentEvents` of them content. Written at
   * the next flush, as they are.
   */
  protected queueBytes(bytes: Buffer, contentEvents: number): void {
    // Order is kept by holding one kind at a time; the pipeline flushes after every chunk, so this rarely writes.
    if (this.#bytes !== undefined || this.#batch !== '') this.flush();
    if (contentEvents > 0) {
      this.contentChunks += contentEvents;
      this.#hasPendingContent = true;
      if (this.firstTokenAtMs === undefined) this.#onFirstContent();
    }
    this.#bytes = bytes;
  }

  #onFirstContent(): void {
    this.firstTokenAtMs = this.#options.now();
    this.#behindPendingMs = 0; // waits before the first token are the first token's
    this.#options.onFirstToken?.(this.firstTokenAtMs);
    // Queued, so written at the next flush: the master's mark follows the client's bytes closely enough.
    this.#direct?.firstContent();
  }

  flush(): boolean {
    const bytes = this.#bytes;
    if (this.#batch === '' && bytes === undefined) return !isBehind(this.res);
    if (this.#hasPendingContent) {
      // One clock reading per write with content, not per event.
      this.#hasPendingContent = false;
      this.lastTokenAtMs = this.#options.now();
      this.#behindInSpanMs += this.#behindPendingMs;
      this.#behindPendingMs = 0;
    }
    if (bytes !== undefined) {
      this.#bytes = undefined;
      return this.#write(bytes);
    }
    const text = this.#batch;
    this.#batch = '';
    return this.#write(Buffer.from(text, 'utf8'));
  }

  onWritable(resume: () => void): () => void {
    const target = drainTarget(this.res);
    const now = this.#options.now;
    const since = now();
    // Only when the client is behind: a closure per wait, not per event.
    const onDrain = (): void => {
      this.#behindPendingMs += now() - since;
      resume();
    };
    target.once('drain', onDrain);
    return () => target.off('drain', onDrain);
  }

  ping(): void {
    // A client that is not reading needs no keep-alive, and a ping must never grow its buffer.
    if (isBehind(this.res) || this.res.destroyed) return;
    this.#write(PING_BYTES);
  }

  /**
   * The upstream finished: pending events, then `last` (e.g. `[DONE]`), end. `isFailed`: the upstream's own final
   * event said the answer failed (a Responses `response.failed` or `error`, relayed as it came): the master counts it a
   * failed stream (SPEC §11), as it does when it reads one it relays.
   */
  protected finish(last: string, isFailed = false): void {
    if (this.#bytes !== undefined) this.flush();
    this.#batch += last;
    // Corked: the last events and the chunked terminator leave in one writev (end() uncorks fully;
    // an ended response would not, so it is never corked).
    if (!this.res.writableEnded) this.res.socket?.cork();
    this.flush();
    const timePerTokenMs = isFailed ? NaN : this.timePerTokenMs;
    if (this.#direct !== undefined) {
      if (isFailed) this.#direct.fail();
      this.#direct.end(timePerTokenMs);
    } else {
      // The master's canary judges it (SPEC §11): a trailer of this hop, which the master reads and does not relay.
      // A failure is said too: the master reads the upstream's event's first bytes only, which need not name it.
      if (isFailed && !this.res.writableEnded) this.res.addTrailers({ [STREAM_FAILED_TRAILER]: '1' });
      else if (timePerTokenMs >= 0 && !this.res.writableEnded)
        this.res.addTrailers({ [TIME_PER_TOKEN_TRAILER]: timePerTokenMs.toFixed(3) });
      this.res.end();
    }
  }

  /**
   * The mean ms between content events after the first (an LLM's time per output token), from the times their
   * writes went out, less the time the answer waited on its client in between; NaN with fewer than two content events.
   */
  get timePerTokenMs(): number {
    if (this.contentChunks < 2 || this.firstTokenAtMs === undefined) return NaN;
    return Math.max(0, this.lastTokenAtMs - this.firstTokenAtMs - this.#behindInSpanMs) / (this.contentChunks - 1);
  }

  get isCommitted(): boolean {
    return this.res.headersSent;
  }

  /** The final error event of a stream that failed after its status (SPEC §4): the error body as one event. */
  protected errorEvent(err: unknown): string {
    return toSseErrorEvent(err);
  }

  /** After the status went out (STYLE §9): a final error event, no `[DONE]`, end. */
  failAfterCommit(err: unknown): void {
    if (this.res.destroyed || this.res.writableEnded) return;
    this.#batch = '';
    this.#bytes = undefined;
    this.res.socket?.cork();
    this.#write(Buffer.from(this.errorEvent(err), 'utf8'));
    if (this.#direct !== undefined) {
      this.#direct.fail();
      this.#direct.end();
    } else this.res.end();
  }

  #write(buf: Buffer): boolean {
    if (!this.res.headersSent) this.#commit();
    const res = this.res;
    if (res.destroyed) return true;
    this.bytesOut += buf.length;
    const isReady = writeChunk(res, buf);
    // A direct answer watches the writes made through its response's write (its send timer); a framed one is not.
    if (!isReady) this.#direct?.behind();
    if (res.writableLength > this.peakBufferedBytes) this.peakBufferedBytes = res.writableLength;
    return isReady;
  }

  /** The status goes out: to the client's connection when it was offered and is free, else to the master. */
  #commit(): void {
    const headers = { ...this.#options.headers, ...SSE_HEADERS };
    if (this.#direct !== undefined) {
      // An IPC call: the client's response already; the master hears the status before its first byte (DirectAnswer).
      if (!this.res.destroyed) this.res.writeHead(200, headers);
      return;
    }
    const route = this.#options.direct;
    const direct = route === undefined ? undefined : DirectAnswer.open(route, this.res, headers);
    if (direct === undefined) {
      if (!this.res.destroyed) this.res.writeHead(200, headers);
      return;
    }
    this.#direct = direct;
    this.res = direct.client;
  }
}
