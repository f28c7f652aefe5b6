import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';

// Issue 10: the upstream response's body handed to its reader chunk by chunk,
// straight from undici's parser, with no stream in between. undici's
// request() wraps the body in a Readable: per chunk a push, a nextTick, a
// read(0) and a `data` event. Here each chunk is one call into the reader's
// sink. A reader that cannot take more pauses the body; chunks that still
// come are held, and undici's parser is paused: at once for a chunked answer
// (an LLM's stream: nothing read ahead of a stalled client), after
// READ_AHEAD_BYTES for any other (a large Content-Length answer keeps its
// throughput: 20 MB relayed in 82 ms median, 99-110 ms paused at once,
// docs/BENCHMARKS.md; HTTP/2, whose client ends a paused stream at its
// trailers, dropping what it had not given). Pausing undici 7's parser on a
// connection that closes after its answer takes patches/undici+7.30.2.patch
// (undici-fix.ts).

/** What an answer that is not chunked holds for a paused reader before undici's parser pauses (as request()). */
export const READ_AHEAD_BYTES = 64 * 1024;

/** Where a body's chunks go, once a reader takes it. */
export interface BodySink {
  data(chunk: Buffer): void;
  end(): void;
  /** The body failed (the connection broke, a timeout) or was destroyed with a reason. */
  error(err: unknown): void;
}

export interface UpstreamResponse {
  statusCode: number;
  headers: IncomingHttpHeaders;
  body: UpstreamBody;
}

/**
 * `complete`: undici read the whole body; held chunks and the end are still the reader's. `ended`: the reader has had
 * the end.
 */
type State = 'open' | 'complete' | 'ended' | 'failed' | 'destroyed';

/** Put where a held chunk was once it is delivered: the list keeps no reference to it. */
const DELIVERED = Buffer.alloc(0);

export class UpstreamBody {
  #sink: BodySink | undefined = undefined;
  /**
   * Chunks undici gave before a reader took the body, or while it was paused, from #heldAt on. An index, not shift():
   * a paused reader's read-ahead (64 KiB) held as one-byte chunks was 65,536 of them, and shifting them out one by
   * one held the worker's loop 4.6 s.
   */
  #held: Buffer[] = [];
  #heldAt = 0;
  #heldBytes = 0;
  #isPaused = false;
  #state: State = 'open';
  #error: unknown = undefined;
  #onClose: (() => void) | undefined = undefined;
  readonly #controller: Dispatcher.DispatchController;
  readonly #closed: () => void;
  /** Bytes held for a paused reader before the parser is paused: 0 for a chunked answer, else the client's. */
  readonly #readAhead: number;
  /**
   * Bytes of a Content-Length body still to come (Infinity when the length is not declared). The chunk that
   * completes the body never pauses the parser: paused there, before undici has marked the answer complete, an
   * upstream that closes the idle kept-alive connection (its keep-alive timeout, under a slow client) made undici fail
   * the whole answer with "other side closed", every byte of it received. One chunk more is held at most.
   */
  #toCome: number;

  /** `length`: the body's Content-Length, Infinity when it has none (chunked, or ended by the connection's end). */
  constructor(controller: Dispatcher.DispatchController, readAhead: number, length: number, closed: () => void) {
    this.#controller = controller;
    this.#readAhead = readAhead;
    this.#toCome = length;
    this.#closed = closed;
  }

  /** Bytes read from the upstream and not yet given to the reader. */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  /** The whole body was read and given to the reader. */
  get isEnded(): boolean {
    return this.#state === 'ended';
  }

