import type { IncomingMessage } from 'node:http';
import { GraygateError } from '../shared/errors.js';
import { isEventStream, withoutHopByHop } from '../shared/http-headers.js';
import type { RequestContext } from './request-context.js';
import { DirectReport } from './direct-report.js';
import { DIRECT_HEADER, STREAM_FAILED_TRAILER, TIME_PER_TOKEN_TRAILER, readTimePerTokenMs } from '../shared/direct.js';
import { drainTarget, writeChunk } from '../shared/chunked-write.js';
import { SequenceNumbers } from './sequence-numbers.js';
import { isResponsesPath } from '../shared/model-calls.js';

// The worker's response → the client (SPEC §4, §4a). One listener per
// request, nothing allocated per chunk but its framing: each chunk restarts the idle timer
// (Timeout#refresh), is written as it came (one write, one syscall), and on
// an SSE stream is scanned for two facts the canary judges on (SPEC §11):
// when the first content event went out, and whether the stream ended with
// an error event. When the client is the slow side the worker is paused and
// the idle timer gives way to the send timer: a client that reads nothing for
// sendTimeoutMs is cut (nginx send_timeout), or it would hold its worker slot,
// and its upstream call, for as long as it keeps the connection open.

export interface RelayHooks {
  /** Monotonic clock, ms. */
  now(): number;
  /** True while the master drains: responses get `Connection: close`. */
  isClosing(): boolean;
  /** The pipeline's one refusal function: error response, or SSE error event once streaming. */
  refuse(ctx: RequestContext, err: unknown): void;
  /** The worker's response headers arrived (latency metric). */
  onHeaders(ctx: RequestContext): void;
  /** The request body has been handed to the worker's socket: the master lets go of it. */
  onBodySent(ctx: RequestContext): void;
}

// What the worker writes (worker/sse): `data: {…"delta":{"content":"…` for
// chat, `"text":"` for legacy completions, `"delta":"` for Responses API text
// events, `"tool_calls":[` for tool calls, `"reasoning_content":"` and
// `"reasoning":"` for a reasoning model's thinking (a Responses stream's
// reasoning summaries are `"delta":"` too). An empty string (the role chunk's
// `"content":""`) is not content. The keys are matched with their opening quote.
const CONTENT_KEYS = [
  Buffer.from('"content":"'),
  Buffer.from('"text":"'),
  Buffer.from('"delta":"'),
  Buffer.from('"reasoning_content":"'),
  Buffer.from('"reasoning":"'),
];
const TOOL_CALLS_KEY = Buffer.from('"tool_calls":[');
const FIRST_CONTENT_KEYS = [...CONTENT_KEYS, TOOL_CALLS_KEY];
const QUOTE = 0x22;
/**
 * The final event of a stream that failed after its status: graygate's (shared/errors.ts toSseErrorEvent; on a
 * Responses stream toResponsesErrorEvent, as an upstream's own Responses error is) and a Responses upstream's
 * `response.failed`.
 */
const ERROR_EVENTS = [
  Buffer.from('data: {"error":'),
  // A Responses event's name line, which the worker writes as the upstream named it (the `type` inside may come
  // last, as servers that build their events from openai-python's types write it).
  Buffer.from('event: error\n'),
  Buffer.from('event: response.failed\n'),
  // And one with no name line, its `type` first.
  Buffer.from('data: {"type":"error"'),
  Buffer.from('data: {"type":"response.failed"'),
];
const LONGEST_ERROR_EVENT = Math.max(...ERROR_EVENTS.map((e) => e.length));
const CR = 0x0d;
const LF = 0x0a;

/**
 * True when a content key begins in the last `previousLength` bytes of `previous` and ends in `chunk` (the reads cut
 * it: a client that reads slowly makes the master read the worker in pieces cut anywhere), followed by what makes it
 * content. Each key's cuts compared in place, with no allocation.
 */
