import { GraygateError, toResponsesErrorEvent } from '../../shared/errors.js';
import { DONE_EVENT, encodeEvent } from '../sse/encoder.js';
import { SseResponse, type SseResponseOptions } from '../sse/sse-response.js';
import type { BodyConsumer } from '../upstream/pipeline.js';
import { isRecord, parseUpstreamJson, withoutSecrets } from '../upstream/format-adapter.js';
import { readOpenAIEvent } from '../upstream/openai.js';
import { ChoiceFinishes } from '../types.js';
import type { CallResponse } from '../call/call-response.js';
import { usageOf } from './usage-tail.js';

// A streamed answer of an OpenAI upstream relayed event by event (SPEC §12):
// legacy completions (`data:` chunks, `data: [DONE]`) and the Responses API
// (`event: response.output_text.delta` … `event: response.completed`). Each
// event keeps its type and data text; only the framing is the encoder's.
// Each payload is parsed once, as for chat (SPEC §5: invalid JSON is an
// upstream_protocol_error), to know when the stream is complete and to read
// its usage. Legacy completions get their usage chunk asked for always
// (upstream/openai.ts) and forwarded only when the client asked; such a stream
// is also complete when its body ends after every choice asked for sent its
// finish_reason, without `[DONE]` (as TGI and llama.cpp forks end).

/** Responses API events after which the stream is over. */
const RESPONSES_FINAL: ReadonlySet<unknown> = new Set([
  'response.completed',
  'response.incomplete',
  'response.failed',
  'error',
]);

export interface SseRelayOptions extends SseResponseOptions {
  kind: 'completions' | 'responses';
  /** stream_options.include_usage (legacy completions). */
  includeUsage: boolean;
  /** Legacy completions: the choices asked for, each to send its finish_reason when there is no `[DONE]`. */
  choices: number;
}

export class SseRelay extends SseResponse implements CallResponse {
  readonly consumer: BodyConsumer;
  readonly #options: SseRelayOptions;
  #isDone = false;
  /** Responses: the final event was the upstream's `error` or `response.failed`. */
  #isFailed = false;
  #usage: Record<string, unknown> | undefined;
  /** Completions: which of the choices asked for sent their finish_reason. */
  readonly #finishes: ChoiceFinishes;
  /** Responses: the last event's `sequence_number`, which graygate's own error event follows. */
  #sequence = -1;

  constructor(options: SseRelayOptions) {
    super(options);
    this.#options = options;
    this.#finishes = new ChoiceFinishes(options.choices);
    this.consumer = {
      framing: 'sse',
      event: (type, data) => this.#event(type, data),
      body: () => undefined,
      end: () => {
        if (!this.#isDone && !this.#finishes.isComplete)
          throw new GraygateError('upstream_protocol_error', 'the upstream response ended before its final event');
      },
      isComplete: () => this.#isDone,
    };
  }

  complete(): void {
    // Complete without the upstream's `[DONE]` (every choice finished): the client gets one all the same.
    this.finish(this.#options.kind === 'completions' && !this.#isDone ? DONE_EVENT : '', this.#isFailed);
  }

  usage(): { prompt_tokens: number; completion_tokens: number } | undefined {
    return usageOf(this.#usage);
  }

  /**
   * A Responses stream ends in the Responses API's own error event (`event: error`, `{type: "error", code, message,
   * param, sequence_number}`), which its clients read (the AI SDK validates every event's type: OpenAI's chat shape
   * `{"error": …}` failed its validation, not as the API's error).
   */
  protected override errorEvent(err: unknown): string {
    if (this.#options.kind !== 'responses') return super.errorEvent(err);
    return toResponsesErrorEvent(err, this.#sequence + 1);
  }

  #event(type: string, data: string): void {
    if (this.#options.kind === 'completions') {
      const value = readOpenAIEvent(type, data);
      if (value === undefined) {
        this.#isDone = true;
        this.queue(encodeEvent(type, '[DONE]'), false);
        return;
      }
      const choices = value['choices'];
      if (isRecord(value['usage'])) this.#usage = value['usage'];
      if (Array.isArray(choices)) for (const choice of choices) if (isRecord(choice)) this.#finishes.see(choice);
      if (Array.isArray(choices) && choices.length === 0 && !this.#options.includeUsage) return;
      const text = Array.isArray(choices) ? (choices[0] as { text?: unknown } | undefined)?.text : undefined;
      this.queue(encodeEvent(type, data), typeof text === 'string' && text !== '');
      return;
    }
    const value = parseUpstreamJson(data);
    const kind = value['type'];
    const sequence = value['sequence_number'];
    if (typeof sequence === 'number') this.#sequence = sequence;
    if (RESPONSES_FINAL.has(kind)) {
      this.#isDone = true;
      this.#isFailed = kind === 'error' || kind === 'response.failed';
      const usage = (value['response'] as { usage?: unknown } | undefined)?.usage;
      if (isRecord(usage)) this.#usage = usage;
    }
    // An upstream's error goes to the client as the upstream wrote it, but for the worker's own key (SPEC §9).
    const text = kind === 'error' || kind === 'response.failed' ? hiddenInEvent(data, value) : data;
    // Every `*.delta` is generated output: text, refusals, tool-call arguments, reasoning summaries.
    this.queue(encodeEvent(type, text), typeof kind === 'string' && kind.endsWith('.delta'));
  }
}

/**
 * An upstream's error event with the worker's key hidden: in its text, and in its JSON decoded (`sk-proj\/…`,
 * `\u0073k-…` decode back to the key), re-encoded only when that found it.
 */
function hiddenInEvent(data: string, value: Record<string, unknown>): string {
  const text = withoutSecrets(data);
  const hidden = JSON.stringify(value, (_key, v: unknown) => (typeof v === 'string' ? withoutSecrets(v) : v));
  return hidden === JSON.stringify(value) ? text : hidden;
}
