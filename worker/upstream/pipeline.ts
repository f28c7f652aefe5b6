import type { IncomingHttpHeaders } from 'node:http';
import { GraygateError, isGraygateError } from '../../shared/errors.js';
import type { CallOutput, ChatOutput, StreamState } from '../types.js';
import { EventDecoder } from '../sse/event-decoder.js';
import { LineDecoder } from '../sse/line-decoder.js';
import { codingProblem, isHtml, isMarkupStart, notEventStream, printable } from './answer-checks.js';
import { upstreamErrorIn, upstreamErrorOf, type UpstreamAdapter, type UpstreamRequest } from './format-adapter.js';
import { toUpstreamError, type UpstreamClient } from './client.js';
import { Deadlines } from './timeouts.js';
import type { UpstreamBody, UpstreamResponse } from './upstream-body.js';

// The pipeline of one upstream call (SPEC §5, §12), for every endpoint,
// streaming or not: the call, its body decoded incrementally (bytes → lines →
// events) and handed to a consumer (chat: OpenAI chunks; relays: the events
// or bytes as they are), whose output writes once per upstream chunk.
// Backpressure: when the output cannot take more, the body is paused, which
// makes undici stop reading the socket, until it is writable.

/** Longest `Retry-After` passed on, seconds (a day): an upstream's larger or absurd value is capped, never echoed. */
const MAX_RETRY_AFTER_S = 86_400;

/** Largest upstream error body read to find its message, bytes. */
export const MAX_ERROR_BODY_BYTES = 64 * 1024;
/**
 * How long an error answer's body is read after its head: its status is the answer, the body only its message. One
 * that never ended held the client's 429 until the call's first-byte deadline (2 min), or its total one for a whole
 * answer's call (10 min) (a hostile-upstream probe).
 */
const ERROR_BODY_MS = 5_000;

/** What reads the upstream's body. */
export interface BodyConsumer {
  /** How the body is framed: SSE events, one JSON document per line, or bytes taken as they come. */
  readonly framing: 'sse' | 'ndjson' | 'bytes';
  /** One SSE event (its `event:` type, `message` when absent) or one NDJSON line (type ''). Throws to fail the call. */
  event(type: string, data: string): void;
  /** `bytes` framing: one chunk of the body as it came. */
  body(chunk: Buffer): void;
  /** The body ended. Throws upstream_protocol_error when it ended before its final event. */
  end(): void;
  /**
   * The final event was read (`[DONE]`, `message_stop`, Ollama's `done`): the answer is complete whether or not the
   * upstream ends its body, and nothing after it is the client's. Absent: complete when the body ends.
   */
  isComplete?(): boolean;
  /**
   * `sse` framing, optional: a chunk of the body that starts and ends on event
   * boundaries, offered before it is decoded. True: taken whole as bytes (no
   * event() calls for it); false: it is decoded as usual. Must not change any
   * state when it answers false.
   */
  plainChunk?(chunk: Buffer): boolean;
}

/**
 * A chat call's consumer: the adapter's converter into OpenAI chunks, complete once the upstream sent its final event.
 */
export function chatConsumer(adapter: UpstreamAdapter, state: StreamState, output: ChatOutput): BodyConsumer {
  return {
    framing: adapter.framing,
    event: (type, data) => adapter.convertEvent(state, type, data, output),
    body: () => undefined,
    end() {
      if (state.isDone || state.finishes.isComplete) return;
      if (adapter.convertEnd === undefined)
        throw new GraygateError('upstream_protocol_error', 'the upstream response ended before its final event');
      adapter.convertEnd(state, output);
    },
    isComplete: () => state.isDone,
  };
}

export interface PipelineOptions {
  client: UpstreamClient;
  request: UpstreamRequest;
  consumer: BodyConsumer;
  output: CallOutput;
  /** Aborted when the client goes away. */
  signal: AbortSignal;
  timeouts: { connectMs: number; firstByteMs: number; idleMs: number; totalMs: number };
  /** Bound on one line / one event, bytes (upstream.maxEventBytes). */
  maxEventBytes: number;
  /** Silence before a `: ping`, ms; 0 disables. */
  pingIntervalMs: number;
  /** The upstream's response headers, any status, before its body is read. */
  onResponse?: (headers: Record<string, string | string[] | undefined>) => void;
}

export interface PipelineStats {
  /** Body bytes read from the upstream. */
  upstreamBytes: number;
  /**
   * Highest count of upstream body bytes read but not yet consumed: the chunk being consumed plus what the body held
   * (before its reader started, or read ahead of a paused reader: none for a chunked answer, 64 KiB for any other;
   * upstream-body.ts).
   */
  peakUpstreamBufferedBytes: number;
}

const NO_BODY = Buffer.alloc(0);