export function spansContentKey(
  previous: Buffer | undefined,
  chunk: Buffer,
  previousLength = previous?.length ?? 0,
): boolean {
  if (previous === undefined) return false;
  for (const key of FIRST_CONTENT_KEYS) {
    // Up to the whole key in `previous`: a text key's content then begins in this chunk.
    for (let cut = 1; cut <= key.length; cut++) {
      const rest = key.length - cut;
      if (previousLength < cut || chunk.length < rest) continue;
      if (previous.compare(key, 0, cut, previousLength - cut, previousLength) !== 0) continue;
      if (chunk.compare(key, cut, key.length, 0, rest) !== 0) continue;
      // A tool call's key is content; a text key only with a character after its opening quote (that quote ends the
      // key, so what follows is in this chunk; a chunk that ends with the key waits for the next one's seam).
      if (key === TOOL_CALLS_KEY || (rest < chunk.length && chunk[rest] !== QUOTE)) return true;
    }
  }
  return false;
}

/** True when `chunk` holds a content-bearing event (non-empty text, or tool calls). */
export function hasContentEvent(chunk: Buffer): boolean {
  for (const key of CONTENT_KEYS) {
    let at = chunk.indexOf(key);
    while (at !== -1) {
      const next = at + key.length;
      if (next < chunk.length && chunk[next] !== QUOTE) return true;
      at = chunk.indexOf(key, next);
    }
  }
  return chunk.indexOf(TOOL_CALLS_KEY) !== -1;
}

const LONGEST_CONTENT_KEY = Math.max(...FIRST_CONTENT_KEYS.map((key) => key.length));

/**
 * Whether a stream's reads, pushed as they come, have held its first content event: in one read, or across the
 * reads' seams. The seam is the last bytes of everything read so far, not of the last read only, so a key cut over
 * three or more reads (a read of a byte or two in its middle, or one that is only the key's end) is found as its
 * content begins. Kept in one buffer of a key's length, in place: nothing allocated per read.
 */
export class FirstContent {
  // A slice of node's pool (allocUnsafe, under half its size), not an ArrayBuffer of its own a stream: only the
  // #length bytes written are read.
  readonly #tail = Buffer.allocUnsafe(LONGEST_CONTENT_KEY);
  #length = 0;

