import type { ChoiceLogprobs, ChunkSink, FinishReason, StreamState, TokenLogprob } from '../types.js';
import { mayHoldInexactNumbers, parseJsonExact, stringifyJsonExact } from '../request/exact-numbers.js';
import { GraygateError } from '../../shared/errors.js';
import {
  isError,
  parseUpstreamJson,
  withoutBomText,
  tokenCount,
  upstreamStreamError,
  type UpstreamAdapter,
  isModelName,
  isRecord,
  upstreamErrorMessage,
  wrongFieldType,
} from './format-adapter.js';
import {
  contentChunk,
  finishChunk,
  reasoningChunk,
  sendChunk,
  syntheticToolCallId,
  usageChunk,
  wholeToolCallChunks,
} from './chunk-builders.js';
import { buildOllamaRequest } from './ollama-request.js';
import { buildOllamaEmbedRequest, convertOllamaEmbedAnswer } from './ollama-embed.js';

// Ollama upstream (SPEC §2: `{url}/api/chat`): one JSON object per line
// (NDJSON). Each line carries `message.content`, and `message.tool_calls`
// when the model calls tools: whole calls, arguments as an object (SPEC §12),
// which become OpenAI's fragments here. The last line has `done: true`,
// `done_reason` and the token counts (prompt_eval_count, eval_count). A
// thinking model's `message.thinking` becomes `delta.reasoning`.
// https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion

export { buildOllamaRequest };

/**
 * Ollama's done_reason → OpenAI finish_reason. "load"/"unload" never come
 * with content; treat them as stop. Tool calls made: tool_calls.
 */
export function mapOllamaDoneReason(reason: unknown, hasToolCalls = false): FinishReason {
  if (reason === 'length') return 'length';
  return hasToolCalls ? 'tool_calls' : 'stop';
}

interface OllamaToolCall {
  id?: unknown;
  function?: { name?: unknown; arguments?: unknown };
}

export function convertOllamaLine(state: StreamState, _type: string, line: string, sink: ChunkSink): void {
  if (line.trim() === '') return; // blank lines between documents are harmless
  // A byte-order mark before the first document (dropped before SSE events and whole answers too).
  const text = state.isRoleSent ? line : withoutBomText(line);
  const value = parseUpstreamJson(text);
  const error = value['error'];
  if (typeof error === 'string' && isError(error)) throw upstreamStreamError(error);
  // `{"error":{"message":…}}`: not Ollama's own, but a proxy's or a gateway's in front of it.
  if (isRecord(error)) throw upstreamStreamError(upstreamErrorMessage(text));
  // The model that answered, as Ollama names it (`llama3.2` asked, `llama3.2:latest` answered), as OpenAI does. The
  // role chunk goes before the first chunk (a line of empty content may come first): `content: null` before a tool
  // call, as OpenAI's.
  if (!state.isRoleSent && isModelName(value['model'])) state.model = value['model'];
  const message = value['message'] as { content?: unknown; thinking?: unknown; tool_calls?: unknown } | undefined;
  // What the line says that is not of a type converted (content as an array of parts, tool_calls as one call) is the
  // upstream's malformed answer: dropped, the client's answer was quietly empty.
  if (message != null && !isRecord(message)) throw wrongFieldType('message', 'an object', message);
  // A thinking model's reasoning (Ollama ≥ 0.9), which comes before its content.
  const thinking = message?.thinking;
  if (typeof thinking === 'string') {
    if (thinking !== '') sendChunk(state, sink, reasoningChunk(state, thinking));
  } else if (thinking != null) throw wrongFieldType('message.thinking', 'a string', thinking);
  const content = message?.content;
  if (typeof content === 'string') {
    if (content !== '') sendChunk(state, sink, contentChunk(state, content, logprobsOf(value['logprobs'])));
  } else if (content != null) throw wrongFieldType('message.content', 'a string', content);
  const calls = message?.tool_calls;
  if (calls != null && !Array.isArray(calls)) throw wrongFieldType('message.tool_calls', 'an array', calls);
  if (Array.isArray(calls)) {
    if (calls.length > MAX_LINE_TOOL_CALLS)
      throw new GraygateError(
        'upstream_protocol_error',
        `the upstream sent more than ${MAX_LINE_TOOL_CALLS} tool calls in one line`,
      );
    // Tool calls' arguments come as objects and go out as JSON text: read from the line parsed exactly, a 19-digit id
    // or 1e400 in them is written as the model wrote it (JSON.parse rounded the one and made the other null), as
    // requests' are. Only the arguments: every other number of the line is the plain parse's. A line with no such
    // number is not parsed twice.
    const exact = mayHoldInexactNumbers(text)
      ? (parseJsonExact(text) as { message?: { tool_calls?: OllamaToolCall[] } }).message?.tool_calls
      : undefined;
    (calls as OllamaToolCall[]).forEach((call, i) =>
      sendToolCall(state, call, exact?.[i]?.function?.arguments ?? call.function?.arguments, sink),
    );
  }
  if (value['done'] === true) {
    state.isDone = true;
    state.promptTokens = tokenCount(value['prompt_eval_count']);
    state.completionTokens = tokenCount(value['eval_count']);
    sendChunk(state, sink, finishChunk(state, mapOllamaDoneReason(value['done_reason'], state.toolCalls > 0)));
    sink.chunk(usageChunk(state));
  }
}