/**
 * After its final event, how long an upstream may take to end its body before the request is aborted, ms. The answer
 * is already complete for the client; waiting lets the connection be reused (the body's end usually comes in the same
 * read, else the next), and bounds what a body kept open holds of the pool (client.ts MAX_LINGERING_BODIES).
 */
const AFTER_FINAL_EVENT_MS = 1000;

/**
 * Hands the request to the upstream client, body included: the prepared request lets go of its body
 * (the caller's PreparedCall holds it for the stream's whole life), and the client writes it without
 * keeping it (client.ts). Not async, so no suspended frame holds the body either.
 */
function send(
  client: UpstreamClient,
  request: UpstreamRequest,
  signal: AbortSignal,
  firstByteMs: number,
): Promise<UpstreamResponse> {
  const { body, method = 'POST' } = request;
  request.body = NO_BODY;
  const { path, headers } = request;
  // GET and DELETE carry no body, nor a `Content-Length: 0`.
  return client.request({ method, path, headers, body: method === 'POST' ? body : undefined, signal, firstByteMs });
}

/** Runs the call to its end. Resolves when the upstream finished; rejects with a catalogued error. */
export async function runPipeline(options: PipelineOptions, stats: PipelineStats): Promise<void> {
  // An upstream asked for a whole answer (framing `bytes`: non-streamed relays, answers converted whole) sends its
  // headers when the answer is done, minutes later for a long generation: only the total deadline applies to it.
  const timeouts =
    options.consumer.framing === 'bytes'
      ? { ...options.timeouts, firstByteMs: options.timeouts.totalMs }
      : options.timeouts;
  if (options.signal.aborted) throw options.signal.reason;
  const deadlines = new Deadlines({
    signal: options.signal,
    firstByteMs: timeouts.firstByteMs,
    idleMs: timeouts.idleMs,
    totalMs: timeouts.totalMs,
  });
  let hasResponse = false;
  const explain = (err: unknown): unknown => toUpstreamError(deadlines.explain(err), { hasResponse, ...timeouts });
  try {
    let response;
    try {
      response = await send(options.client, options.request, deadlines.signal, timeouts.firstByteMs);
    } catch (err) {
      throw explain(err);
    }
    hasResponse = true;
    options.onResponse?.(response.headers);
    if (response.statusCode < 200 || response.statusCode >= 300) {
      throw await readStatusError(response.statusCode, response.headers, response.body, MAX_ERROR_BODY_BYTES).catch(
        (err: unknown) => {
          throw explain(err);
        },
      );
    }
    const coding = codingProblem(response.headers);
    if (coding !== undefined) {
      response.body.destroy();
      throw new GraygateError('upstream_protocol_error', `the upstream answered ${coding}`);
    }
    if (options.consumer.framing === 'sse' && isJson(response.headers['content-type'])) {
      // Asked for a stream, answered JSON: an error some servers send with 200, or a server that does not stream.
      throw await readJsonInsteadOfStream(response.body).catch((err: unknown) => {
        throw explain(err);
      });
    }
    // A captive portal's or a proxy's page with 200: named by its first bytes, not "ended before its final event".
    const isPage = options.consumer.framing === 'sse' && isHtml(response.headers['content-type']);
    await pump(response.body, options, deadlines, stats, explain, isPage);
  } finally {
    deadlines.dispose();
  }
}

