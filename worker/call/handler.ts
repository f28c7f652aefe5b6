import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomFillSync } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { cutText, toErrorResponse } from '../../shared/errors.js';
import { headerValue, sendError } from '../../shared/http-headers.js';
import type { Logger } from '../../shared/log.js';
import type { UpstreamConfig } from '../../shared/config.js';
import type { Disposer } from '../../shared/abort.js';
import { readBody } from '../../shared/body.js';
import type { EndpointKind } from '../types.js';
import { tokenCount, withoutSecrets, type UpstreamAdapter } from '../upstream/format-adapter.js';
import type { UpstreamClient } from '../upstream/client.js';
import { runPipeline, type PipelineStats } from '../upstream/pipeline.js';
import { upstreamErrorKind, type WorkerMetrics } from '../metrics.js';
import type { RequestPreparer } from './preparer.js';
import type { PreparedCall } from './prepare.js';
import type { CallResponse, OpenedCall } from './call-response.js';
import { openCall } from './open-call.js';
import { startProcessingPings } from './processing-pings.js';
import { DIRECT_HEADER, readDirectOffer } from '../../shared/direct.js';
import { WAITED_HEADER, waitedMs } from '../../shared/ipc.js';
import type { DirectConnections } from '../direct/connections.js';
import { takeCallBody, type DirectRoute } from '../direct/direct-answer.js';
import type { ByteBudget } from '../../shared/byte-budget.js';
import type { AnswerShare } from './answer-share.js';

// Every POST endpoint that calls the upstream (SPEC §5, §12): chat
// completions, embeddings, legacy completions, responses. One lifecycle for
// all: read and prepare the body, call the upstream with the version's
// timeouts, the client leaving aborting it (SPEC §5), answer streamed or
// whole, feed the metrics once, and log one line when done (SPEC §9).

export interface CallHandlerOptions {
  /** The version's converter: its events → OpenAI chunks. */
  adapter: UpstreamAdapter;
  /** Body → upstream request (validation and conversion, off the event loop for large bodies). */
  preparer: RequestPreparer;
  client: UpstreamClient;
  upstream: UpstreamConfig;
  /** limits.maxBodyBytes. */
  maxBodyBytes: number;
  /** limits.maxBufferedAnswerBytes: what all answers held whole (not streamed) may hold at once. */
  answers: ByteBudget;
  /** Between two `102 Processing` while nothing has gone out (processing-pings.ts): a third of the master's wait. */
  processingPingMs: number;
  log: Logger;
  /** This worker's metrics (SPEC §9): fed once per request, never per chunk. */
  metrics: WorkerMetrics;
  /** limits.directStreams: the client connections the master handed this worker. */
  connections?: DirectConnections | undefined;
}

/**
 * Reads the body and prepares the upstream request. A function of its own so that no frame of
 * handleCall, which lives as long as the stream, holds the client's body (issue 10).
 */
async function readAndPrepare(
  kind: EndpointKind,
  req: IncomingMessage,
  options: CallHandlerOptions,
  signal: AbortSignal,
): Promise<PreparedCall> {
  // The master sends each body whole, framed by Content-Length, after reading it under its own
  // bodyTimeoutMs (SPEC §4a): no idle timeout here. ownMemory: the body may move to the preparer's thread. An IPC
  // call's came in its message (limits.directStreams), and moves only if it owns its memory (toTransferable).
  const body =
    takeCallBody(req) ??
    (await readBody(req, { maxBytes: options.maxBodyBytes, idleTimeoutMs: 0, signal, ownMemory: true }));
  // Issue 9 part 5: a large body's memory moves to the preparer's thread, and the parsed request
  // is not kept: only the upstream body is, until it is handed to the upstream (pipeline.ts).
  return options.preparer.prepare(body, { signal, kind });
}

/** The master's offer of the client's connection (limits.directStreams), if any and if this worker can take offers. */
function directRoute(req: IncomingMessage, connections: DirectConnections | undefined): DirectRoute | undefined {
  if (connections === undefined) return undefined;
  const offer = readDirectOffer(req.headers[DIRECT_HEADER]);
  return offer === undefined ? undefined : { offer, connections };
}