/**
 * Tool calls one line may hold, and log probabilities (with `top_logprobs` each, OpenAI's most): each becomes chunks
 * of ~20 and ~55 times its smallest JSON, written in one batch (an amplification audit: a 1 MiB line of calls was
 * 42.7 MB of SSE and 0.8 s of the loop). Ollama sends a token's log probabilities a line, and its calls in one line.
 */
const MAX_LINE_TOOL_CALLS = 1024;
const MAX_LINE_LOGPROBS = 1024;
const MAX_TOP_LOGPROBS = 20;

const isTooMany = (list: unknown, max: number): boolean => Array.isArray(list) && list.length > max;

function sendToolCall(state: StreamState, call: OllamaToolCall, exactArgs: unknown, sink: ChunkSink): void {
  const name = call.function?.name;
  if (typeof name !== 'string' || name === '')
    throw new GraygateError('upstream_protocol_error', 'the upstream sent a tool call without a function name');
  const args = exactArgs ?? {};
  // Ollama ≥ 0.12.10 gives each call an id; older ones give none.
  const id = typeof call.id === 'string' && call.id !== '' ? call.id : syntheticToolCallId(state, state.toolCalls);
  for (const chunk of wholeToolCallChunks(state, id, name, typeof args === 'string' ? args : stringifyJsonExact(args)))
    sendChunk(state, sink, chunk);
}

interface OllamaLogprob {
  token?: unknown;
  logprob?: unknown;
  bytes?: unknown;
  top_logprobs?: unknown;
}

/**
 * Ollama's `logprobs` of one line (Ollama ≥ 0.12.11) → OpenAI's `logprobs.content`; undefined when the line has none.
 */
export function logprobsOf(value: unknown): ChoiceLogprobs | undefined {
  if (!Array.isArray(value) || value.length === 0) return undefined;
  if (
    isTooMany(value, MAX_LINE_LOGPROBS) ||
    (value as OllamaLogprob[]).some((p) => isTooMany(p?.top_logprobs, MAX_TOP_LOGPROBS))
  )
    throw new GraygateError(
      'upstream_protocol_error',
      `the upstream sent more than ${MAX_LINE_LOGPROBS} log probabilities in one line, or more than ` +
        `${MAX_TOP_LOGPROBS} top_logprobs for a token`,
    );
  const token = (p: OllamaLogprob): Omit<TokenLogprob, 'top_logprobs'> => ({
    token: typeof p.token === 'string' ? p.token : '',
    logprob: typeof p.logprob === 'number' ? p.logprob : 0,
    bytes: isUtf8Bytes(p.bytes) ? p.bytes : null,
  });
  const content = (value as OllamaLogprob[]).map((p) => ({
    ...token(p),
    top_logprobs: Array.isArray(p.top_logprobs) ? (p.top_logprobs as OllamaLogprob[]).map(token) : [],
  }));
  return { content, refusal: null };
}

/** A token's UTF-8 bytes as OpenAI gives them: integers 0–255 (anything else from the upstream is not passed on). */
function isUtf8Bytes(value: unknown): value is number[] {
  return Array.isArray(value) && value.every((b) => Number.isInteger(b) && (b as number) >= 0 && (b as number) <= 255);
}

export const ollamaAdapter: UpstreamAdapter = {
  format: 'ollama',
  framing: 'ndjson',
  endpoints: new Set(['chat', 'embeddings']),
  buildRequest: buildOllamaRequest,
  convertEvent: convertOllamaLine,
  buildEndpointRequest: (kind, req, options) => buildOllamaEmbedRequest(kind, req, options),
  convertAnswer: convertOllamaEmbedAnswer,
};
