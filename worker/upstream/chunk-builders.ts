import type {
  ChatCompletionChunk,
  ChoiceLogprobs,
  ChunkDelta,
  ChunkSink,
  FinishReason,
  StreamState,
  Usage,
} from '../types.js';

// The OpenAI chunks the ollama and anthropic converters build, in the order
// OpenAI sends them: a role chunk (`content: ""`), content deltas or tool-call
// fragments, a chunk with finish_reason and an empty delta, and a usage chunk
// with no choices.

/**
 * The role chunk: `content: ""` before text, `content: null` before a tool call, as OpenAI sends them (a client that
 * opens a text part on a string, as the AI SDK does, had an empty one before every converted tool call).
 */
function roleChunk(state: StreamState, isToolCallNext: boolean): ChatCompletionChunk {
  state.isRoleSent = true;
  return chunkOf(state, { role: 'assistant', content: isToolCallNext ? null : '' }, null);
}

/** A chunk of the answer, after the role chunk OpenAI sends first (sent before the first, when it knows what). */
export function sendChunk(state: StreamState, sink: ChunkSink, chunk: ChatCompletionChunk): void {
  if (!state.isRoleSent) sink.chunk(roleChunk(state, chunk.choices[0]?.delta.tool_calls !== undefined));
  sink.chunk(chunk);
}

export function contentChunk(state: StreamState, content: string, logprobs?: ChoiceLogprobs): ChatCompletionChunk {
  const chunk = chunkOf(state, { content }, null);
  if (logprobs !== undefined) chunk.choices[0]!.logprobs = logprobs;
  return chunk;
}

/**
 * A model's reasoning (Ollama's `thinking`) as `delta.reasoning`, the field Ollama's own OpenAI-compatible endpoint
 * and vLLM stream it in; OpenAI's SDK passes it through untouched, and it is not the answer's content.
 */
export function reasoningChunk(state: StreamState, reasoning: string): ChatCompletionChunk {
  return chunkOf(state, { reasoning }, null);
}

/**
 * The first fragment of a new tool call, as OpenAI streams it: index, id,
 * type and name, empty arguments (SPEC §12). Returns the call's index too,
 * for the argument fragments that follow.
 */
export function toolCallStartChunk(
  state: StreamState,
  id: string,
  name: string,
): { chunk: ChatCompletionChunk; index: number } {
  const index = state.toolCalls++;
  return {
    chunk: chunkOf(state, { tool_calls: [{ index, id, type: 'function', function: { name, arguments: '' } }] }, null),
    index,
  };
}

/** A later fragment of tool call `index`: arguments only. */
export function toolArgumentsChunk(state: StreamState, index: number, fragment: string): ChatCompletionChunk {
  return chunkOf(state, { tool_calls: [{ index, function: { arguments: fragment } }] }, null);
}

/** A tool call the upstream sent whole (Ollama): its first fragment, then all its arguments in one. */
export function wholeToolCallChunks(state: StreamState, id: string, name: string, args: string): ChatCompletionChunk[] {
  const { chunk, index } = toolCallStartChunk(state, id, name);
  return args === '' ? [chunk] : [chunk, toolArgumentsChunk(state, index, args)];
}

export function finishChunk(state: StreamState, reason: FinishReason): ChatCompletionChunk {
  state.finishReason = reason;
  return chunkOf(state, {}, reason);
}

export function usageChunk(state: StreamState): ChatCompletionChunk {
  const usage: Usage = {
    prompt_tokens: state.promptTokens,
    completion_tokens: state.completionTokens,
    total_tokens: state.promptTokens + state.completionTokens,
  };
  if (state.cachedTokens > 0) usage['prompt_tokens_details'] = { cached_tokens: state.cachedTokens };
  state.usage = usage;
  return {
    id: state.id,
    object: 'chat.completion.chunk',
    created: state.created,
    model: state.model,
    choices: [],
    usage,
  };
}

/**
 * A tool-call id for an upstream that sent none: unique within the
 * answer and, through the answer's own random id, across answers.
 */
export function syntheticToolCallId(state: StreamState, index: number): string {
  return `call_${state.id.slice(state.id.indexOf('-') + 1)}_${index}`;
}

function chunkOf(state: StreamState, delta: ChunkDelta, finishReason: FinishReason | null): ChatCompletionChunk {
  return {
    id: state.id,
    object: 'chat.completion.chunk',
    created: state.created,
    model: state.model,
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  };
}
