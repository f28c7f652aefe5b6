import { JSON_ANSWER_BLOCK, OTHER_BLOCK, type ChunkSink, type FinishReason, type StreamState } from '../types.js';
import { mayHoldInexactNumbers, parseJsonExact, stringifyJsonExact } from '../request/exact-numbers.js';
import { GraygateError } from '../../shared/errors.js';
import {
  parseUpstreamJson,
  tokenCount,
  upstreamStreamError,
  type UpstreamAdapter,
  isModelName,
  wrongFieldType,
} from './format-adapter.js';
import {
  contentChunk,
  finishChunk,
  sendChunk,
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

/**
 * Tool_use blocks started and neither given input nor stopped, at most: Anthropic streams one block at a time, and
 * what open blocks owe is sent together at the finish, in one event (a hostile upstream's 400,000 of them held the
 * worker's loop 1.3 s there).
 */
export const MAX_OPEN_TOOL_BLOCKS = 1024;

/** Anthropic stop_reason → OpenAI finish_reason. `tool_use` ended only by the JSON answer is a plain stop. */
export function mapAnthropicStopReason(reason: unknown, hasToolCalls = true): FinishReason {
  switch (reason) {
    case 'max_tokens':
    case 'model_context_window_exceeded': // cut by the context window: a token limit too
      return 'length';
    case 'tool_use':
      return hasToolCalls ? 'tool_calls' : 'stop';
    case 'refusal':
      return 'content_filter';
    default: // end_turn, stop_sequence, pause_turn
      return 'stop';
  }
}

/**
 * An error event's type → the status a client sees before anything was sent: the status the same error has
 * as an HTTP answer (SPEC §4: 429 keeps its meaning; 529 overloaded, 500 api_error and the rest are a 502).
 */
function mapAnthropicErrorStatus(type: unknown): number {
  return type === 'rate_limit_error' ? 429 : 502;
}

export function convertAnthropicEvent(state: StreamState, type: string, data: string, sink: ChunkSink): void {
  const value = parseUpstreamJson(data);
  // The `type` inside the data is authoritative; the SSE `event:` line repeats it.
  const kind = typeof value['type'] === 'string' ? value['type'] : type;
  switch (kind) {
    case 'message_start': {
      const message = value['message'] as { usage?: AnthropicUsage; model?: unknown } | undefined;
      // As OpenAI names the snapshot that answered (`gpt-4o` → `gpt-4o-2024-08-06`): `claude-sonnet-4-0` → its date.
      if (isModelName(message?.model)) state.model = message.model;
      const usage = message?.usage;
      setPromptTokens(state, usage);
      state.completionTokens = tokenCount(usage?.output_tokens);
      // The role chunk waits for the first chunk of the answer (send): an error event before any content must
      // still get its own status (429 rate_limit_error), which the first byte written would have committed as 200.
      return;
    }
    case 'content_block_start':
      return startBlock(state, value, data, sink);
    case 'content_block_delta': {
      const delta = value['delta'] as { type?: unknown; text?: unknown; partial_json?: unknown } | undefined;
      if (delta?.type === 'text_delta' && typeof delta.text === 'string') {
        if (delta.text !== '') sendChunk(state, sink, contentChunk(state, delta.text));
      } else if (
        delta?.type === 'input_json_delta' &&
        typeof delta.partial_json === 'string' &&
        delta.partial_json !== ''
      ) {
        const index = blockIndex(value);
        // Input for a block never started would be dropped: a tool call's arguments would be cut silently. A started
        // block that is not a tool_use of ours (server_tool_use, mcp_tool_use) has input the client never sees.
        if (!state.blocks.has(index))
          throw new GraygateError(
            'upstream_protocol_error',
            `the upstream sent input for block ${index}, which it never started`,
          );
        state.inputsPending.delete(index);
        sendInput(state, index, delta.partial_json, sink);
      } else if (delta?.type === 'text_delta' && delta.text != null) {
        // A fragment that is no text: the upstream's malformed answer, not one quietly left out of it.
        throw wrongFieldType("a text_delta's text", 'a string', delta.text);
      } else if (
        delta?.type === 'input_json_delta' &&
        delta.partial_json != null &&
        typeof delta.partial_json !== 'string'
      )
        throw wrongFieldType("an input_json_delta's partial_json", 'a string', delta.partial_json);
      // thinking_delta, signature_delta, citations_delta have no OpenAI equivalent.
      return;
    }
    case 'content_block_stop': {
      const index = blockIndex(value);
      const input = state.inputsPending.get(index);
      if (input === undefined) return;
      state.inputsPending.delete(index);
      sendInput(state, index, input, sink);
      return;
    }
    case 'message_delta': {
      const delta = value['delta'] as { stop_reason?: unknown } | undefined;
      const usage = value['usage'] as AnthropicUsage | undefined;
      if (usage?.output_tokens !== undefined) state.completionTokens = tokenCount(usage.output_tokens);
      if (usage !== undefined && usage !== null) setPromptTokens(state, usage, true);
      // Anthropic may send more than one message_delta: one finish chunk, the first reason's.
      if (delta?.stop_reason !== undefined && delta.stop_reason !== null && state.finishReason === null) {
        sendPendingInputs(state, sink);
        sendChunk(state, sink, finishChunk(state, mapAnthropicStopReason(delta.stop_reason, state.toolCalls > 0)));
      }
      return;
    }
    case 'message_stop':
      return endMessage(state, sink);
    case 'error': {
      const error = value['error'] as { type?: unknown; message?: unknown } | undefined;
      const message = typeof error?.message === 'string' ? error.message : 'unknown error';
      throw upstreamStreamError(message, mapAnthropicErrorStatus(error?.type));
    }
    default: // ping, and event types added later (Anthropic's versioning policy)
      return;
  }
}

interface AnthropicUsage {
  input_tokens?: unknown;
  output_tokens?: unknown;
  cache_creation_input_tokens?: unknown;
  cache_read_input_tokens?: unknown;
}

/**
 * OpenAI's prompt_tokens counts cached prompt tokens too; Anthropic's input_tokens leaves out those written
 * to and read from its prompt cache, which it counts apart.
 */
/**
 * The prompt's tokens: uncached, written to the cache and read from it. `isUpdate` (message_delta, cumulative): a
 * count it leaves out keeps message_start's (a proxy that repeats only `input_tokens` dropped the cache counts).
 */
function setPromptTokens(state: StreamState, usage: AnthropicUsage | undefined, isUpdate = false): void {
  const given = (count: unknown, before: number): number =>
    isUpdate && (count === undefined || count === null) ? before : tokenCount(count);
  const input = given(usage?.input_tokens, state.promptTokens - state.cacheWriteTokens - state.cachedTokens);
  state.cacheWriteTokens = given(usage?.cache_creation_input_tokens, state.cacheWriteTokens);
  state.cachedTokens = given(usage?.cache_read_input_tokens, state.cachedTokens);
  state.promptTokens = input + state.cacheWriteTokens + state.cachedTokens;
}

function startBlock(state: StreamState, value: Record<string, unknown>, data: string, sink: ChunkSink): void {
  const block = value['content_block'] as
    { type?: unknown; text?: unknown; id?: unknown; name?: unknown; input?: unknown } | undefined;
  if (block?.type === 'text' && typeof block.text === 'string') {
    if (block.text !== '') sendChunk(state, sink, contentChunk(state, block.text));
  } else if (block?.type === 'text' && block.text != null)
    // A block's first text is a fragment too: one that is no text is the upstream's malformed answer, as a delta's is.
    throw wrongFieldType("a text block's text", 'a string', block.text);
  const index = blockIndex(value);
  if (block?.type !== 'tool_use') {
    state.blocks.set(index, OTHER_BLOCK);
    return;
  }
  if (typeof block.id !== 'string' || typeof block.name !== 'string')
    throw new GraygateError('upstream_protocol_error', 'the upstream sent a tool_use block without an id or a name');
  if (state.inputsPending.size >= MAX_OPEN_TOOL_BLOCKS)
    throw new GraygateError(
      'upstream_protocol_error',
      `the upstream left more than ${MAX_OPEN_TOOL_BLOCKS} tool_use blocks open (Anthropic streams one at a time)`,
    );
  // Anthropic starts every tool_use block with `input: {}` and streams the input as fragments; a block
  // that stops without one was called with no arguments.
  state.inputsPending.set(index, isNonEmptyObject(block.input) ? wholeInput(block.input, data) : '{}');
  if (block.name === JSON_ANSWER_TOOL) {
    state.blocks.set(index, JSON_ANSWER_BLOCK);
    return;
  }
  const { chunk, index: callIndex } = toolCallStartChunk(state, block.id, block.name);
  state.blocks.set(index, callIndex);
  sendChunk(state, sink, chunk);
}

/**
 * A tool_use input given whole in its block's start (Anthropic streams it as fragments, which pass as written) as
 * arguments text: a 19-digit id or 1e400 in it is written as the model wrote it, as Ollama's arguments are, from the
 * event parsed exactly; an event with no such number is not parsed twice.
 */
function wholeInput(input: unknown, data: string): string {
  if (!mayHoldInexactNumbers(data)) return JSON.stringify(input);
  const exact = parseJsonExact(data) as { content_block?: { input?: unknown } };
  return stringifyJsonExact(exact.content_block?.input ?? input);
}

/**
 * What blocks the upstream never stopped still owe (a tool called with no input gets `{}`), before the finish: a
 * message that ends with a block open must not leave a tool call's arguments `""` (a fuzz probe's hostile shape).
 */
function sendPendingInputs(state: StreamState, sink: ChunkSink): void {
  if (state.inputsPending.size === 0) return;
  const pending = [...state.inputsPending].sort(([a], [b]) => a - b);
  state.inputsPending.clear();
  for (const [index, input] of pending) sendInput(state, index, input, sink);
}

/** A fragment of a tool_use block's input: an arguments fragment, or content for the JSON-mode answer. */
function sendInput(state: StreamState, index: number, fragment: string, sink: ChunkSink): void {
  const block = state.blocks.get(index);
  if (block === JSON_ANSWER_BLOCK) sendChunk(state, sink, contentChunk(state, fragment));
  else if (block !== undefined && block >= 0) sendChunk(state, sink, toolArgumentsChunk(state, block, fragment));
}

function isNonEmptyObject(value: unknown): boolean {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && Object.keys(value).length > 0;
}

function blockIndex(value: Record<string, unknown>): number {
  return typeof value['index'] === 'number' ? value['index'] : 0;
}

/**
 * The body ended without `message_stop`: whole if `message_delta` brought its `stop_reason` (the finish chunk went
 * out), as an OpenAI stream that ends after its finish without `[DONE]` is; the usage chunk closes it.
 */
function endAnthropicStream(state: StreamState, sink: ChunkSink): void {
  if (state.finishReason === null)
    throw new GraygateError('upstream_protocol_error', 'the upstream response ended before its final event');
  endMessage(state, sink);
}

/** The answer's end (`message_stop`): pending tool input, a finish chunk if none went out, the usage chunk. */
function endMessage(state: StreamState, sink: ChunkSink): void {
  state.isDone = true;
  sendPendingInputs(state, sink);
  if (state.finishReason === null) sendChunk(state, sink, finishChunk(state, 'stop'));
  sink.chunk(usageChunk(state));
}

export const anthropicAdapter: UpstreamAdapter = {
  format: 'anthropic',
  framing: 'sse',
  endpoints: new Set(['chat']),
  buildRequest: buildAnthropicRequest,
  convertEvent: convertAnthropicEvent,
  convertEnd: endAnthropicStream,
};
