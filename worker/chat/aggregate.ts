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
import { GraygateError } from '../../shared/errors.js';
import type { AnswerShare } from '../call/answer-share.js';

// A non-streaming answer (SPEC §5 `stream:false`) of an Ollama or Anthropic
// upstream, built from the same chunks a stream gets: per choice, its text,
// refusal, tool calls (fragments joined by index, SPEC §12) and log
// probabilities. Text parts are collected in arrays and joined once at the
// end (issue 3 part 2), never `+=` on a growing string.

// What each thing the answer holds is counted as, UTF-16 units besides its strings' lengths: the heap it takes here,
// in the completion built from it and in that completion's JSON, measured on Node 20 and 22
// (`node dist/scripts/bench/aggregate-memory.js`), so that the bound is one on memory. A fixed 64 a thing let a
// hostile upstream's many tool calls, choices or short fragments hold 3 to 11 times the bound.
/** A choice: its parts, their arrays and map, and its message object in the completion. */
const CHOICE_UNITS = 800;
/** A tool call: its parts, its map entry and the call object in the completion. */
const TOOL_CALL_UNITS = 480;
/** A fragment of text or arguments kept to be joined: its string's header and its array slot. */
const PIECE_UNITS = 32;
/** A fragment of another string field (`reasoning`), joined as it comes: its string and the link joining it. */
const JOINED_UNITS = 56;
/** One log probability entry (or one of its top_logprobs): the parsed object, its arrays and its JSON. */
const LOGPROB_ENTRY_UNITS = 224;
/** What one number of a log probability's `bytes` is counted as holding. */
const BYTE_UNITS = 8;

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
  /** What the answer may hold: text, tool arguments and log probabilities (their tokens and a fixed size each). */
  readonly #maxHeld: number;
  #held = 0;
  /** Its worker's budget for all answers held whole (limits.maxBufferedAnswerBytes). */
  readonly #share: AnswerShare | undefined;
  /** The first chunk: the completion's id, created and model (the converters' chunks all carry them). */
  #identity: ChatCompletionChunk | undefined;
  #usage: Usage | undefined;
  contentChunks = 0;

  /**
   * `maxHeld`: what the answer may hold, in the units above (default: no bound); `share`: its worker's budget for
   * answers held whole (limits.maxBufferedAnswerBytes), which they are taken from.
   */
  constructor(options: { maxHeld?: number; share?: AnswerShare } = {}) {
    this.#maxHeld = options.maxHeld ?? Infinity;
    this.#share = options.share;
  }

  chunk(chunk: ChatCompletionChunk): void {
    this.#identity ??= chunk;
    if (chunk.usage !== undefined && chunk.usage !== null) this.#usage = chunk.usage;
    for (const choice of chunk.choices) {
      const index = typeof choice.index === 'number' ? choice.index : 0;
      let parts = this.#choices.get(index);
      if (parts === undefined) {
        this.#choices.set(index, (parts = new ChoiceParts()));
        this.#hold(CHOICE_UNITS);
      }
      const { content, refusal, tool_calls: calls, role: _role, ...rest } = choice.delta;
      if (typeof content === 'string' && content !== '') {
        parts.content.push(content);
        this.#hold(PIECE_UNITS + content.length);
        this.contentChunks++;
      }
      if (typeof refusal === 'string' && refusal !== '') {
        parts.refusal.push(refusal);
        this.#hold(PIECE_UNITS + refusal.length);
      }
      for (const call of calls ?? []) {
        let tool = parts.tools.get(call.index);
        if (tool === undefined) {
          parts.tools.set(call.index, (tool = { id: '', type: 'function', name: '', args: [] }));
          this.#hold(TOOL_CALL_UNITS);
        }
        // Each id and name counted as it comes (one replacing another frees it: counting both errs on the safe side).
        if (typeof call.id === 'string') {
          tool.id = call.id;
          this.#hold(call.id.length);
        }
        const name = call.function?.name;
        if (typeof name === 'string' && name !== '') {
          tool.name = name;
          this.#hold(name.length);
        }
        const args = call.function?.arguments;
        if (args !== undefined) {
          tool.args.push(args);
          this.#hold(PIECE_UNITS + (typeof args === 'string' ? args.length : 0));
        }
      }
      this.#hold(addExtra(parts.extra, rest));
      if (choice.logprobs !== undefined && choice.logprobs !== null) {
        this.#hold(addLogprobs(parts, choice.logprobs));
      }
      if (choice.finish_reason !== null && choice.finish_reason !== undefined)
        parts.finishReason = choice.finish_reason;
    }
  }

  /** A non-streamed answer is joined in memory: past its bound the client must ask for a stream. */
  #hold(units: number): void {
    this.#held += units;
    if (this.#held > this.#maxHeld) {
      throw new GraygateError(
        'answer_too_large',
        `the answer is larger than the ${Math.round(this.#maxHeld / 1048576)} MiB a non-streamed answer may hold; ` +
          'ask for it with stream: true',
        // The same request would make the upstream generate (and bill) the same answer again.
        { shouldRetry: false },
      );
    }
    this.#share?.take(units);
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
    const identity = this.#identity;
    const completion: ChatCompletion = {
      id: identity?.id ?? '',
      object: 'chat.completion',
      created: identity?.created ?? 0,
      model: identity?.model ?? '',
      choices: [],
    };
    const indexes = [...this.#choices.keys()].sort((a, b) => a - b);
    if (indexes.length === 0) indexes.push(0);
    completion.choices = indexes.map((index) => toChoice(index, this.#choices.get(index) ?? new ChoiceParts()));
    if (this.#usage !== undefined) completion.usage = this.#usage;
    return completion;
  }
}

/** Joins the delta's other fields into the message's; returns what the strings joined hold. */
function addExtra(extra: Record<string, unknown>, delta: Record<string, unknown>): number {
  let added = 0;
  for (const [key, value] of Object.entries(delta)) {
    const before = extra[key];
    if (typeof value === 'string') added += JOINED_UNITS + value.length;
    extra[key] = typeof before === 'string' && typeof value === 'string' ? before + value : value;
  }
  return added;
}

/** Adds a chunk's log probabilities to the choice's; returns what they hold (no re-serialising). */
function addLogprobs(parts: ChoiceParts, logprobs: ChoiceLogprobs): number {
  parts.logprobs ??= { content: [], refusal: [] };
  return addEntries(parts.logprobs.content, logprobs.content) + addEntries(parts.logprobs.refusal, logprobs.refusal);
}

function addEntries(to: TokenLogprob[], from: TokenLogprob[] | null | undefined): number {
  if (!Array.isArray(from)) return 0;
  let units = 0;
  for (const entry of from) {
    to.push(entry); // one by one: a spread of a hostile line's 300,000 entries overflows the stack
    units += LOGPROB_ENTRY_UNITS + entry.token.length + (entry.bytes?.length ?? 0) * BYTE_UNITS;
    for (const top of entry.top_logprobs)
      units += LOGPROB_ENTRY_UNITS + top.token.length + (top.bytes?.length ?? 0) * BYTE_UNITS;
  }
  return units;
}

function toChoice(index: number, parts: ChoiceParts): ChatCompletion['choices'][number] {
  const tools: ToolCall[] = [...parts.tools.entries()]
    .sort(([a], [b]) => a - b)
    .map(([, t]) => ({ id: t.id, type: t.type, function: { name: t.name, arguments: t.args.join('') } }));
  // OpenAI: `content: null` when the model only called tools, or only refused, or was stopped by a content filter
  // before any text (Anthropic's `refusal` with no block; what a streamed answer's SDK rebuilds too).
  const isNoText = tools.length > 0 || parts.refusal.length > 0 || parts.finishReason === 'content_filter';
  const content = parts.content.length === 0 && isNoText ? null : parts.content.join('');
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
