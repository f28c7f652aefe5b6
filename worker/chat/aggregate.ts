import type {
  ChatCompletion,
  ChatCompletionChunk,
  ChatOutput,
  ChoiceLogprobs,
  FinishReason,
  TokenLogprob,
  ToolCall,
  Usage,
} from '../types.js';

// A non-streaming answer (SPEC §5 `stream:false`) built from the same chunks a
// stream gets: per choice (an OpenAI upstream may send n of them), its text,
// refusal, tool calls (fragments joined by index, SPEC §12) and log
// probabilities. Text parts are collected in arrays and joined once at the
// end (issue 3 part 2), never `+=` on a growing string.

/** Chunk fields that are the stream's own and are not copied onto the completion. */
const CHUNK_ONLY = new Set(['id', 'object', 'created', 'model', 'choices', 'usage', 'obfuscation']);

interface ToolCallParts {
  id: string;
  type: 'function';
  name: string;
  args: string[];
}

class ChoiceParts {
  readonly content: string[] = [];
  readonly refusal: string[] = [];
  readonly tools = new Map<number, ToolCallParts>();
  logprobs: { content: TokenLogprob[]; refusal: TokenLogprob[] } | undefined;
  finishReason: FinishReason | null = null;
  /**
   * Message fields beyond the ones joined here (`annotations`, a server's
   * `reasoning_content`): strings are joined, other values replaced.
   */
  readonly extra: Record<string, unknown> = {};
}

export class CompletionAggregator implements ChatOutput {
  readonly #choices = new Map<number, ChoiceParts>();
  #first: ChatCompletionChunk | undefined;
  #usage: Usage | undefined;
  contentChunks = 0;

  chunk(chunk: ChatCompletionChunk): void {
    this.#first ??= chunk;
    if (chunk.usage !== undefined && chunk.usage !== null) this.#usage = chunk.usage;
    for (const choice of chunk.choices) {
      const index = typeof choice.index === 'number' ? choice.index : 0;
      let parts = this.#choices.get(index);
      if (parts === undefined) this.#choices.set(index, (parts = new ChoiceParts()));
      const { content, refusal, tool_calls: calls, role: _role, ...rest } = choice.delta;
      if (typeof content === 'string' && content !== '') {
        parts.content.push(content);
        this.contentChunks++;
      }
      if (typeof refusal === 'string' && refusal !== '') parts.refusal.push(refusal);
      for (const call of calls ?? []) {
        let tool = parts.tools.get(call.index);
        if (tool === undefined) parts.tools.set(call.index, (tool = { id: '', type: 'function', name: '', args: [] }));
        if (call.id !== undefined) tool.id = call.id;
        if (call.function?.name !== undefined && call.function.name !== '') tool.name = call.function.name;
        if (call.function?.arguments !== undefined) tool.args.push(call.function.arguments);
      }
      addExtra(parts.extra, rest);
      if (choice.logprobs !== undefined && choice.logprobs !== null) addLogprobs(parts, choice.logprobs);
      if (choice.finish_reason !== null && choice.finish_reason !== undefined)
        parts.finishReason = choice.finish_reason;
    }
  }

  // Nothing is written before the end, so the output never pushes back.
  flush(): boolean {
    return true;
  }

  onWritable(): () => void {
    return () => undefined;
  }

  ping(): void {}

  /** The aggregate is written whole by the JSON answer, which pings the client with `102 Processing` itself. */
  readonly bytesOut = 0;

  toCompletion(): ChatCompletion {
    const first = this.#first;
    const completion: ChatCompletion = {
      id: first?.id ?? '',
      object: 'chat.completion',
      created: first?.created ?? 0,
      model: first?.model ?? '',
      choices: [],
    };
    // An upstream's own top-level fields (system_fingerprint, service_tier) carry over.
    for (const [key, value] of Object.entries(first ?? {})) if (!CHUNK_ONLY.has(key)) completion[key] = value;
    const indexes = [...this.#choices.keys()].sort((a, b) => a - b);
    if (indexes.length === 0) indexes.push(0);
    completion.choices = indexes.map((index) => toChoice(index, this.#choices.get(index) ?? new ChoiceParts()));
    if (this.#usage !== undefined) completion.usage = this.#usage;
    return completion;
  }
}

function addExtra(extra: Record<string, unknown>, delta: Record<string, unknown>): void {
  for (const [key, value] of Object.entries(delta)) {
    const before = extra[key];
    extra[key] = typeof before === 'string' && typeof value === 'string' ? before + value : value;
  }
}

function addLogprobs(parts: ChoiceParts, logprobs: ChoiceLogprobs): void {
  parts.logprobs ??= { content: [], refusal: [] };
  if (Array.isArray(logprobs.content)) parts.logprobs.content.push(...logprobs.content);
  if (Array.isArray(logprobs.refusal)) parts.logprobs.refusal.push(...logprobs.refusal);
}

function toChoice(index: number, parts: ChoiceParts): ChatCompletion['choices'][number] {
  const tools: ToolCall[] = [...parts.tools.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, t]) => ({ id: t.id, type: t.type, function: { name: t.name, arguments: t.args.join('') } }));
  // OpenAI: `content: null` when the model only called tools.
  const content = parts.content.length === 0 && tools.length > 0 ? null : parts.content.join('');
  const message: ChatCompletion['choices'][number]['message'] = {
    role: 'assistant',
    content,
    refusal: parts.refusal.length === 0 ? null : parts.refusal.join(''),
    ...parts.extra,
  };
  if (tools.length > 0) message.tool_calls = tools;
  const logprobs =
    parts.logprobs === undefined
      ? null
      : {
          content: parts.logprobs.content,
          refusal: parts.logprobs.refusal.length === 0 ? null : parts.logprobs.refusal,
        };
  return { index, message, finish_reason: parts.finishReason, logprobs };
}