function pump(
  body: UpstreamBody,
  options: PipelineOptions,
  deadlines: Deadlines,
  stats: PipelineStats,
  explain: (err: unknown) => unknown,
  isPage: boolean,
): Promise<void> {
  const { consumer, output, client } = options;
  const isComplete = consumer.isComplete?.bind(consumer);
  // Events decoded with the final one, from the same upstream chunk, come after the answer's end: not the client's.
  const event =
    isComplete === undefined
      ? (type: string, data: string): void => consumer.event(type, data)
      : (type: string, data: string): void => {
          if (!isComplete()) consumer.event(type, data);
        };
  let events: EventDecoder | undefined;
  let lines: { push(chunk: Buffer): void; end(): void };
  if (consumer.framing === 'sse') {
    const decoder = new EventDecoder({
      onEvent: event,
      maxEventBytes: options.maxEventBytes,
    });
    events = decoder;
    const lineDecoder = new LineDecoder({ onLine: (line) => decoder.line(line), maxLineBytes: options.maxEventBytes });
    const plainChunk = consumer.plainChunk?.bind(consumer);
    const maxPlainBytes = options.maxEventBytes;
    // Issue 10: a chunk of whole plain events skips decoding; one that starts or ends mid-event, or holds anything
    // else, is decoded, as is one longer than an event may be (the decoders enforce maxEventBytes).
    lines =
      plainChunk === undefined
        ? lineDecoder
        : {
            push: (chunk) => {
              if (!(chunk.length <= maxPlainBytes && lineDecoder.isIdle && decoder.isIdle && plainChunk(chunk)))
                lineDecoder.push(chunk);
            },
            end: () => lineDecoder.end(),
          };
  } else if (consumer.framing === 'ndjson') {
    lines = new LineDecoder({ onLine: (line) => event('', line), maxLineBytes: options.maxEventBytes });
  } else {
    lines = { push: (chunk) => consumer.body(chunk), end: () => undefined };
  }
  if (isPage) lines = pageSniffer(lines);

  return new Promise<void>((resolve, reject) => {
    let isSettled = false;
    let disposeWritable: (() => void) | undefined;
    let ping: NodeJS.Timeout | undefined;
    const onSilence = (): void => {
      output.ping();
      ping?.refresh(); // documented to re-arm a timer that has fired
    };
    const armPing = (): void => {
      if (options.pingIntervalMs > 0) ping = setTimeout(onSilence, options.pingIntervalMs);
    };
    armPing();
    const settle = (err: unknown): void => {
      if (isSettled) return;
      isSettled = true;
      clearTimeout(ping);
      disposeWritable?.();
      if (err === undefined) return resolve();
      body.destroy(); // aborts the upstream request (undici closes that connection); a no-op once the body ended
      reject(explain(err));
    };
    const resume = (): void => {
      disposeWritable = undefined;
      deadlines.resume();
      armPing();
      body.resume();
    };
    /** The final event was read: the answer ends now; the body gets a while to end, so its connection is kept. */
    const complete = (): void => {
      output.flush();
      settle(undefined);
      if (body.isEnded) return;
      if (!client.lingerStart()) return void body.destroy();
      const abort = setTimeout(() => body.destroy(), AFTER_FINAL_EVENT_MS).unref();
      body.onClose(() => {
        clearTimeout(abort);
        client.lingerEnd();
      });
    };
    const data = (chunk: Buffer): void => {
      // Chunks after the final event (a lingering body read to its end): not the client's.
      if (isSettled) return;
      stats.upstreamBytes += chunk.length;
      const held = body.heldBytes + chunk.length;
      if (held > stats.peakUpstreamBufferedBytes) stats.peakUpstreamBufferedBytes = held;
      deadlines.onBytes();
      // The ping keeps the client (and the master's timers) informed, so it restarts on what the client got, not on
      // upstream bytes: Anthropic's `ping` events and thinking deltas produce nothing for the client, and a reasoning
      // model can send them for minutes before its first content.
      const sentBefore = output.bytesOut;
      try {
        lines.push(chunk);
      } catch (err) {
        // After the final event, what follows in the same chunk is not read: it cannot fail a finished answer.
        if (isComplete?.() === true) return complete();
        // Events before the bad one were valid: the client gets them, then the error.
        output.flush();
        return settle(asConsumerError(err));
      }
      if (isComplete?.() === true) return complete();
      const isWritable = output.flush();
      if (output.bytesOut !== sentBefore) ping?.refresh();
      if (!isWritable) {
        // The client is the slow side: stop reading the upstream until its response is writable again.
        body.pause();
        deadlines.pause();
        clearTimeout(ping);
        ping = undefined;
        disposeWritable = output.onWritable(resume);
      }
    };
    const end = (): void => {
      if (isSettled) return; // complete at its final event
      try {
        lines.end();
        events?.end();
        consumer.end();
      } catch (err) {
        output.flush();
        return settle(asConsumerError(err));
      }
      output.flush();
      settle(undefined);
    };
    body.read({ data, end, error: settle });
  });
}

/** `lines` behind a look at the first bytes of a body said to be text/html (answer-checks.ts isMarkupStart). */
function pageSniffer(lines: { push(chunk: Buffer): void; end(): void }): { push(chunk: Buffer): void; end(): void } {
  let isRead = false;
  return {
    push: (chunk) => {
      if (!isRead) {
        const isMarkup = isMarkupStart(chunk);
        if (isMarkup === true) throw notEventStream(chunk);
        isRead = isMarkup === false;
      }
      lines.push(chunk);
    },
    end: () => lines.end(),
  };
}

/**
 * What a consumer threw: its catalogued errors as they are; anything else (a TypeError on valid JSON of a shape no
 * converter expects) is the upstream's malformed answer, not a connection reset.
 */
function asConsumerError(err: unknown): unknown {
  if (isGraygateError(err)) return err;
  // A stack overflow: JSON a converter walks (JSON.stringify of Ollama's tool-call arguments) nested thousands deep.
  if (err instanceof RangeError && err.message.includes('call stack'))
    return new GraygateError('upstream_protocol_error', 'the upstream sent JSON nested too deep to convert', {
      cause: err,
    });
  const detail = err instanceof Error ? `: ${err.message}` : '';
  return new GraygateError('upstream_protocol_error', `the upstream sent an event of an unexpected shape${detail}`, {
    cause: err,
  });
}