/** Random bytes in a completion id (OpenAI's `chatcmpl-…`). */
const ID_BYTES = 12;
/** Ids one draw from the system's RNG serves. */
const IDS_PER_FILL = 128;
// Its own memory, not a slice of node's shared pool (as randomUUID's cache).
const idPool = Buffer.allocUnsafeSlow(ID_BYTES * IDS_PER_FILL);
let idAt = idPool.length;

/**
 * A new completion id, as random as before: ID_BYTES of one buffer refilled every IDS_PER_FILL ids, each byte used
 * once, as node's randomUUID keeps a cache. `randomBytes(12)` per answer was 1.5 % of the worker's busy time in a
 * profile at rest (issue 10); one call costs 6–7 µs of CPU against under 0.5 µs (scripts/bench/per-call.ts).
 */
export function completionId(): string {
  if (idAt === idPool.length) {
    randomFillSync(idPool);
    idAt = 0;
  }
  const id = idPool.toString('base64url', idAt, idAt + ID_BYTES);
  idAt += ID_BYTES;
  return `chatcmpl-${id}`;
}

/** nginx's "client closed request": logged when the client left before a status was sent. */
const STATUS_CLIENT_CLOSED = 499;

/** Most `x-ratelimit-*` headers passed on from one upstream answer. */
const MAX_RATE_LIMIT_HEADERS = 16;
/** A header value passed on as is: printable ASCII, bounded (node refuses control bytes; a hostile upstream's). */
const PLAIN_HEADER_VALUE = /^[\x20-\x7e]{1,256}$/;

/**
 * The upstream's `x-ratelimit-*` headers (OpenAI's, and many OpenAI-compatible servers'): the client's backoff
 * needs them as much as the upstream's Retry-After, and a proxy in front of OpenAI passes them on.
 */
function copyRateLimits(
  from: Record<string, string | string[] | undefined>,
  ...to: Array<Record<string, string>>
): void {
  let copied = 0;
  for (const name in from) {
    const value = from[name];
    if (!name.startsWith('x-ratelimit-') || typeof value !== 'string' || !PLAIN_HEADER_VALUE.test(value)) continue;
    // SPEC §9: the worker's own upstream key, should an upstream put it there, is not passed on.
    for (const headers of to) headers[name] = withoutSecrets(value);
    if (++copied === MAX_RATE_LIMIT_HEADERS) return;
  }
}

/**
 * The upstream's own id of the request (OpenAI's `x-request-id`, Anthropic's `request-id`, Azure's `apim-request-id`):
 * logged, so that a failed call can be traced with the provider, whose support asks for it.
 */
function upstreamRequestIdOf(headers: Record<string, string | string[] | undefined>): string | undefined {
  for (const name of UPSTREAM_REQUEST_ID_HEADERS) {
    const value = headers[name];
    if (typeof value === 'string' && PLAIN_HEADER_VALUE.test(value)) return withoutSecrets(value);
  }
  return undefined;
}

const UPSTREAM_REQUEST_ID_HEADERS = ['x-request-id', 'request-id', 'apim-request-id'];

/**
 * One call, from the client's request to its answer and log line. `stored`: a call on a stored response (SPEC §12),
 * prepared from its path, no body read; it generates nothing, so no usage it relays is counted as this call's tokens.
 */
