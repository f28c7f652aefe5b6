import { GraygateError } from '../../shared/errors.js';

// SPEC §5: incremental, O(bytes) line splitting for SSE and NDJSON bodies.
// Lines end with `\n`, `\r\n` or `\r` (WHATWG HTML "event stream
// interpretation"). We split on bytes and decode each complete line once:
// CR and LF never occur inside a multi-byte UTF-8 sequence, so a character
// split across chunks is always whole by the time its line is decoded.

const LF = 0x0a;
const CR = 0x0d;

export interface LineDecoderOptions {
  /** Called once per complete line, without its terminator. */
  onLine: (line: string) => void;
  /** Longest line accepted, in bytes (SPEC §2 maxEventBytes, default 1 MiB). Longer → upstream_protocol_error. */
  maxLineBytes: number;
}

export class LineDecoder {
  readonly #onLine: (line: string) => void;
  readonly #maxLineBytes: number;
  // The unfinished line, copied out of earlier chunks into one buffer that doubles as it fills: O(bytes) even for a
  // line that comes a byte per read (a Buffer per read held 106 MiB of heap for a 1 MiB line).
  #pending: Buffer | undefined;
  #pendingBytes = 0;
  // A chunk ended in `\r`: a `\n` that starts the next chunk belongs to that line end.
  #isAfterCR = false;

  constructor(options: LineDecoderOptions) {
    this.#onLine = options.onLine;
    this.#maxLineBytes = options.maxLineBytes;
  }

  /** Feeds one chunk; calls onLine for every line it completes. Throws upstream_protocol_error on an over-long line. */
  push(chunk: Buffer): void {
    const length = chunk.length;
    // Nothing: it must not end the wait for the LF of a CR that ended the chunk before (one line end, not two).
    if (length === 0) return;
    let start = 0;
    if (this.#isAfterCR) {
      this.#isAfterCR = false;
      if (length > 0 && chunk[0] === LF) start = 1;
    }
    // Cache the next CR and LF positions: each byte is scanned at most once per
    // terminator kind, so a chunk costs O(length) whatever the line count.
    let nextLF = chunk.indexOf(LF, start);
    let nextCR = chunk.indexOf(CR, start);
    while (start < length) {
      if (nextLF !== -1 && nextLF < start) nextLF = chunk.indexOf(LF, start);
      if (nextCR !== -1 && nextCR < start) nextCR = chunk.indexOf(CR, start);
      let end: number;
      if (nextLF === -1) end = nextCR;
      else if (nextCR === -1) end = nextLF;
      else end = nextLF < nextCR ? nextLF : nextCR;
      if (end === -1) {
        this.#keep(chunk, start, length);
        return;
      }
      this.#emit(chunk, start, end);
      if (chunk[end] === CR) {
        if (end + 1 === length) {
          this.#isAfterCR = true;
          return;
        }
        start = chunk[end + 1] === LF ? end + 2 : end + 1;
      } else {
        start = end + 1;
      }
    }
  }

  /** No unfinished line is held: the next chunk starts a line. */
  get isIdle(): boolean {
    return this.#pendingBytes === 0 && !this.#isAfterCR;
  }

  /** The body ended: a last line without terminator is still a line (NDJSON often ends so). */
  end(): void {
    if (this.#pendingBytes > 0) this.#onLine(this.#take());
    this.#isAfterCR = false;
  }

  #keep(chunk: Buffer, start: number, end: number): void {
    if (end === start) return;
    const bytes = this.#pendingBytes + end - start;
    this.#check(bytes);
    // Copy: the caller may reuse the chunk's memory (undici pools body buffers).
    let pending = this.#pending;
    if (pending === undefined || pending.length < bytes) {
      const grown = Buffer.allocUnsafe(Math.min(this.#maxLineBytes, Math.max(bytes, 2 * (pending?.length ?? 0))));
      pending?.copy(grown, 0, 0, this.#pendingBytes);
      this.#pending = pending = grown;
    }
    chunk.copy(pending, this.#pendingBytes, start, end);
    this.#pendingBytes = bytes;
  }

  /** The unfinished line, decoded, and the decoder emptied. */
  #take(): string {
    const line = this.#pending!.toString('utf8', 0, this.#pendingBytes);
    this.#reset();
    return line;
  }

  #emit(chunk: Buffer, start: number, end: number): void {
    if (this.#pendingBytes === 0) {
      this.#check(end - start);
      this.#onLine(chunk.toString('utf8', start, end));
      return;
    }
    this.#keep(chunk, start, end);
    this.#onLine(this.#take());
  }

  #check(bytes: number): void {
    if (bytes > this.#maxLineBytes) {
      this.#reset();
      throw new GraygateError(
        'upstream_protocol_error',
        `the upstream sent a line longer than maxEventBytes (${this.#maxLineBytes} bytes)`,
      );
    }
  }

  #reset(): void {
    this.#pending = undefined;
    this.#pendingBytes = 0;
  }
}
