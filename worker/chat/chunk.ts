// OpenAI chat.completion.chunk and chat.completion shapes (SPEC §5), the
// gateway's output whatever the upstream format.

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
}

export interface ChunkChoice {
  index: number;
  delta: { role?: 'assistant'; content?: string; [key: string]: unknown };
  finish_reason: FinishReason | null;
  [key: string]: unknown;
}

export interface ChatCompletionChunk {
  id: string;
  object: 'chat.completion.chunk';
  created: number;
  model: string;
  choices: ChunkChoice[];
  usage?: Usage | null;
  [key: string]: unknown;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{ index: number; message: { role: 'assistant'; content: string; refusal: null }; finish_reason: FinishReason | null; logprobs: null }>;
  usage?: Usage;
}

/**
 * Where converters put their output. `raw` is the chunk's JSON when the
 * upstream already sent it in OpenAI form, so the encoder need not serialise
 * it again (issue 3: no second JSON.stringify per event).
 */
export interface ChunkSink {
  chunk(chunk: ChatCompletionChunk, raw?: string): void;
}

/** A usage-only chunk (`choices: []`), sent only when the client asked with stream_options.include_usage. */
export function isUsageChunk(chunk: ChatCompletionChunk): boolean {
  return chunk.choices.length === 0;
}

export function makeUsage(promptTokens: number, completionTokens: number): Usage {
  return { prompt_tokens: promptTokens, completion_tokens: completionTokens, total_tokens: promptTokens + completionTokens };
}