export async function handleCall(
  kind: EndpointKind,
  req: IncomingMessage,
  res: ServerResponse,
  options: CallHandlerOptions,
  stored?: PreparedCall,
): Promise<void> {
  const startedMs = performance.now();
  // First tokens count from the request's arrival at the master (its queue included): what clients and the canary see.
  const arrivedMs = startedMs - waitedMs(headerValue(req.headers[WAITED_HEADER]));
  const reqId = headerValue(req.headers['x-request-id']);
  const { metrics, upstream } = options;
  // SPEC §5: the client leaving aborts the upstream at once, whatever the phase.
  // Nothing is answered to a client that left, so the abort's reason is the
  // signal's own AbortError and `client.signal.aborted` is how it is told apart.
  const client = new AbortController();
  const onClose = (): void => {
    if (!res.writableFinished) client.abort();
  };
  res.on('close', onClose);

  const stats: PipelineStats = { upstreamBytes: 0, peakUpstreamBufferedBytes: 0 };
  let isStream = false;
  let opened: OpenedCall | undefined;
  let stopPings: Disposer | undefined;
  let errorCode: string | undefined;
  let errorCause: string | undefined;
  const headers: Record<string, string> = reqId === undefined ? {} : { 'x-request-id': reqId };
  /** The upstream's rate-limit headers, for an error answer (an answer's own go with `headers`). */
  const rateLimits: Record<string, string> = {};
  let upstreamRequestId: string | undefined;
  try {
    const call = stored ?? (await readAndPrepare(kind, req, options, client.signal));
    isStream = call.isStream;
    if (isStream) metrics.streamStarted(); // paired with streamEnded in `finally`
    // Nothing goes out until the upstream answers, a whole answer until it is done and a stream until its head (a
    // cold model's can take minutes, firstByteMs): 102s keep the master's headers timeout from firing (SPEC §4a).
    stopPings = startProcessingPings(res, options.processingPingMs);
    opened = openCall({
      kind,
      call,
      adapter: options.adapter,
      res,
      headers,
      id: completionId(),
      created: Math.floor(Date.now() / 1000),
      now: () => performance.now(),
      onFirstToken: (atMs) => metrics.observeFirstToken((atMs - arrivedMs) / 1000),
      direct: directRoute(req, options.connections),
      answers: options.answers,
    });
    await runPipeline(
      {
        client: options.client,
        request: call.request,
        consumer: opened.consumer,
        output: opened.response,
        signal: client.signal,
        timeouts: upstream.timeouts,
        maxEventBytes: upstream.maxEventBytes,
        pingIntervalMs: isStream ? upstream.pingIntervalMs : 0,
        onResponse: (upstreamHeaders) => {
          copyRateLimits(upstreamHeaders, headers, rateLimits);
          upstreamRequestId = upstreamRequestIdOf(upstreamHeaders);
        },
      },
      stats,
    );
    stopPings?.();
    opened.response.complete();
  } catch (err) {
    // A client that left gets no answer and counts as no error (it is logged as `aborted`).
    if (!client.signal.aborted) {
      const response = toErrorResponse(err);
      const { code } = response.body.error;
      errorCode = code;
      const kind = upstreamErrorKind(code);
      if (kind !== undefined) metrics.onUpstreamError(kind);
      // Where the call failed on the way (never a protocol error's: a JSON parser quotes the answer it choked on); an
      // error the upstream answered or reported, what it said, as its client read it (the key hidden, withoutSecrets):
      // its own status behind a 502 and a 429's quota against its rate limit were in no log the operator had.
      if (kind === 'connect' || kind === 'timeout' || kind === 'reset') errorCause = causeOf(err);
      else if (kind === 'status') errorCause = loggedText(response.body.error.message);
      if (response.status === 500) options.log.error({ err, reqId }, 'unexpected error in the request handler');
      if (opened?.response.isCommitted === true) opened.response.failAfterCommit(err);
      else {
        // SPEC §4 413: the rest of the body is not read; the connection closes after the answer.
        if (code === 'body_too_large') res.setHeader('connection', 'close');
        sendError(res, response, rateLimits);
      }
    }
  } finally {
    stopPings?.();
    releaseWhenSent(res, opened?.share);
    res.off('close', onClose);
    if (isStream) metrics.streamEnded();
    const usage = countedUsage(stored === undefined ? opened?.usage() : undefined);
    if (usage !== undefined) metrics.addTokens(usage);
    options.log.info(
      logLine(req, res, {
        startedMs,
        isStream,
        stats,
        response: opened?.response,
        usage,
        errorCode,
        errorCause,
        isAborted: client.signal.aborted,
        reqId,
        upstreamRequestId,
      }),
      'request finished',
    );
  }
}

/**
 * What an answer held whole took of its worker's budget, given back once its bytes have left the process: a client
 * that reads slowly keeps them in the response's buffer (a reviewer's 25 clients that read nothing held 315 MB past a
 * budget of 16 MiB, released as each answer was written).
 */
function releaseWhenSent(res: ServerResponse, share: AnswerShare | undefined): void {
  if (share === undefined) return;
  if (res.writableEnded && !res.writableFinished && !res.destroyed) res.once('close', () => share.release());
  else share.release();
}

interface LineFacts {
  startedMs: number;
  isStream: boolean;
  stats: PipelineStats;
  response: CallResponse | undefined;
  usage: { prompt_tokens: number; completion_tokens: number } | undefined;
  errorCode: string | undefined;
  /** What the upstream call met, as node or undici said it (`connect ECONNREFUSED 10.0.0.7:8000`), or answered. */
  errorCause: string | undefined;
  isAborted: boolean;
  reqId: string | undefined;
  upstreamRequestId: string | undefined;
}

