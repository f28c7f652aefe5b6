import type { ServerResponse } from 'node:http';
import type { Socket } from 'node:net';
import { EventEmitter } from 'node:events';
import type { MockControls } from './controls.js';
import type { MockFormat } from './formats.js';

// One answer of the mock upstream in progress (SPEC §8), as tests observe it:
// what was asked, bytes written, backpressure, when its connection closed;
// and the faults a test can trigger at a moment it chooses.

/**
 * One answer in progress. Emits 'blocked' when a write hit backpressure,
 * 'drain' after, 'close' when its connection closed.
 */
export class MockStream extends EventEmitter<{ blocked: []; drain: []; close: [] }> {
  readonly id: number;
  readonly format: MockFormat;
  readonly controls: MockControls;
  /** The request path and its parsed JSON body, for tests to check what the upstream was sent. */
  readonly path: string;
  readonly body: Record<string, unknown>;
  /** Body bytes handed to the socket so far. */
  bytesWritten = 0;
  /** True while a write returned false and 'drain' has not come. */
  isBlocked = false;
  /** The answer was fully written before the connection closed. */
  isComplete = false;
  isClosed = false;
  readonly #res: ServerResponse;
  readonly #socket: Socket;

  constructor(
    init: { id: number; format: MockFormat; controls: MockControls; path: string; body: Record<string, unknown> },
    res: ServerResponse,
  ) {
    super();
    this.id = init.id;
    this.format = init.format;
    this.controls = init.controls;
    this.path = init.path;
    this.body = init.body;
    this.#res = res;
    this.#socket = res.socket!;
  }

  /** Writes body text; resolves once the socket can take more (or at once). */
  async write(text: string): Promise<void> {
    if (text !== '') await this.#writeBytes(Buffer.from(text, 'utf8'));
  }

  /**
   * Writes body text `pieceBytes` at a time, one write per turn of the event
   * loop, so the client reads it in many network chunks and multi-byte UTF-8
   * characters arrive split (the `framing=quirks` control).
   */
  async writeInPieces(text: string, pieceBytes: number): Promise<void> {
    const buf = Buffer.from(text, 'utf8');
    for (let i = 0; i < buf.length && !this.isClosed; i += pieceBytes) {
      await this.#writeBytes(buf.subarray(i, i + pieceBytes));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async #writeBytes(buf: Buffer): Promise<void> {
    if (this.isClosed) return;
    this.bytesWritten += buf.length;
    if (this.#res.write(buf)) return;
    this.isBlocked = true;
    this.emit('blocked');
    await drainOrClose(this.#res);
    this.isBlocked = false;
    if (!this.isClosed) this.emit('drain');
  }

  /** Ends the body as a complete answer (after the `error` fault's event). */
  end(): void {
    if (!this.isClosed) this.#res.end();
  }

  /** Sends a TCP RST at once (the `reset` fault, also callable by tests at a moment they choose). */
  reset(): void {
    if (!this.isClosed) this.#socket.resetAndDestroy();
  }

  /** Ends the connection with a FIN without finishing the body (the `close` fault). */
  cut(): void {
    if (!this.isClosed) this.#socket.destroy();
  }
}

/**
 * Resolves on the response's next 'drain' or its 'close', whichever comes first; both listeners go (a race of two
 * once() left the loser's behind, one per block: MaxListenersExceededWarning on a long answer to a slow reader).
 */
export function drainOrClose(res: ServerResponse): Promise<void> {
  return new Promise((resolve) => {
    const done = (): void => {
      res.off('drain', done);
      res.off('close', done);
      resolve();
    };
    res.once('drain', done);
    res.once('close', done);
  });
}
