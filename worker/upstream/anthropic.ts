import { maxTokensOf, messageText, stopsOf, type ChatRequest } from '../request/chat-request.js';
import type { ChunkSink, FinishReason, StreamState } from '../types.js';
import { GraygateError } from '../../shared/errors.js';
import { parseUpstreamJson, requireModel, tokenCount, upstreamStreamError, type BuildOptions, type UpstreamAdapter, type UpstreamRequest } from './format-adapter.js';
import { contentChunk, finishChunk, roleChunk, usageChunk } from './chunk-builders.js';

// Anthropic Messages upstream (SPEC §2: `{url}/v1/messages`), streamed as SSE:
// message_start, content_block_start/delta/stop, message_delta, message_stop,
// ping and error. https://docs.anthropic.com/en/api/messages-streaming

export const ANTHROPIC_VERSION = '2023-06-01';
/** Anthropic requires max_tokens; OpenAI clients usually omit it. 4096 fits every current Claude model. */
export const DEFAULT_ANTHROPIC_MAX_TOKENS = 4096;

export function buildAnthropicRequest(req: ChatRequest, options: BuildOptions): UpstreamRequest {
  const model = requireModel(req, options);
  // Anthropic takes system prompts as a top-level field, not as messages.
  const system: string[] = [];
  const messages: Array<{ role: 'user' | 'assistant'; content: string }> = [];
  for (const m of req.messages) {
    if (m.role === 'system' || m.role === 'developer') system.push(messageText(m));
    else if (m.role === 'user' || m.role === 'assistant') messages.push({ role: m.role, content: messageText(m) });
    else throw new GraygateError('invalid_request', 'messages: tool messages are not supported by an anthropic upstream');
  }
  if (messages.length === 0) throw new GraygateError('invalid_request', 'messages: an anthropic upstream needs at least one user or assistant message');
  const body: Record<string, unknown> = { model, max_tokens: maxTokensOf(req) ?? DEFAULT_ANTHROPIC_MAX_TOKENS, messages, stream: true };
  if (system.length > 0) body['system'] = system.join('\n\n');
  if (req.temperature !== undefined && req.temperature !== null) body['temperature'] = req.temperature;
  if (req.top_p !== undefined && req.top_p !== null) body['top_p'] = req.top_p;
  const stop = stopsOf(req);
  if (stop !== undefined) body['stop_sequences'] = stop;
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'text/event-stream', 'anthropic-version': ANTHROPIC_VERSION };
  if (options.apiKey !== undefined) headers['x-api-key'] = options.apiKey;
  return { path: '/v1/messages', headers, body: Buffer.from(JSON.stringify(body)), model };
}

/** Anthropic stop_reason → OpenAI finish_reason. */
export function mapAnthropicStopReason(reason: unknown): FinishReason {
  switch (reason) {
    case 'max_tokens':
      return 'length';
    case 'tool_use':
      return 'tool_calls';
    case 'refusal':
      return 'content_filter';
    default: // end_turn, stop_sequence, pause_turn
      return 'stop';
  }
}

/** Anthropic error types → the status a client should see (429 rate limit, 529 overloaded as 503). */
export function mapAnthropicErrorStatus(type: unknown): number {
  if (type === 'rate_limit_error') return 429;
  if (type === 'overloaded_error') return 503;
  return 502;
}

export function convertAnthropicEvent(state: StreamState, type: string, data: string, sink: ChunkSink): void {
  const value = parseUpstreamJson(data);
  // The `type` inside the data is authoritative; the SSE `event:` line repeats it.
  const kind = typeof value['type'] === 'string' ? (value['type'] as string) : type;
  switch (kind) {
    case 'message_start': {
      const usage = (value['message'] as { usage?: { input_tokens?: unknown; output_tokens?: unknown } } | undefined)?.usage;
      state.promptTokens = tokenCount(usage?.input_tokens);
      state.completionTokens = tokenCount(usage?.output_tokens);
      sink.chunk(roleChunk(state));
      return;
    }
    case 'content_block_start': {
      const block = value['content_block'] as { type?: unknown; text?: unknown } | undefined;
      if (block?.type === 'text' && typeof block.text === 'string' && block.text !== '') sink.chunk(contentChunk(state, block.text));
      return;
    }
    case 'content_block_delta': {
      const delta = value['delta'] as { type?: unknown; text?: unknown } | undefined;
      // thinking_delta, input_json_delta, signature_delta have no OpenAI text equivalent.
      if (delta?.type === 'text_delta' && typeof delta.text === 'string' && delta.text !== '') sink.chunk(contentChunk(state, delta.text));
      return;
    }
    case 'message_delta': {
      const delta = value['delta'] as { stop_reason?: unknown } | undefined;
      const usage = value['usage'] as { output_tokens?: unknown; input_tokens?: unknown } | undefined;
      if (usage?.output_tokens !== undefined) state.completionTokens = tokenCount(usage.output_tokens);
      if (usage?.input_tokens !== undefined && usage.input_tokens !== null) state.promptTokens = tokenCount(usage.input_tokens);
      if (delta?.stop_reason !== undefined && delta.stop_reason !== null) sink.chunk(finishChunk(state, mapAnthropicStopReason(delta.stop_reason)));
      return;
    }
    case 'message_stop':
      state.isDone = true;
      if (state.finishReason === null) sink.chunk(finishChunk(state, 'stop'));
      sink.chunk(usageChunk(state));
      return;
    case 'error': {
      const error = value['error'] as { type?: unknown; message?: unknown } | undefined;
      const message = typeof error?.message === 'string' ? error.message : 'unknown error';
      throw upstreamStreamError(message, mapAnthropicErrorStatus(error?.type));
    }
    default: // ping, content_block_stop, and event types added later (Anthropic's versioning policy)
      return;
  }
}

export const anthropicAdapter: UpstreamAdapter = {
  format: 'anthropic',
  framing: 'sse',
  buildRequest: buildAnthropicRequest,
  convertEvent: convertAnthropicEvent,
};
