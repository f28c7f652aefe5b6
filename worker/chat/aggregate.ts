import type { ChatCompletion, ChatCompletionChunk, ChatOutput, FinishReason, Usage } from '../types.js';

// A non-streaming answer (SPEC §5 `stream:false`) built from the same chunks a
// stream gets. Content parts are collected in an array and joined once at the
// end (issue 3 part 2), never `+=` on a growing string.

export class CompletionAggregator implements ChatOutput {
  readonly #parts: string[] = [];
  #id = '';
  #created = 0;
  #model = '';
  #finishReason: FinishReason | null = null;
  #usage: Usage | undefined;
  contentChunks = 0;

  chunk(chunk: ChatCompletionChunk): void {
    if (this.#id === '') {
      this.#id = chunk.id;
      this.#created = chunk.created;
      this.#model = chunk.model;
    }
    if (chunk.usage !== undefined && chunk.usage !== null) this.#usage = chunk.usage;
    const choice = chunk.choices[0];
    if (choice === undefined) return;
    const content = choice.delta.content;
    if (typeof content === 'string' && content !== '') {
      this.#parts.push(content);
      this.contentChunks++;
    }
    if (choice.finish_reason !== null && choice.finish_reason !== undefined) this.#finishReason = choice.finish_reason;
  }

  // Nothing is written before the end, so the output never pushes back.
  flush(): boolean {
    return true;
  }

  onWritable(): () => void {
    return () => undefined;
  }

  ping(): void {}

  toCompletion(): ChatCompletion {
    const completion: ChatCompletion = {
      id: this.#id,
      object: 'chat.completion',
      created: this.#created,
      model: this.#model,
      choices: [{ index: 0, message: { role: 'assistant', content: this.#parts.join(''), refusal: null }, finish_reason: this.#finishReason, logprobs: null }],
    };
    if (this.#usage !== undefined) completion.usage = this.#usage;
    return completion;
  }
}
