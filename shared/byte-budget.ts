// A process-wide bound on bytes held at once, taken as they arrive and given back once done with:
//   master  request bodies on their way (SPEC §4a, limits.maxBufferedBodyBytes, default 256 MiB). Bodies are read
//           before a worker slot is taken (nginx proxy_request_buffering on), so without it 1024 slots × 10 MiB
//           bodies — or any number of clients uploading at once — would bound nothing: 503 body_budget. Bytes count
//           as they arrive (shared/body.ts) and until the worker answers (request-end.ts): the worker's copies of a
//           body are part of what is held.
//   worker  answers held whole to be sent as one JSON document (limits.maxBufferedAnswerBytes, default 256 MiB;
//           worker/call/answer-share.ts): each may hold 64 MiB, and ten at once took ~1.7 GB: 503 answer_budget.

export class ByteBudget {
  readonly #limitBytes: number;
  #heldBytes = 0;

  constructor(limitBytes: number) {
    this.#limitBytes = limitBytes;
  }

  /** Takes `bytes` from the budget; false (and nothing taken) when they do not fit. */
  tryReserve(bytes: number): boolean {
    if (this.#heldBytes + bytes > this.#limitBytes) return false;
    this.#heldBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#heldBytes -= bytes;
    if (this.#heldBytes < 0) this.#heldBytes = 0;
  }

  /** Bytes held right now (status and metrics). */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  get limitBytes(): number {
    return this.#limitBytes;
  }
}
