import type { IncomingHttpHeaders } from 'node:http';
import type { Dispatcher } from 'undici';
import { UNDICI_FINISHES_PAUSED_PARSERS } from './undici-fix.js';

// Issue 10: the upstream response's body handed to its reader chunk by chunk,
// straight from undici's parser, with no stream in between. undici's
// request() wraps the body in a Readable: per chunk a push, a nextTick, a
// read(0) and a `data` event. Here each chunk is one call into the reader's
// sink. A reader that cannot take more pauses the body, and undici's parser
// is paused: at once for HTTP/1.x, so nothing is read ahead of the reader
// (undici 7 needs patches/undici+7.30.2.patch for that, undici-fix.ts).
// undici's HTTP/2 client ends a paused stream at its trailers, dropping what
// it had not given: there READ_AHEAD_BYTES are held first, as request() held
// its body's high-water mark.

/** What a body holds for a paused reader before undici's parser is paused (request()'s highWaterMark was 64 KiB). */
const READ_AHEAD_BYTES = 64 * 1024;

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

export class UpstreamBody {
  #sink: BodySink | undefined = undefined;
  /** Chunks undici gave before a reader took the body, or while it was paused. */
  #held: Buffer[] = [];
  #heldBytes = 0;
  #isPaused = false;
  #state: State = 'open';
  #error: unknown = undefined;
  #onClose: (() => void) | undefined = undefined;
  readonly #controller: Dispatcher.DispatchController;
  readonly #closed: () => void;
  /** Bytes held for a paused reader before the parser is paused: 0 or READ_AHEAD_BYTES (readAheadFor). */
  readonly #readAhead: number;

  constructor(controller: Dispatcher.DispatchController, readAhead: number, closed: () => void) {
    this.#controller = controller;
    this.#readAhead = readAhead;
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

  /** The body's bytes, up to `maxBytes` (then the rest is not read: the body is destroyed). */
  readAll(maxBytes: number): Promise<Buffer> {
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
        error: reject,
      });
    });
  }

  // From undici (ResponseHandler).

  /** A chunk from undici's parser. One the reader cannot take now is held; past the read-ahead, the parser pauses. */
  chunk(chunk: Buffer): void {
    if (this.#state !== 'open') return;
    if (this.#sink === undefined || this.#isPaused || this.#held.length > 0) {
      this.#held.push(chunk);
      this.#heldBytes += chunk.length;
      if (this.#heldBytes >= this.#readAhead) this.#controller.pause();
      return;
    }
    this.#sink.data(chunk);
    if (this.#isPaused && this.#state === 'open' && this.#readAhead === 0) this.#controller.pause();
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
    this.#heldBytes = 0;
    this.#sink?.error(err);
    this.#close();
  }

  /** Gives held chunks, then the end, to the reader while it takes them; then lets undici read on. */
  #deliver(): void {
    const sink = this.#sink;
    if (sink === undefined) return;
    while (this.#held.length > 0 && !this.#isPaused) {
      if (this.#state !== 'open' && this.#state !== 'complete') return;
      const chunk = this.#held.shift()!;
      this.#heldBytes -= chunk.length;
      sink.data(chunk);
    }
    if (this.#isPaused || this.#held.length > 0) return;
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
  readonly #mayBeHttp2: boolean;
  #controller: Dispatcher.DispatchController | undefined = undefined;
  #body: UpstreamBody | undefined = undefined;

  /** `mayBeHttp2`: the pool may speak HTTP/2 (HTTPS with allowH2); plain HTTP is always HTTP/1.x. */
  constructor(
    signal: AbortSignal,
    mayBeHttp2: boolean,
    resolve: (response: UpstreamResponse) => void,
    reject: (err: unknown) => void,
  ) {
    this.#signal = signal;
    this.#mayBeHttp2 = mayBeHttp2;
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

  onResponseStart(
    controller: Dispatcher.DispatchController,
    statusCode: number,
    headers: IncomingHttpHeaders,
    statusMessage?: string,
  ): void {
    if (statusCode < 200) return; // 1xx: informational, the response follows
    const body = new UpstreamBody(controller, readAheadFor(headers, statusMessage, this.#mayBeHttp2), this.#release);
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

/**
 * How much a paused reader's body holds before undici's parser is paused. HTTP/2 (undici gives it an empty status
 * message): READ_AHEAD_BYTES. HTTP/1.x: none, with undici fixed (undici-fix.ts); without the fix only a chunked answer
 * on a connection kept alive after it (chunked framing is HTTP/1.1's) is paused at once, anything else is read
 * READ_AHEAD_BYTES ahead, as request() did.
 */
function readAheadFor(headers: IncomingHttpHeaders, statusMessage: string | undefined, mayBeHttp2: boolean): number {
  if (mayBeHttp2 && !statusMessage) return READ_AHEAD_BYTES;
  if (UNDICI_FINISHES_PAUSED_PARSERS) return 0;
  const isChunked = /(?:^|,)\s*chunked\s*$/i.test(String(headers['transfer-encoding'] ?? ''));
  const closes = /(?:^|,)\s*close\s*(?:,|$)/i.test(String(headers.connection ?? ''));
  return isChunked && !closes ? 0 : READ_AHEAD_BYTES;
}
