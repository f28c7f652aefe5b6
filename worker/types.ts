// The worker's shared vocabulary (issue 11 part 2), the leaf every worker
// folder imports and that imports none of them, so chat/, upstream/ and sse/
// form a tree: the OpenAI chat.completion(.chunk) shapes the gateway answers
// with whatever the upstream format (SPEC §5, §12), the sink converted chunks
// go to, and the per-stream converter state.

export type FinishReason = 'stop' | 'length' | 'tool_calls' | 'content_filter' | 'function_call';

export interface Usage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens: number;
  [key: string]: unknown;
}

/**
 * One fragment of a streamed tool call (SPEC §12): the first of a call
 * has id, type and name; later ones only `function.arguments`.
 */
export interface ToolCallDelta {
  index: number;
  id?: string;
  type?: 'function';
  function?: { name?: string; arguments?: string };
}

/** A whole tool call, as a non-streaming answer carries it. */
export interface ToolCall {
  id: string;
  type: 'function';
  function: { name: string; arguments: string };
}

/** OpenAI's per-token log probabilities (`logprobs.content[]`). */
export interface TokenLogprob {
  token: string;
  logprob: number;
  bytes: number[] | null;
  top_logprobs: Array<{ token: string; logprob: number; bytes: number[] | null }>;
}

export interface ChoiceLogprobs {
  content: TokenLogprob[] | null;
  refusal?: TokenLogprob[] | null;
}

export interface ChunkDelta {
  role?: 'assistant';
  content?: string | null;
  refusal?: string | null;
  tool_calls?: ToolCallDelta[];
  [key: string]: unknown;
}

export interface ChunkChoice {
  index: number;
  delta: ChunkDelta;
  finish_reason: FinishReason | null;
  logprobs?: ChoiceLogprobs | null;
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

export interface CompletionMessage {
  role: 'assistant';
  /** null when the answer is only tool calls, as OpenAI sends it. */
  content: string | null;
  refusal: string | null;
  tool_calls?: ToolCall[];
  [key: string]: unknown;
}

export interface ChatCompletion {
  id: string;
  object: 'chat.completion';
  created: number;
  model: string;
  choices: Array<{
    index: number;
    message: CompletionMessage;
    finish_reason: FinishReason | null;
    logprobs: ChoiceLogprobs | null;
  }>;
  usage?: Usage;
  [key: string]: unknown;
}

/**
 * Where converters put their output. `raw` is the chunk's JSON when the
 * upstream already sent it in OpenAI form, so the encoder need not serialise
 * it again (issue 3: no second JSON.stringify per event).
 */
export interface ChunkSink {
  chunk(chunk: ChatCompletionChunk, raw?: string): void;
}

/**
 * What the upstream pipeline drives (upstream/pipeline.ts): backpressure
 * and keep-alive of one answer, whatever its shape.
 */
export interface CallOutput {
  /** End of one upstream chunk: write what it produced. False: stop reading until `onWritable` calls back. */
  flush(): boolean;
  /** Calls `resume` once the output can take more (the response's 'drain' event). Returns a disposer. */
  onWritable(resume: () => void): () => void;
  /** The client has been sent nothing for pingIntervalMs (issue 3 part 7). */
  ping(): void;
  /** Bytes written to the client so far: the pipeline's ping timer restarts when they grow. */
  readonly bytesOut: number;
}

/**
 * Where an upstream chat call's chunks go: an SSE response (chat/sse-writer.ts)
 * or a non-streaming aggregate (chat/aggregate.ts).
 */
export interface ChatOutput extends ChunkSink, CallOutput {}

/** Per-stream converter state. Created by the handler with an id and clock reading, so converters stay pure. */
export interface StreamState {
  readonly id: string;
  /** Unix seconds. */
  readonly created: number;
  /** The model asked for, then the one the upstream says answered (Anthropic's dated snapshot for an alias). */
  model: string;
  isRoleSent: boolean;
  /** The upstream sent its final event (`[DONE]`, `done: true`, `message_stop`). */
  isDone: boolean;
  finishReason: FinishReason | null;
  /** OpenAI upstreams: which of the choices asked for sent their finish_reason (complete without `[DONE]`). */
  readonly finishes: ChoiceFinishes;
  promptTokens: number;
  /** Of promptTokens, those read from the upstream's prompt cache (OpenAI's `prompt_tokens_details.cached_tokens`). */
  cachedTokens: number;
  /** Of promptTokens, those written to the upstream's prompt cache (Anthropic's `cache_creation_input_tokens`). */
  cacheWriteTokens: number;
  completionTokens: number;
  usage: Usage | undefined;
  /** Tool calls sent so far: the next one's `index` (SPEC §12). */
  toolCalls: number;
  /**
   * Anthropic: content-block index → what the block becomes, a tool call's
   * `index`, JSON_ANSWER_BLOCK for the block that carries a JSON-mode
   * answer (upstream/anthropic-tools.ts), re-emitted as content, or
   * OTHER_BLOCK for any other block started (text, thinking, a server tool's).
   */
  readonly blocks: Map<number, number>;
  /**
   * Anthropic: blocks of `blocks` that have had no `input_json_delta` yet → the input to send when the block
   * stops without one: `{}` (a tool called with no arguments streams no fragment at all; OpenAI always sends a
   * JSON object), or the block start's own input where an Anthropic-compatible upstream puts it there.
   */
  readonly inputsPending: Map<number, string>;
}

/**
 * The choices an OpenAI-format stream was asked for (`n`; a legacy completion's `n` for each prompt) and those that
 * sent their finish_reason: a body that ends once all did is complete without `[DONE]` (TGI, llama.cpp forks and
 * others end so). A choice's finish_reason repeated (on a usage chunk) counts once.
 */
export class ChoiceFinishes {
  readonly #asked: number;
  #finished: Set<number> | undefined;

