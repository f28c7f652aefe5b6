import type { ChatCompletionChunk, FinishReason, StreamState, Usage } from '../types.js';

// The OpenAI chunks the ollama and anthropic converters build, in the order
// OpenAI sends them: a role chunk (`content: ""`), content deltas, a chunk
// with finish_reason and an empty delta, and a usage chunk with no choices.

export function roleChunk(state: StreamState): ChatCompletionChunk {
  state.isRoleSent = true;
  return chunkOf(state, { role: 'assistant', content: '' }, null);
}

export function contentChunk(state: StreamState, content: string): ChatCompletionChunk {
  return chunkOf(state, { content }, null);
}

export function finishChunk(state: StreamState, reason: FinishReason): ChatCompletionChunk {
  state.finishReason = reason;
  return chunkOf(state, {}, reason);
}

export function usageChunk(state: StreamState): ChatCompletionChunk {
  const usage: Usage = { prompt_tokens: state.promptTokens, completion_tokens: state.completionTokens, total_tokens: state.promptTokens + state.completionTokens };
  state.usage = usage;
  return { id: state.id, object: 'chat.completion.chunk', created: state.created, model: state.model, choices: [], usage };
}

function chunkOf(state: StreamState, delta: ChatCompletionChunk['choices'][number]['delta'], finishReason: FinishReason | null): ChatCompletionChunk {
  return {
    id: state.id,
    object: 'chat.completion.chunk',
    created: state.created,
    model: state.model,
    choices: [{ index: 0, delta, finish_reason: finishReason }],
  };
}