function isJson(contentType: string | string[] | undefined): boolean {
  return typeof contentType === 'string' && /^application\/json\b/i.test(contentType.trimStart());
}

/**
 * A JSON body where an event stream was asked for: its `error`'s message as upstream_status (502), or
 * upstream_protocol_error naming what came; never "ended before its final event" with the upstream's message lost.
 */
async function readJsonInsteadOfStream(body: UpstreamBody): Promise<GraygateError> {
  const text = await readBounded(body, MAX_ERROR_BODY_BYTES);
  return (
    upstreamErrorIn(text) ??
    new GraygateError(
      'upstream_protocol_error',
      'the upstream answered a streaming request with JSON, not an event stream',
    )
  );
}

/** A non-2xx upstream answer → upstream_status with the upstream's status (4xx/429 kept, others 502) and message. */
export async function readStatusError(
  status: number,
  headers: IncomingHttpHeaders,
  body: Pick<UpstreamBody, 'readAll' | 'destroy'>,
  maxBytes: number,
): Promise<GraygateError> {
  // A compressed body (asked for none) is not read as text: its bytes would be the message.
  const coding = codingProblem(headers);
  // The status is the answer, its body only the message: one cut short (a reset, a deadline, ERROR_BODY_MS) is what
  // came of it, never the status lost (a 429 whose body a proxy left short became a 502 upstream_reset, its
  // Retry-After gone).
  const late = setTimeout(() => body.destroy(new Error('the error body took too long')), ERROR_BODY_MS);
  let text: string;
  try {
    text = await readBounded(body, coding === undefined ? maxBytes : 1, true);
  } finally {
    clearTimeout(late);
  }
  const retryAfter =
    retryAfterSeconds(headers['retry-after'], Date.now()) ?? retryAfterMsAsSeconds(headers['retry-after-ms']);
  // OpenAI's hint to its SDKs (a 429 for an exhausted quota says false), passed on.
  const shouldRetry = headers['x-should-retry'];
  // SPEC §4/§5: 429 and 4xx pass through with their meaning (the upstream's own type, code and param when it gives
  // them); anything else is a bad gateway, graygate's.
  const isPassed = status >= 400 && status < 500;
  const { message, reported } = upstreamErrorOf(text);
  const said = coding !== undefined ? `its body sent ${coding}` : message;
  // A redirect is not followed (a wrong `/v1` or http for https in upstream.url, mostly): where it pointed says which.
  const location =
    status >= 300 && status < 400 && headers.location !== undefined
      ? ` (Location: ${printable(headers.location)})`
      : '';
  return new GraygateError('upstream_status', `upstream answered ${status}${location}: ${said}`, {
    status: isPassed ? status : 502,
    ...(reported === undefined || !isPassed ? {} : { reported }),
    ...(retryAfter === undefined ? {} : { retryAfterS: retryAfter }),
    ...(shouldRetry === 'true' || shouldRetry === 'false' ? { shouldRetry: shouldRetry === 'true' } : {}),
  });
}

/** OpenAI's `retry-after-ms` (milliseconds), rounded up to whole seconds; undefined when absent or not a number. */
function retryAfterMsAsSeconds(value: string | string[] | undefined): number | undefined {
  if (typeof value !== 'string' || !/^\d{1,12}$/.test(value.trim())) return undefined;
  return Math.min(Math.ceil(Number(value) / 1000), MAX_RETRY_AFTER_S);
}

/** The body's first `maxBytes` as text; the rest is not read (the body is destroyed). `isCutKept`: see readAll. */
async function readBounded(body: Pick<UpstreamBody, 'readAll'>, maxBytes: number, isCutKept = false): Promise<string> {
  return (await body.readAll(maxBytes, isCutKept)).toString('utf8', 0, maxBytes);
}

/**
 * An upstream's `Retry-After` in seconds (RFC 9110 §10.2.3): delay-seconds, or an HTTP-date (a date in the past is
 * 0); undefined when absent or neither.
 */
export function retryAfterSeconds(value: string | string[] | undefined, nowMs: number): number | undefined {
  if (typeof value !== 'string') return undefined;
  const text = value.trim();
  if (/^\d{1,12}$/.test(text)) return Math.min(Number(text), MAX_RETRY_AFTER_S);
  const atMs = /[a-z]/i.test(text) ? Date.parse(text) : NaN;
  return Number.isNaN(atMs) ? undefined : Math.min(Math.max(0, Math.ceil((atMs - nowMs) / 1000)), MAX_RETRY_AFTER_S);
}