  constructor(asked: number) {
    this.#asked = asked;
  }

  /** A choice of a chunk: counted, by its index, if it carries a finish_reason. */
  see(choice: { finish_reason?: unknown; index?: unknown }): void {
    const finish = choice.finish_reason;
    if (finish === null || finish === undefined) return;
    const index = choice.index ?? 0;
    const finished = (this.#finished ??= new Set());
    if (Number.isInteger(index) && finished.size < this.#asked) finished.add(index as number);
  }

  get isComplete(): boolean {
    return (this.#finished?.size ?? 0) >= this.#asked;
  }
}

/** StreamState.blocks value of the block whose tool input is the answer itself (Anthropic JSON mode). */
export const JSON_ANSWER_BLOCK = -1;
/** StreamState.blocks value of a started block with nothing to send from its input (text, a server tool's use). */
export const OTHER_BLOCK = -2;

export function createStreamState(init: { id: string; created: number; model: string; choices?: number }): StreamState {
  return {
    id: init.id,
    created: init.created,
    model: init.model,
    isRoleSent: false,
    isDone: false,
    finishReason: null,
    finishes: new ChoiceFinishes(init.choices ?? 1),
    promptTokens: 0,
    cachedTokens: 0,
    cacheWriteTokens: 0,
    completionTokens: 0,
    usage: undefined,
    toolCalls: 0,
    blocks: new Map(),
    inputsPending: new Map(),
  };
}

/** The OpenAI endpoints a worker serves (SPEC §5, §12); a format serves a subset (upstream/format-adapter.ts). */
export type EndpointKind = 'chat' | 'embeddings' | 'completions' | 'responses';

/** The endpoints other than chat: their bodies pass through (OpenAI) or are converted whole (Ollama embeddings). */
export type RelayKind = Exclude<EndpointKind, 'chat'>;

/** How an embeddings answer carries its vectors (OpenAI `encoding_format`; the official npm client asks for base64). */
export type EmbeddingEncoding = 'float' | 'base64';