  /** Starts giving the body to `sink`: what was read so far first. Once per body. */
  read(sink: BodySink): void {
    this.#sink = sink;
    if (this.#state === 'failed' || this.#state === 'destroyed') sink.error(this.#error);
    else this.#deliver();
  }

  /** Stops giving chunks until resume(); undici stops reading the connection (see READ_AHEAD_BYTES). */
  pause(): void {
    this.#isPaused = true;
  }

  resume(): void {
    if (!this.#isPaused) return;
    this.#isPaused = false;
    this.#deliver();
  }

  /**
   * Stops reading and aborts the request (undici closes its connection; a no-op once the body ended). With a reason,
   * the reader's sink gets it as an error.
   */
  destroy(reason?: unknown): void {
    if (this.#state !== 'open' && this.#state !== 'complete') return;
    this.#state = 'destroyed';
    this.#held = [];
    this.#heldAt = 0;
    this.#heldBytes = 0;
    const err = reason instanceof Error ? reason : new Error('the upstream body was destroyed');
    // A reader that starts later is told (never left waiting); one reading now only when there is a reason.
    this.#error = reason ?? err;
    this.#controller.abort(err);
    if (reason !== undefined) this.#sink?.error(reason);
    this.#close();
  }

  /** Called once when the body ended, failed or was destroyed. */
  onClose(callback: () => void): void {
    if (this.#state === 'open' || this.#state === 'complete') this.#onClose = callback;
    else callback();
  }

  /**
   * The body's bytes, up to `maxBytes` (then the rest is not read: the body is destroyed). `isCutKept`: a body that
   * fails before its end (reset, a deadline) resolves with the bytes that came instead of rejecting.
   */
  readAll(maxBytes: number, isCutKept = false): Promise<Buffer> {
    return new Promise((resolve, reject) => {
      const parts: Buffer[] = [];
      let bytes = 0;
      this.read({
        data: (chunk) => {
          parts.push(chunk);
          bytes += chunk.length;
          if (bytes >= maxBytes) {
            this.destroy();
            resolve(Buffer.concat(parts));
          }
        },
        end: () => resolve(Buffer.concat(parts)),
        error: isCutKept ? () => resolve(Buffer.concat(parts)) : reject,
      });
    });
  }

  // From undici (ResponseHandler).

  /** A chunk from undici's parser. One the reader cannot take now is held; past the read-ahead, the parser pauses. */
  chunk(chunk: Buffer): void {
    if (this.#state !== 'open') return;
    this.#toCome -= chunk.length;
    if (this.#sink === undefined || this.#isPaused || this.#heldAt < this.#held.length) {
      this.#held.push(chunk);
      this.#heldBytes += chunk.length;
      this.#pauseParserIfDue();
      return;
    }
    this.#sink.data(chunk);
    // The reader paused inside data(): with nothing held, only a read-ahead of 0 is due.
    if (this.#isPaused && this.#state === 'open') this.#pauseParserIfDue();
  }

  /** Past the read-ahead, undici's parser pauses, unless the body is complete (see #toCome). */
  #pauseParserIfDue(): void {
    if (this.#heldBytes >= this.#readAhead && this.#toCome > 0) this.#controller.pause();
  }

  ended(): void {
    if (this.#state !== 'open') return;
    this.#state = 'complete';
    this.#deliver();
  }

  failed(err: unknown): void {
    if (this.#state !== 'open') return;
    this.#state = 'failed';
    this.#error = err;
    this.#held = [];
    this.#heldAt = 0;
    this.#heldBytes = 0;
    this.#sink?.error(err);
    this.#close();
  }

  /** Gives held chunks, then the end, to the reader while it takes them; then lets undici read on. */
  #deliver(): void {
    const sink = this.#sink;
    if (sink === undefined) return;
    while (this.#heldAt < this.#held.length && !this.#isPaused) {
      if (this.#state !== 'open' && this.#state !== 'complete') return;
      const chunk = this.#held[this.#heldAt]!;
      this.#held[this.#heldAt++] = DELIVERED;
      this.#heldBytes -= chunk.length;
      sink.data(chunk);
    }
    if (this.#heldAt > 0 && this.#heldAt === this.#held.length) {
      this.#held.length = 0; // no allocation: a resume of a stream's reader comes here with nothing held
      this.#heldAt = 0;
    } else if (this.#heldAt > 1024 && this.#heldAt * 2 > this.#held.length) {
      // Paused again part way: what was delivered goes, once it is most of the list (each chunk moved once, about).
      this.#held = this.#held.slice(this.#heldAt);
      this.#heldAt = 0;
    }
    if (this.#isPaused || this.#heldAt < this.#held.length) return;
    if (this.#state === 'open') {
      // The parser goes on from here, reentrantly: more chunks, the end (ended() delivers it), or another pause.
      if (this.#controller.paused) this.#controller.resume();
      return;
    }
    if (this.#state !== 'complete') return;
    // undici's HTTP/2 client completes a paused stream at its trailers and leaves it paused: let it go.
    if (this.#controller.paused) this.#controller.resume();
    this.#state = 'ended';
    try {
      sink.end();
    } finally {
      this.#close();
    }
  }

  #close(): void {
    this.#closed();
    const onClose = this.#onClose;
    this.#onClose = undefined;
    onClose?.();
  }
}

/**
 * undici's handler of one request (its dispatch API): resolves with the response at its headers, then feeds the
 * body. The signal aborts the request before its headers and destroys the body after them.
 */
export class ResponseHandler implements Dispatcher.DispatchHandler {
  readonly #resolve: (response: UpstreamResponse) => void;
  readonly #reject: (err: unknown) => void;
  readonly #signal: AbortSignal;
  /** Bytes read ahead of a paused reader on an answer that is not chunked (UpstreamClientOptions.readAheadBytes). */
  readonly #readAhead: number;
  #controller: Dispatcher.DispatchController | undefined = undefined;
  #body: UpstreamBody | undefined = undefined;

  constructor(
    signal: AbortSignal,
    readAhead: number,
    resolve: (response: UpstreamResponse) => void,
    reject: (err: unknown) => void,
  ) {
    this.#signal = signal;
    this.#readAhead = readAhead;
    this.#resolve = resolve;
    this.#reject = reject;
    signal.addEventListener('abort', this.#onAbort);
  }

  readonly #onAbort = (): void => {
    const reason: unknown = this.#signal.reason;
    if (this.#body !== undefined) this.#body.destroy(reason);
    else this.#controller?.abort(reason instanceof Error ? reason : new Error('aborted'));
  };

  readonly #release = (): void => this.#signal.removeEventListener('abort', this.#onAbort);

  onRequestStart(controller: Dispatcher.DispatchController): void {
    this.#controller = controller;
    if (this.#signal.aborted) this.#onAbort();
  }

  onResponseStart(controller: Dispatcher.DispatchController, statusCode: number, headers: IncomingHttpHeaders): void {
    if (statusCode < 200) return; // 1xx: informational, the response follows
    const chunked = isChunked(headers);
    // undici refuses an invalid or repeated Content-Length; anything else is taken as none (the parser may pause).
    const declared = Number(headers['content-length']);
    const length = !chunked && Number.isFinite(declared) ? declared : Infinity;
    const body = new UpstreamBody(controller, chunked ? 0 : this.#readAhead, length, this.#release);
    this.#body = body;
    this.#resolve({ statusCode, headers, body });
  }

  onResponseData(_controller: Dispatcher.DispatchController, chunk: Buffer): void {
    this.#body?.chunk(chunk);
  }

  onResponseEnd(): void {
    this.#body?.ended();
  }

  onResponseError(_controller: Dispatcher.DispatchController, err: Error): void {
    if (this.#body !== undefined) return this.#body.failed(err);
    this.#release();
    this.#reject(err);
  }
}

/** Chunked framing: HTTP/1.1's, and how an LLM server streams. */
function isChunked(headers: IncomingHttpHeaders): boolean {
  return /(?:^|,)\s*chunked\s*$/i.test(String(headers['transfer-encoding'] ?? ''));
}
