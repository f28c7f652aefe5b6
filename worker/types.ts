// The worker's shared vocabulary (issue 11 part 2), the leaf every worker
// folder imports and that imports none of them, so chat/, upstream/ and sse/
// form a tree: the OpenAI chat.completion(.chunk) shapes the gateway answers
// with whatever the upstream format (SPEC §5), the sink converted chunks go
// to, and the per-stream converter state.

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

/** Where an upstream call's chunks go: an SSE response (chat/sse-writer.ts) or a non-streaming aggregate (chat/aggregate.ts). */
export interface ChatOutput extends ChunkSink {
  /** End of one upstream chunk: write what it produced. False: stop reading until `onWritable` calls back. */
  flush(): boolean;
  /** Calls `resume` once the output can take more (the response's 'drain' event). Returns a disposer. */
  onWritable(resume: () => void): () => void;
  /** The upstream was silent for pingIntervalMs (issue 3 part 7). */
  ping(): void;
}

/** Per-stream converter state. Created by the handler with an id and clock reading, so converters stay pure. */
export interface StreamState {
  readonly id: string;
  /** Unix seconds. */
  readonly created: number;
  readonly model: string;
  isRoleSent: boolean;
  /** The upstream sent its final event (`[DONE]`, `done: true`, `message_stop`). */
  isDone: boolean;
  finishReason: FinishReason | null;
  promptTokens: number;
  completionTokens: number;
  usage: Usage | undefined;
}

export function createStreamState(init: { id: string; created: number; model: string }): StreamState {
  return { ...init, isRoleSent: false, isDone: false, finishReason: null, promptTokens: 0, completionTokens: 0, usage: undefined };
}