/** Issue 5 part 4: the same keys as the master's line (reqId joins the two); pid and version are root bindings. */
function logLine(req: IncomingMessage, res: ServerResponse, facts: LineFacts): Record<string, unknown> {
  const { response } = facts;
  const line: Record<string, unknown> = {
    reqId: facts.reqId,
    method: req.method,
    path: (req.url ?? '/').split('?', 1)[0],
    status: res.headersSent ? res.statusCode : STATUS_CLIENT_CLOSED,
    durationMs: round(performance.now() - facts.startedMs),
    bytesOut: response?.bytesOut ?? 0,
    stream: facts.isStream,
    upstreamBytes: facts.stats.upstreamBytes,
  };
  if (facts.isStream && response !== undefined) {
    line['firstTokenMs'] =
      response.firstTokenAtMs === undefined ? undefined : round(response.firstTokenAtMs - facts.startedMs);
    // The canary's time per token (SPEC §11), as the master was told it: which requests drove a verdict.
    const perToken = response.timePerTokenMs;
    if (perToken !== undefined && perToken >= 0 && facts.errorCode === undefined && !facts.isAborted)
      line['timePerTokenMs'] = round(perToken);
    // What this stream held in the worker at most: unsent output plus unread upstream body (issue 3 part 6).
    line['peakBufferedBytes'] = (response.peakBufferedBytes ?? 0) + facts.stats.peakUpstreamBufferedBytes;
  }
  line['tokens'] = facts.usage?.completion_tokens ?? response?.contentChunks ?? 0;
  if (facts.usage !== undefined) line['promptTokens'] = facts.usage.prompt_tokens;
  if (facts.errorCode !== undefined) line['error'] = facts.errorCode;
  if (facts.errorCause !== undefined) line['errorCause'] = facts.errorCause;
  if (facts.isAborted) line['aborted'] = true;
  if (facts.upstreamRequestId !== undefined) line['upstreamRequestId'] = facts.upstreamRequestId;
  return line;
}

/**
 * The tokens a call used, as counted in graygate_tokens_total and the access line: an OpenAI upstream's usage reaches
 * here as it sent it (a string, 1e300, -5), which tokenCount makes 0.
 */
function countedUsage(
  usage: { prompt_tokens: unknown; completion_tokens: unknown } | undefined,
): { prompt_tokens: number; completion_tokens: number } | undefined {
  if (usage === undefined) return undefined;
  return { prompt_tokens: tokenCount(usage.prompt_tokens), completion_tokens: tokenCount(usage.completion_tokens) };
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/**
 * The innermost cause of an upstream failure, for the request line: which address refused, what undici or the runtime
 * met (an answer says only "could not connect to the upstream"). Bounded; undefined when the error is our own.
 */
export function causeOf(err: unknown): string | undefined {
  let cause = (err as { cause?: unknown } | null)?.cause;
  for (let depth = 0; depth < 8 && cause instanceof Error && cause.cause instanceof Error; depth++) cause = cause.cause;
  if (!(cause instanceof Error)) return undefined;
  // Every address of a name refused (localhost as ::1 and 127.0.0.1): node's AggregateError has an empty message.
  const errors = cause instanceof AggregateError ? (cause.errors as unknown[]) : [cause];
  const texts = errors.filter((e): e is NodeJS.ErrnoException => e instanceof Error).map(describe);
  return texts.join('; ').slice(0, MAX_CAUSE_CHARS) || undefined;
}

/** Longest errorCause, characters: a line per request, whatever an upstream's error says. */
const MAX_CAUSE_CHARS = 300;

/** An upstream's text as a log line carries it: bounded, and no control character for a terminal to act on. */
function loggedText(text: string): string {
  // eslint-disable-next-line no-control-regex
  return cutText(text, Math.min(text.length, MAX_CAUSE_CHARS)).replace(/[\x00-\x1f\x7f]/g, '?');
}

function describe(err: NodeJS.ErrnoException): string {
  return err.code !== undefined && !err.message.includes(err.code) ? `${err.code}: ${err.message}` : err.message;
}
