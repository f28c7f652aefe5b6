import { JSON_ANSWER_BLOCK, type ChunkSink, type FinishReason, type StreamState } from '../types.js';
import { GraygateError } from '../../shared/errors.js';
import { parseUpstreamJson, tokenCount, upstreamStreamError, type UpstreamAdapter } from './format-adapter.js';
import {
  contentChunk,
  finishChunk,
  roleChunk,
  toolArgumentsChunk,
  toolCallStartChunk,
  usageChunk,
} from './chunk-builders.js';
import { buildAnthropicRequest, DEFAULT_ANTHROPIC_MAX_TOKENS } from './anthropic-request.js';
import { JSON_ANSWER_TOOL } from './anthropic-tools.js';

// Anthropic Messages upstream (SPEC §2: `{url}/v1/messages`), streamed as SSE:
// message_start, content_block_start/delta/stop, message_delta, message_stop,
// ping and error. https://docs.anthropic.com/en/api/messages-streaming
// A `tool_use` block becomes an OpenAI tool call: its start the first fragment
// (id, name), each `input_json_delta` an arguments fragment (SPEC §12); the
// block of the JSON-mode answer tool is re-emitted as content.

export { buildAnthropicRequest, DEFAULT_ANTHROPIC_MAX_TOKENS };

/** Anthropic stop_reason → OpenAI finish_reason. `tool_use` ended only by the JSON answer is a plain stop. */
export function mapAnthropicStopReason(reason: unknown, hasToolCalls = true): FinishReason {
  switch (reason) {
    case 'max_tokens':
      return 'length';
    case 'tool_use':
      return hasToolCalls ? 'tool_calls' : 'stop';
    case 'refusal':
      return 'content_filter';
    default: // end_turn, stop_sequence, pause_turn
      return 'stop';
  }
}

/** Anthropic error types → the status a client should see (429 rate limit, 529 overloaded as 503). */
function mapAnthropicErrorStatus(type: unknown): number {
  if (type === 'rate_limit_error') return 429;
  if (type === 'overloaded_error') return 503;
  return 502;
}

export function convertAnthropicEvent(state: StreamState, type: string, data: string, sink: ChunkSink): void {
  const value = parseUpstreamJson(data);
  // The `type` inside the data is authoritative; the SSE `event:` line repeats it.
  const kind = typeof value['type'] === 'string' ? value['type'] : type;
  switch (kind) {
    case 'message_start': {
      const usage = (value['message'] as { usage?: { input_tokens?: unknown; output_tokens?: unknown } } | undefined)
        ?.usage;
      state.promptTokens = tokenCount(usage?.input_tokens);
      state.completionTokens = tokenCount(usage?.output_tokens);
      sink.chunk(roleChunk(state));
      return;
    }
    case 'content_block_start':
      return startBlock(state, value, sink);
    case 'content_block_delta': {
      const delta = value['delta'] as { type?: unknown; text?: unknown; partial_json?: unknown } | undefined;
      if (delta?.type === 'text_delta' && typeof delta.text === 'string' && delta.text !== '')
        sink.chunk(contentChunk(state, delta.text));
      else if (
        delta?.type === 'input_json_delta' &&
        typeof delta.partial_json === 'string' &&
        delta.partial_json !== ''
      ) {
        const block = state.blocks.get(blockIndex(value));
        if (block === JSON_ANSWER_BLOCK) sink.chunk(contentChunk(state, delta.partial_json));
        else if (block !== undefined) sink.chunk(toolArgumentsChunk(state, block, delta.partial_json));
      }
      // thinking_delta, signature_delta, citations_delta have no OpenAI equivalent.
      return;
    }
    case 'message_delta': {
      const delta = value['delta'] as { stop_reason?: unknown } | undefined;
      const usage = value['usage'] as { output_tokens?: unknown; input_tokens?: unknown } | undefined;
      if (usage?.output_tokens !== undefined) state.completionTokens = tokenCount(usage.output_tokens);
      if (usage?.input_tokens !== undefined && usage.input_tokens !== null)
        state.promptTokens = tokenCount(usage.input_tokens);
      if (delta?.stop_reason !== undefined && delta.stop_reason !== null)
        sink.chunk(finishChunk(state, mapAnthropicStopReason(delta.stop_reason, state.toolCalls > 0)));
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

function startBlock(state: StreamState, value: Record<string, unknown>, sink: ChunkSink): void {
  const block = value['content_block'] as { type?: unknown; text?: unknown; id?: unknown; name?: unknown } | undefined;
  if (block?.type === 'text' && typeof block.text === 'string' && block.text !== '')
    sink.chunk(contentChunk(state, block.text));
  if (block?.type !== 'tool_use') return;
  if (typeof block.id !== 'string' || typeof block.name !== 'string')
    throw new GraygateError('upstream_protocol_error', 'the upstream sent a tool_use block without an id or a name');
  if (block.name === JSON_ANSWER_TOOL) {
    state.blocks.set(blockIndex(value), JSON_ANSWER_BLOCK);
    return;
  }
  const { chunk, index } = toolCallStartChunk(state, block.id, block.name);
  state.blocks.set(blockIndex(value), index);
  sink.chunk(chunk);
}

function blockIndex(value: Record<string, unknown>): number {
  return typeof value['index'] === 'number' ? value['index'] : 0;
}

export const anthropicAdapter: UpstreamAdapter = {
  format: 'anthropic',
  framing: 'sse',
  endpoints: new Set(['chat']),
  buildRequest: buildAnthropicRequest,
  convertEvent: convertAnthropicEvent,
};
