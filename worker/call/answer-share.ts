import type { ByteBudget } from '../../shared/byte-budget.js';
import { GraygateError } from '../../shared/errors.js';

/**
 * What one answer held whole (open-call.ts: a non-streamed chat answer, a converted one) takes of its worker's budget
 * (limits.maxBufferedAnswerBytes): counted as it grows, in the units its own bound counts (bytes, or the aggregate's
 * measured units of memory), and given back once it has left the process or failed (handler.ts: a client that reads
 * slowly holds it in the socket's buffer until then). Each answer may hold 64 MiB; without a
 * budget for all of them, ten at once took ~1.7 GB of one worker's heap.
 */
export class AnswerShare {
  readonly #budget: ByteBudget;
  #bytes = 0;

  private constructor(budget: ByteBudget) {
    this.#budget = budget;
  }

  /**
   * A new answer's share, before its upstream call: with less than MIN_ROOM_BYTES left the budget is full, and the
   * answer is refused before the upstream generates (and bills) what would be dropped.
   */
  static take(budget: ByteBudget): AnswerShare {
    if (budget.limitBytes - budget.heldBytes < MIN_ROOM_BYTES) throw full(budget);
    return new AnswerShare(budget);
  }

  /** Takes `bytes` more; past the worker's budget 503 answer_budget (the answer is dropped, its bytes given back). */
  take(bytes: number): void {
    if (!this.#budget.tryReserve(bytes)) throw full(this.#budget);
    this.#bytes += bytes;
  }

  /** Gives back all it took (once done with; again: nothing). */
  release(): void {
    this.#budget.release(this.#bytes);
    this.#bytes = 0;
  }
}

/** Room a new answer needs: one read of its body. */
const MIN_ROOM_BYTES = 64 * 1024;

function full(budget: ByteBudget): GraygateError {
  return new GraygateError(
    'answer_budget',
    `the worker holds ${Math.round(budget.heldBytes / 1048576)} MiB of non-streamed answers, ` +
      'as much as limits.maxBufferedAnswerBytes lets it; ask for it with stream: true, or try again',
    { retryAfterS: 1 },
  );
}
