import type { ByteBudget } from '../shared/body.js';

// SPEC §4a: the bytes of request bodies held at once are capped
// (limits.maxBufferedBodyBytes, default 256 MiB). Bodies are read before a
// worker slot is taken (nginx proxy_request_buffering on), so without this cap
// 1024 slots × 10 MiB bodies — or any number of clients uploading at once —
// would bound nothing. A request that does not fit gets 503 body_budget.
// Bytes count as they arrive (shared/body.ts) and until the worker answers
// (request-end.ts): the worker's copies of a body are part of what is held.

export class BodyBudget implements ByteBudget {
  readonly #limitBytes: number;
  #heldBytes = 0;

  constructor(limitBytes: number) {
    this.#limitBytes = limitBytes;
  }

  tryReserve(bytes: number): boolean {
    if (this.#heldBytes + bytes > this.#limitBytes) return false;
    this.#heldBytes += bytes;
    return true;
  }

  release(bytes: number): void {
    this.#heldBytes -= bytes;
    if (this.#heldBytes < 0) this.#heldBytes = 0;
  }

  /** Bytes of request bodies held right now (status and metrics). */
  get heldBytes(): number {
    return this.#heldBytes;
  }

  get limitBytes(): number {
    return this.#limitBytes;
  }
}
