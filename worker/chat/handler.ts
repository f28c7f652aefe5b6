import type { IncomingMessage, ServerResponse } from 'node:http';
import { randomBytes } from 'node:crypto';
import { performance } from 'node:perf_hooks';
import { toErrorResponse } from '../../shared/errors.js';
import { headerValue, sendError } from '../../shared/http-headers.js';
import type { Logger } from '../../shared/log.js';
import type { UpstreamConfig } from '../../shared/config.js';
import { readBody } from '../request/body.js';
import { createStreamState, type StreamState } from '../types.js';
import type { UpstreamAdapter } from '../upstream/format-adapter.js';
import type { UpstreamClient } from '../upstream/client.js';
import { runPipeline, type PipelineStats } from '../upstream/pipeline.js';
import { upstreamErrorKind, type WorkerMetrics } from '../metrics.js';
import { SseWriter } from './sse-writer.js';
import { CompletionAggregator } from './aggregate.js';
import type { RequestPreparer } from './preparer.js';

// POST /v1/chat/completions (SPEC §5): validate, convert, call the upstream,
// stream or aggregate, and log one line when done (SPEC §9).

export interface ChatHandlerOptions {
  /** The version's converter: its events → OpenAI chunks. */
  adapter: UpstreamAdapter;
  /** Body → upstream request (validation and conversion, off the event loop for large bodies). */
  preparer: RequestPreparer;
  client: UpstreamClient;
  upstream: UpstreamConfig;
  /** limits.maxBodyBytes. */
  maxBodyBytes: number;
  log: Logger;
  /** This worker's metrics (SPEC §9): fed once per request, never per chunk. */
  metrics: WorkerMetrics;
}

/** nginx's "client closed request": logged when the client left before a status was sent. */
const STATUS_CLIENT_CLOSED = 499;

export async function handleChatCompletions(req: IncomingMessage, res: ServerResponse, options: ChatHandlerOptions): Promise<void> {
  const startedMs = performance.now();
  const reqId = headerValue(req.headers['x-request-id']);
  const { metrics } = options;
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
  let writer: SseWriter | undefined;
  let aggregator: CompletionAggregator | undefined;
  let errorCode: string | undefined;
  let bytes = 0;
  let state: StreamState | undefined;
  try {
    const body = await readBody(req, { maxBytes: options.maxBodyBytes, signal: client.signal });
    // Issue 9 part 5: a large body's memory moves to the preparer's thread, and the parsed request is not kept: only the upstream body is.
    const prepared = await options.preparer.prepare(body, { signal: client.signal });
    const { request, includeUsage } = prepared;
    isStream = prepared.isStream;
    if (isStream) metrics.streamStarted(); // paired with streamEnded in `finally`
    const { upstream } = options;
    state = createStreamState({ id: `chatcmpl-${randomBytes(12).toString('base64url')}`, created: Math.floor(Date.now() / 1000), model: request.model });
    const extraHeaders: Record<string, string> = reqId === undefined ? {} : { 'x-request-id': reqId };
    const output = isStream
      ? (writer = new SseWriter({
          res,
          includeUsage,
          now: () => performance.now(),
          headers: extraHeaders,
          onFirstToken: (atMs) => metrics.observeFirstToken((atMs - startedMs) / 1000),
        }))
      : (aggregator = new CompletionAggregator());
    await runPipeline(
      {
        client: options.client,
        adapter: options.adapter,
        request,
        state,
        output,
        signal: client.signal,
        timeouts: upstream.timeouts,
        maxEventBytes: upstream.maxEventBytes,
        pingIntervalMs: isStream ? upstream.pingIntervalMs : 0,
      },
      stats,
    );
    if (writer !== undefined) writer.end();
    else if (aggregator !== undefined) bytes = sendCompletion(res, JSON.stringify(aggregator.toCompletion()), extraHeaders);
  } catch (err) {
    // A client that left gets no answer and counts as no error (it is logged as `aborted`).
    if (!client.signal.aborted) {
      const response = toErrorResponse(err);
      const { code } = response.body.error;
      errorCode = code;
      const kind = upstreamErrorKind(code);
      if (kind !== undefined) metrics.onUpstreamError(kind);
      if (response.status === 500) options.log.error({ err, reqId }, 'unexpected error in chat handler');
      if (writer?.isCommitted === true) writer.failAfterCommit(err);
      else {
        // SPEC §4 413: the rest of the body is not read; the connection closes after the answer.
        if (code === 'body_too_large') res.setHeader('connection', 'close');
        sendError(res, response);
      }
    }
  } finally {
    res.off('close', onClose);
    if (isStream) metrics.streamEnded();
    if (state?.usage !== undefined) metrics.addTokens(state.usage);
    const durationMs = performance.now() - startedMs;
    // Issue 5 part 4: the same keys as the master's line (reqId joins the two); pid and version are root bindings.
    const line: Record<string, unknown> = {
      reqId,
      method: req.method,
      path: (req.url ?? '/').split('?', 1)[0],
      status: res.headersSent ? res.statusCode : STATUS_CLIENT_CLOSED,
      durationMs: round(durationMs),
      bytesOut: writer?.bytes ?? bytes,
      stream: isStream,
      upstreamBytes: stats.upstreamBytes,
    };
    if (writer !== undefined) {
      line['firstTokenMs'] = writer.firstTokenAtMs === undefined ? undefined : round(writer.firstTokenAtMs - startedMs);
      // What this stream held in the worker at most: unsent output plus unread upstream body (issue 3 part 6).
      line['peakBufferedBytes'] = writer.peakBufferedBytes + stats.peakUpstreamBufferedBytes;
    }
    line['tokens'] = state?.usage?.completion_tokens ?? writer?.contentChunks ?? aggregator?.contentChunks ?? 0;
    if (state?.usage !== undefined) line['promptTokens'] = state.usage.prompt_tokens;
    if (errorCode !== undefined) line['error'] = errorCode;
    if (client.signal.aborted) line['aborted'] = true;
    options.log.info(line, 'request finished');
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}

function sendCompletion(res: ServerResponse, text: string, headers: Record<string, string>): number {
  const body = Buffer.from(text, 'utf8');
  res.writeHead(200, { ...headers, 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
  return body.length;
}
