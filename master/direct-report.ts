import type { RequestContext } from './request-context.js';
import { cutDirect, endUnwritten } from './direct-connections.js';
import {
  DIRECT_CLIENT_GONE,
  DIRECT_DONE,
  DIRECT_FAILED,
  DIRECT_FIRST_CONTENT,
  DIRECT_SEND_TIMEOUT,
  DIRECT_TIME_PER_TOKEN,
  readTimePerTokenMs,
} from '../shared/direct.js';

// limits.directStreams (issue 10, docs/ONE-HOP.md): the master's side of an
// answer the worker writes to the client itself. The worker's control bytes
// (shared/direct.ts) arrive in the body of the master's HTTP request to it
// (relay.ts) or in IPC call reports (direct-calls.ts); either way they come
// here. The master keeps what it owns: the timer (any report restarts it), the
// canary's facts, and the connection, which it ends without writing or, when
// the answer cannot be finished, cuts.

/**
 * The last control bytes of a direct answer: a stream's time per token (`~` µs `;`) if it has one, `E` if it failed,
 * then `=` and the bytes written.
 */
const DIRECT_END = new RegExp(`(?:${DIRECT_TIME_PER_TOKEN}(\\d{1,13});)?(${DIRECT_FAILED}?)${DIRECT_DONE}(\\d+)$`);

/** A direct answer's final report, read from the end of its control bytes; undefined when they have none. */
export function readDirectEnd(
  control: string,
): { isFailed: boolean; bytes: number; timePerTokenMs: number } | undefined {
  const end = DIRECT_END.exec(control);
  if (end === null) return undefined;
  return {
    isFailed: end[2] === DIRECT_FAILED,
    bytes: Number(end[3]),
    timePerTokenMs: end[1] === undefined ? NaN : readTimePerTokenMs(Number(end[1]) / 1000),
  };
}

export class DirectReport {
  readonly #ctx: RequestContext;
  readonly #now: () => number;
  /** The last control bytes, for the final `(~U;)?E?=N`. */
  #control = '';
  /** The connection was cut, or the client left: what the worker reports after that changes nothing. */
  #isOver = false;

  constructor(ctx: RequestContext, now: () => number) {
    this.#ctx = ctx;
    this.#now = now;
  }

  /** The worker must report within `ms` (0: no limit), and again within `ms` of each report; else `onTimeout`. */
  watch(ms: number, onTimeout: () => void): void {
    const ctx = this.#ctx;
    clearTimeout(ctx.workerTimer);
    ctx.workerTimer = ms > 0 ? setTimeout(onTimeout, ms) : undefined;
  }

  /** Cut, given up or stopped: nothing more from the worker counts. */
  get isOver(): boolean {
    return this.#isOver;
  }

  /** The master ends the answer itself (its refusal cuts the connection): nothing the worker reports counts now. */
  stop(): void {
    this.#isOver = true;
    clearTimeout(this.#ctx.workerTimer);
    this.#ctx.workerTimer = undefined;
  }

  /** Control bytes from the worker. */
  marks(text: string): void {
    const ctx = this.#ctx;
    if (this.#isOver) return;
    ctx.workerTimer?.refresh();
    if (ctx.firstContentAtMs === 0 && text.includes(DIRECT_FIRST_CONTENT)) ctx.firstContentAtMs = this.#now();
    if (text.includes(DIRECT_SEND_TIMEOUT)) return this.cut('send_timeout');
    if (text.includes(DIRECT_CLIENT_GONE)) {
      // The client left under the worker's writes: the master's own socket tells it so too, soon; nobody's error.
      this.stop();
      return cutDirect(ctx);
    }
    this.#control = (this.#control + text).slice(-48);
  }

  /**
   * The worker's last report arrived: the answer is with the client's kernel, or it was given up half-way.
   * `isLast`: the connection closes after it (the worker's answer said `Connection: close`; a draining master keeps it
   * open, so that a request pipelined behind the call gets its own 503 shutting_down).
   */
  end(status: number, isLast = false): void {
    const ctx = this.#ctx;
    clearTimeout(ctx.workerTimer);
    ctx.workerTimer = undefined;
    if (ctx.phase !== 'relay' || this.#isOver) return;
    const end = readDirectEnd(this.#control);
    // Ended without its final report: the worker gave up on the answer half-way (framing unknown).
    if (end === undefined) return this.cut('worker_error');
    if (end.isFailed) ctx.isStreamFailed = true;
    else ctx.timePerTokenMs = end.timePerTokenMs;
    ctx.directBytes = end.bytes;
    endUnwritten(ctx.res, status, isLast);
  }

  /** The worker died, or reset the master's request, before its last report. */
  lost(): void {
    const ctx = this.#ctx;
    if (ctx.phase === 'done' || this.#isOver) return;
    this.cut('worker_error');
  }

  /** The answer cannot be finished: the connection is cut (where the worker's framing stands is unknown). */
  cut(code: string): void {
    const ctx = this.#ctx;
    if (this.#isOver) return;
    this.stop();
    ctx.errorCode ??= code;
    if (code !== 'send_timeout') ctx.isStreamFailed = true;
    cutDirect(ctx);
    ctx.proxyReq?.destroy();
  }
}
