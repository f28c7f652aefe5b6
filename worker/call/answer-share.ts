import type { ByteBudget } from '../../shared/byte-budget.js';
import { GraygateError } from '../../shared/errors.js';

/**
 * What one answer held whole (open-call.ts: a non-streamed chat answer, a converted one) takes of its worker's budget
 * (limits.maxBufferedAnswerBytes): counted as it grows, in the units its own bound counts (bytes, or the aggregate's
 * measured units), and given back once it is sent or failed (handler.ts). Each answer may hold 64 MiB; without a
 * budget for all of them, ten at once took ~1.7 GB of one worker's heap.
 */
export class AnswerShare {
  readonly #budget: ByteBudget;
  #bytes = 0;

  constructor(budget: ByteBudget) {
    this.#budget = budget;
  }

  /** Takes `bytes` more; past the worker's budget 503 answer_budget (the answer is dropped, its bytes given back). */
  take(bytes: number): void {
    if (!this.#budget.tryReserve(bytes)) {
      throw new GraygateError(
        'answer_budget',
        `the worker holds ${Math.round(this.#budget.heldBytes / 1048576)} MiB of non-streamed answers, ` +
          'as much as limits.maxBufferedAnswerBytes lets it; ask for it with stream: true, or try again',
        { retryAfterS: 1 },
      );
    }
    this.#bytes += bytes;
  }

  /** Gives back all it took (once done with; again: nothing). */
  release(): void {
    this.#budget.release(this.#bytes);
    this.#bytes = 0;
  }
}
