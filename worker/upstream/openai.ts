import { stringifyJsonExact } from '../request/exact-numbers.js';
import type { ChatRequest } from '../request/chat-request.js';
import type { ChatCompletionChunk, ChunkSink, RelayKind, StreamState } from '../types.js';
import { GraygateError } from '../../shared/errors.js';
import { upstreamAuthHeaders } from './auth-headers.js';
import {
  isError,
  parseUpstreamJson,
  requireModel,
  upstreamErrorMessage,
  upstreamStreamError,
  type BuildOptions,
  type StoredResponseCall,
  type UpstreamAdapter,
  type UpstreamRequest,
} from './format-adapter.js';

// OpenAI-compatible upstream (SPEC §2: `{url}/chat/completions`): SSE passed
// through event by event. Each payload is parsed once (to validate it, SPEC
// §5, and to read finish_reason and usage) and re-framed with its original
// text, so every field the upstream sent reaches the client unchanged.
// Embeddings, legacy completions and the Responses API are relayed as they
// are (SPEC §12), with `upstream.model` put in when configured.

export function buildOpenAIRequest(req: ChatRequest, options: BuildOptions): UpstreamRequest {
  const model = requireModel(req, options);
  const isStream = req.stream === true;
  // A stream's usage is always asked for: it feeds the request log; the usage chunk reaches the client only if it
  // asked. A non-streamed answer is asked for as one and relayed as it comes (call/open-call.ts): what OpenAI allows
  // only unstreamed (audio in wav or mp3) works, and every field, legacy `function_call` and audio included, is the
  // upstream's own.
  // Without a stream, stream_options can only be null here (request/chat-request.ts refuses more, as OpenAI does).
  const { stream_options: streamOptions, ...rest } = req;
  const body = isStream
    ? { ...rest, model, stream: true, stream_options: { ...streamOptions, include_usage: true } }
    : { ...rest, model };
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: isStream ? 'text/event-stream' : 'application/json',
    ...upstreamAuthHeaders('openai', options.apiKey),
  };
  return { path: '/chat/completions', headers, body: Buffer.from(stringifyJsonExact(body)), model };
}

/** POST /v1/embeddings, /v1/completions, /v1/responses → the same call upstream (`{url}/embeddings`, …). */
function buildOpenAIRelayRequest(
  kind: RelayKind,
  req: Record<string, unknown>,
  options: BuildOptions,
): UpstreamRequest {
  const model = requireModel(req, options);
  const body: Record<string, unknown> = { ...req, model };
  const isStream = req['stream'] === true;
  // Legacy completions stream usage only when asked: asked always, as for chat, and dropped unless the client asked.
  if (kind === 'completions' && isStream)
    body['stream_options'] = { ...(req['stream_options'] as object | undefined), include_usage: true };
  const headers: Record<string, string> = {
    'content-type': 'application/json',
    accept: isStream ? 'text/event-stream' : 'application/json',
    ...upstreamAuthHeaders('openai', options.apiKey),
  };
  return { path: `/${kind}`, headers, body: Buffer.from(stringifyJsonExact(body)), model };
}

/** A call on a stored response → the same call upstream, with the version's key. */
function buildOpenAIStoredResponseRequest(call: StoredResponseCall, options: BuildOptions): UpstreamRequest {
  const headers = {
    accept: call.isStream ? 'text/event-stream' : 'application/json',
    ...upstreamAuthHeaders('openai', options.apiKey),
  };
  return { method: call.method, path: call.path, headers, body: Buffer.alloc(0), model: options.model ?? '' };
}

/**
 * One event of an OpenAI-format stream (chat or legacy completions): its JSON object, or undefined for `[DONE]` (as
 * OpenAI's SDKs read it, followed by anything: a space). The upstream's error, `event: error`, llama.cpp's `error: {…}`
 * line (sse/event-decoder.ts), an `error` member, or an error object itself (`"object": "error"`, vLLM's in-stream
 * error before 0.6, FastChat's and other servers' on its model), is thrown, whatever its shape.
 */
export function readOpenAIEvent(type: string, data: string): Record<string, unknown> | undefined {
  if (data.startsWith('[DONE]')) return undefined;
  if (type === 'error') throw upstreamStreamError(upstreamErrorMessage(data));
  const value = parseUpstreamJson(data);
  if (isError(value['error']) || value['object'] === 'error') throw upstreamStreamError(upstreamErrorMessage(data));
  return value;
}

export function convertOpenAIEvent(state: StreamState, type: string, data: string, sink: ChunkSink): void {
  const value = readOpenAIEvent(type, data);
  if (value === undefined) {
    state.isDone = true;
    return;
  }
  const choices = value['choices'];
  if (!Array.isArray(choices)) {
    throw new GraygateError('upstream_protocol_error', 'the upstream sent a chunk without a choices array');
  }
  // The stream's writer takes a choice as an object and its delta as one. A choice without a delta (Azure's
  // content-filter chunks) or with `delta: null` has an empty one; the client still gets the upstream's text.
  for (const choice of choices as unknown[]) {
    if (!isObject(choice))
      throw new GraygateError('upstream_protocol_error', 'the upstream sent a choice that is not an object');
    const delta = (choice as { delta?: unknown }).delta;
    if (delta === undefined || delta === null) (choice as { delta: object }).delta = {};
    else if (!isObject(delta))
      throw new GraygateError('upstream_protocol_error', 'the upstream sent a delta that is not an object');
    state.finishes.see(choice as { finish_reason?: unknown; index?: unknown });
  }
  const chunk = value as unknown as ChatCompletionChunk;
  const usage = chunk.usage;
  if (usage !== undefined && usage !== null) state.usage = usage;
  const choice = chunk.choices[0];
  if (choice !== undefined) {
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) state.finishReason = choice.finish_reason;
    state.isRoleSent = true;
  }
  sink.chunk(chunk, data);
}

function isObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

export const openaiAdapter: UpstreamAdapter = {
  format: 'openai',
  framing: 'sse',
  endpoints: new Set(['chat', 'embeddings', 'completions', 'responses']),
  buildRequest: buildOpenAIRequest,
  convertEvent: convertOpenAIEvent,
  buildEndpointRequest: buildOpenAIRelayRequest,
  buildStoredResponseRequest: buildOpenAIStoredResponseRequest,
};