  /** True when `chunk` holds, or with the reads before it completes, a content-bearing event. */
  push(chunk: Buffer): boolean {
    if (hasContentEvent(chunk) || spansContentKey(this.#tail, chunk, this.#length)) return true;
    const n = chunk.length;
    const size = this.#tail.length;
    if (n >= size) {
      chunk.copy(this.#tail, 0, n - size);
      this.#length = size;
      return false;
    }
    const kept = Math.min(this.#length, size - n);
    this.#tail.copyWithin(0, this.#length - kept, this.#length);
    chunk.copy(this.#tail, kept);
    this.#length = kept + n;
    return false;
  }
}

/**
 * The first bytes of the last event a relayed stream began, kept as its chunks pass, so that its end can tell whether
 * that event is the error event a failed stream ends with. The event may span many reads: a Responses upstream's
 * `response.failed` echoes the response so far (up to maxEventBytes), graygate's own error event quotes up to 8,192
 * characters of the upstream's message, and a client that reads slowly makes the master read the worker in 64 KiB
 * pieces cut anywhere. The last two chunks with a seam of a few bytes (as it was) missed every such event whose start
 * was further from the last read: the failed stream counted as a success, for the canary too (a probe).
 */
export class LastEventHead {
  // Pooled, as FirstContent's: only the #length bytes written are read.
  readonly #head = Buffer.allocUnsafe(LONGEST_ERROR_EVENT);
  #length = 0;
  /**
   * The line ends (0, 1, or 2: an event ended) of the run of CR and LF bytes that ended the chunks so far, and whether
   * it ended in a CR (an LF next is the same line end). Events may be framed with CRLF or CR (a worker `entry` is any
   * module; SSE reads all three), as endsAtEventBoundary allows. The stream starts as after an event.
   */
  #endingBreaks = 2;
  #isAfterCR = false;

  push(chunk: Buffer): void {
    const n = chunk.length;
    if (n === 0) return;
    const start = this.#lastStart(chunk);
    if (start !== -1) this.#length = 0;
    if (this.#length < this.#head.length) {
      const from = start === -1 ? 0 : start;
      this.#length += chunk.copy(this.#head, this.#length, from, from + this.#head.length - this.#length);
    }
    // The run of line-end bytes the chunk ends with, joined to the one before when it is the whole chunk.
    let first = n;
    while (first > 0 && isLineEndByte(chunk[first - 1]!)) first--;
    if (first > 0) {
      this.#endingBreaks = 0;
      this.#isAfterCR = false;
    }
    this.#endingBreaks = Math.min(2, this.#endingBreaks + this.#breaks(chunk, first, n, first === 0));
    if (first < n) this.#isAfterCR = chunk[n - 1] === CR;
  }

  /** Where the last event that begins in `chunk` (with a byte of it there) begins; -1 when none does. */
  #lastStart(chunk: Buffer): number {
    let i = chunk.length - 1;
    // The run the chunk ends with has no byte after it here: the next chunk's start says.
    while (i >= 0 && isLineEndByte(chunk[i]!)) i--;
    // The last LF and CR at or before i, each searched again only once passed: each byte is looked at once per kind
    // (native searches: most of a chunk is an event's text; a worker that frames with LF has no CR to find).
    let lastLF = i < 0 ? -1 : chunk.lastIndexOf(LF, i);
    let lastCR = i < 0 ? -1 : chunk.lastIndexOf(CR, i);
    while (i >= 0) {
      if (lastLF > i) lastLF = chunk.lastIndexOf(LF, i);
      if (lastCR > i) lastCR = chunk.lastIndexOf(CR, i);
      const end = Math.max(lastLF, lastCR);
      if (end === -1) break;
      let first = end;
      while (first > 0 && isLineEndByte(chunk[first - 1]!)) first--;
      const carried = first === 0 ? this.#endingBreaks : 0;
      if (carried + this.#breaks(chunk, first, end + 1, first === 0) >= 2) return end + 1;
      i = first - 1;
    }
    // No line-end byte before the chunk's first other byte: it begins an event if the chunks before ended one.
    return isLineEndByte(chunk[0]!) || this.#endingBreaks < 2 ? -1 : 0;
  }

  /** Line ends in chunk[from, to), all CR or LF (CRLF is one); an LF first after a carried CR is that CR's. */
  #breaks(chunk: Buffer, from: number, to: number, isJoined: boolean): number {
    let count = 0;
    let j = from;
    if (isJoined && this.#isAfterCR && j < to && chunk[j] === LF) j++;
    // Two are an empty line: enough to know (a run of 64 KiB of line ends is not counted through).
    while (j < to && count < 2) {
      j += chunk[j] === CR && j + 1 < to && chunk[j + 1] === LF ? 2 : 1;
      count++;
    }
    return count;
  }

  /** The last event begun is the final error event of a failed stream. */
  get isErrorEvent(): boolean {
    const head = this.#head.subarray(0, this.#length);
    return ERROR_EVENTS.some((event) => {
      if (head.length < event.length) return false;
      // A name line may end in CR (CRLF or CR framing), where the event's text ends it in LF.
      const last = event.length - 1;
      if (event[last] === LF) return head.compare(event, 0, last, 0, last) === 0 && isLineEndByte(head[last]!);
      return head.subarray(0, event.length).equals(event);
    });
  }
}

function isLineEndByte(byte: number): boolean {
  return byte === LF || byte === CR;
}

/**
 * Whether what was relayed of a stream ends where an event ends (a blank line: its last line end follows another), so
 * that an event written next is read as one of its own; `previous` and `last` are its last two chunks. A stream cut in
 * the middle of an event is not: an error event after it would be read as the rest of that event's data, which no
 * client parses (SDKs throw a JSON SyntaxError and never see the error). Nothing relayed yet is a boundary.
 */
export function endsAtEventBoundary(previous: Buffer | undefined, last: Buffer | undefined): boolean {
  if (last === undefined) return true;
  const tail =
    last.length >= 4 || previous === undefined
      ? last.subarray(-4)
      : Buffer.concat([previous.subarray(-(4 - last.length)), last]);
  let end = tail.length;
  // One line end (CRLF, LF or CR, as SSE reads them), then another before it: the line it ended was empty.
  if (end >= 2 && tail[end - 2] === CR && tail[end - 1] === LF) end -= 2;
  else if (end >= 1 && (tail[end - 1] === LF || tail[end - 1] === CR)) end -= 1;
  else return false;
  return end >= 1 && (tail[end - 1] === LF || tail[end - 1] === CR);
}

/** The first value of the trailer `name` (lower case) in node's raw trailers; undefined without it. */
function trailerOf(rawTrailers: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < rawTrailers.length; i += 2)
    if (rawTrailers[i]!.toLowerCase() === name) return rawTrailers[i + 1];
  return undefined;
}

/** The worker said the stream failed (its trailer, which is not relayed). */
export function isFailedByTrailer(rawTrailers: readonly string[]): boolean {
  return trailerOf(rawTrailers, STREAM_FAILED_TRAILER) === '1';
}

/** The worker's time per token of a stream (its trailer, which is not relayed); NaN when it sent none. */
export function timePerTokenOf(rawTrailers: readonly string[]): number {
  const text = trailerOf(rawTrailers, TIME_PER_TOKEN_TRAILER);
  return text !== undefined && /^\d{1,10}(\.\d{1,3})?$/.test(text) ? readTimePerTokenMs(Number(text)) : NaN;
}

export function relayResponse(
  ctx: RequestContext,
  proxyRes: IncomingMessage,
  timeouts: { idleMs: number; sendMs: number },
  hooks: RelayHooks,
): void {
  const { idleMs, sendMs } = timeouts;
  const { res } = ctx;
  clearTimeout(ctx.workerTimer);
  ctx.workerTimer = undefined;
  if (ctx.phase === 'done') {
    proxyRes.destroy();
    return;
  }
  // A status node's writeHead refuses (a worker build's `HTTP/1.1 000`: node's parser reads any three digits) threw
  // here, in the proxy's listener, and ended the master (a probe's hostile build). A 502 instead, as for a reset.
  const status = proxyRes.statusCode ?? 0;
  if (status < 100) {
    proxyRes.destroy();
    hooks.refuse(ctx, new GraygateError('worker_error', `the worker answered with status ${status}`));
    return;
  }
  ctx.phase = 'relay';
  ctx.proxyRes = proxyRes;
  ctx.headersAtMs = hooks.now();
  hooks.onHeaders(ctx);

  if (ctx.isDirectOffered && proxyRes.headers[DIRECT_HEADER] === '1') {
    relayDirect(ctx, proxyRes, idleMs, hooks);
    return;
  }

  const headers = withoutHopByHop(proxyRes.headers);
  if (hooks.isClosing()) headers['connection'] = 'close';
  ctx.isEventStream = isEventStream(headers['content-type']);
  res.writeHead(status, headers);

  const armIdle = (): void => {
    if (idleMs > 0) ctx.workerTimer = setTimeout(onIdleTimeout, idleMs, ctx, hooks);
  };
  let isEnded = false;
  /** The client's socket outlives the response: a `drain` listener left on it is taken off at the response's close. */
  let isCloseWatched = false;
  const onDrain = (): void => {
    // On the client's socket, which outlives the response: a drain after the response ended is not this one's.
    if (ctx.phase !== 'relay') return;
    clearTimeout(ctx.workerTimer);
    ctx.workerTimer = undefined;
    // The worker is done; what is left must reach the client within sendTimeoutMs of its last progress.
    if (isEnded) return void (ctx.workerTimer = setTimeout(onSendTimeout, sendMs, ctx));
    armIdle();
    proxyRes.resume();
  };
  const socket = res.socket;
  const lastEvent = ctx.isEventStream ? new LastEventHead() : undefined;
  const firstContent = ctx.isEventStream ? new FirstContent() : undefined;
  // Only a Responses stream numbers its events, and so must the master's error event (request-end.ts).
  if (ctx.isEventStream && isResponsesPath(ctx.forwardPath)) ctx.sequenceNumbers = new SequenceNumbers();
  const onData = (chunk: Buffer): void => {
    ctx.workerTimer?.refresh();
    if (ctx.isEventStream) {
      if (ctx.firstContentAtMs === 0 && firstContent?.push(chunk) === true) ctx.firstContentAtMs = hooks.now();
      ctx.previousChunk = ctx.lastChunk;
      ctx.lastChunk = chunk;
      lastEvent?.push(chunk);
      ctx.sequenceNumbers?.push(chunk);
    }
    // One write, one syscall: framed by node:http the first time (its head goes with it), then by us.
    const isReady = writeChunk(res, chunk);
    if (isReady) return;
    // The client is the slow side: stop reading the worker until it drains, within sendTimeoutMs.
    proxyRes.pause();
    clearTimeout(ctx.workerTimer);
    ctx.workerTimer = setTimeout(onSendTimeout, sendMs, ctx);
    const target = drainTarget(res);
    target.once('drain', onDrain);
    if (isCloseWatched) return;
    // Ended another way while waiting (refused, cut, the client gone): the listener goes with the response.
    isCloseWatched = true;
    res.once('close', () => target.off('drain', onDrain));
  };
  armIdle();
  proxyRes.on('data', onData);
  proxyRes.once('end', () => {
    isEnded = true;
    clearTimeout(ctx.workerTimer);
    ctx.workerTimer = undefined;
    if (ctx.isEventStream) {
      if (lastEvent?.isErrorEvent === true || isFailedByTrailer(proxyRes.rawTrailers)) ctx.isStreamFailed = true;
      else if (proxyRes.rawTrailers.length > 0) ctx.timePerTokenMs = timePerTokenOf(proxyRes.rawTrailers);
    }
    if (!res.writableEnded) res.end();
    // What the kernel did not take must reach the client within sendTimeoutMs, or a client that stopped reading
    // near the end (its kernel buffers full, less than a high-water mark in ours) would hold the request for
    // ever. Usually nothing is left and no timer is made; the response's finish (request-end.ts) clears one.
    if ((socket?.writableLength ?? 0) > 0) ctx.workerTimer = setTimeout(onSendTimeout, sendMs, ctx);
  });
  proxyRes.once('close', () => {
    if (proxyRes.complete || res.writableEnded || ctx.phase === 'done') return;
    // The worker died or reset mid-response: end the client's stream, never hang (SPEC §4).
    hooks.refuse(ctx, new GraygateError('worker_error', 'the worker stopped in the middle of the response'));
  });
}

/**
 * limits.directStreams: the worker writes the answer to the client itself and sends the master control bytes
 * (shared/direct.ts) as the body of its response; direct-report.ts reads them.
 */
function relayDirect(ctx: RequestContext, proxyRes: IncomingMessage, idleMs: number, hooks: RelayHooks): void {
  ctx.isEventStream = true;
  const status = proxyRes.statusCode ?? 200;
  ctx.res.statusCode = status; // what the client got, for the log line and the canary, however the answer ends
  ctx.isDirect = true;
  const report = new DirectReport(ctx, () => hooks.now());
  report.watch(idleMs, () => report.cut('worker_timeout'));
  proxyRes.setEncoding('latin1');
  proxyRes.on('data', (text: string) => report.marks(text));
  proxyRes.once('end', () => report.end(status));
  proxyRes.once('close', () => {
    // The worker died or reset mid-answer.
    if (!proxyRes.complete) report.lost();
  });
}

function onSendTimeout(ctx: RequestContext): void {
  ctx.workerTimer = undefined;
  if (ctx.phase !== 'relay') return;
  // Nothing more can reach this client (it reads nothing, an error event included): close its connection. The
  // response's close then ends the request as a client that left does (request-end.ts finish).
  ctx.errorCode = 'send_timeout';
  ctx.res.destroy();
}

function onIdleTimeout(ctx: RequestContext, hooks: RelayHooks): void {
  ctx.workerTimer = undefined;
  if (ctx.phase !== 'relay') return;
  hooks.refuse(ctx, new GraygateError('worker_timeout', 'the worker sent nothing within workerIdleTimeoutMs'));
}
