import { performance } from 'node:perf_hooks';

/**
 * A warn line for what may come in floods (connections refused at the bound, admin calls with a wrong token): the
 * first at once, then at most one every `intervalMs`, each saying how many came since the line before; the rest of a
 * burst gets its line when the interval ends, not at the next one, hours later. `write` gets that count and the last
 * one's facts.
 */
export class BurstLog<T> {
  readonly #intervalMs: number;
  readonly #write: (count: number, last: T) => void;
  #unlogged = 0;
  #last: T | undefined;
  #loggedAtMs = -Infinity;
  #flushTimer: NodeJS.Timeout | undefined;

  constructor(intervalMs: number, write: (count: number, last: T) => void) {
    this.#intervalMs = intervalMs;
    this.#write = write;
  }

  note(facts: T): void {
    this.#unlogged++;
    this.#last = facts;
    const sinceMs = performance.now() - this.#loggedAtMs;
    if (sinceMs >= this.#intervalMs) return this.#flush();
    this.#flushTimer ??= setTimeout(() => this.#flush(), this.#intervalMs - sinceMs).unref();
  }

  #flush(): void {
    clearTimeout(this.#flushTimer);
    this.#flushTimer = undefined;
    const last = this.#last;
    if (this.#unlogged === 0 || last === undefined) return;
    this.#write(this.#unlogged, last);
    this.#unlogged = 0;
    this.#last = undefined;
    this.#loggedAtMs = performance.now();
  }
}
