import type { ChatCompletionChunk, ChatOutput } from '../types.js';
import { DONE_EVENT, encodeChunk } from '../sse/encoder.js';
import { SseResponse, type SseResponseOptions } from '../sse/sse-response.js';
import { NOT_PLAIN, scanPlainChunk } from '../sse/openai-chunk-scan.js';

// A streaming chat answer (SPEC §5, issue 3 parts 6–8): OpenAI chunks as SSE
// events, `data: [DONE]` at the end (sse/sse-response.ts does the writing).

export interface SseWriterOptions extends SseResponseOptions {
  /** stream_options.include_usage: forward the usage chunk. */
  includeUsage: boolean;
}

export class SseWriter extends SseResponse implements ChatOutput {
  readonly #includeUsage: boolean;

  constructor(options: SseWriterOptions) {
    super(options);
    this.#includeUsage = options.includeUsage;
  }

  chunk(chunk: ChatCompletionChunk, raw?: string): void {
    // The usage chunk (`choices: []`, `usage`) goes out only when the client asked with stream_options.include_usage;
    // another with no choices (Azure's `prompt_filter_results` first) is the upstream's, and goes out.
    if (!this.#includeUsage && chunk.choices.length === 0 && chunk.usage !== undefined && chunk.usage !== null) return;
    const delta = chunk.choices[0]?.delta;
    // A tool call's fragments are the answer as much as text is (SPEC §12), and a reasoning model's thinking, which
    // the client is sent as it comes, is the model's output as much as its answer is: its first token is the first.
    const isContent =
      delta !== undefined &&
      (isText(delta.content) ||
        isText(delta.refusal) ||
        delta.tool_calls !== undefined ||
        isText(delta['reasoning']) ||
        isText(delta['reasoning_content']));
    this.queue(encodeChunk(chunk, raw), isContent);
  }

  /**
   * A chunk of an OpenAI upstream's body made only of plain events (sse/openai-chunk-scan.ts) goes out as it came;
   * false, with nothing done, for any other.
   */
  relayPlain(bytes: Buffer): boolean {
    const contentEvents = scanPlainChunk(bytes);
    if (contentEvents === NOT_PLAIN) return false;
    this.queueBytes(bytes, contentEvents);
    return true;
  }

  /** The upstream finished: pending chunks, `[DONE]`, end. */
  complete(): void {
    this.finish(DONE_EVENT);
  }
}

function isText(value: unknown): boolean {
  return typeof value === 'string' && value !== '';
}
