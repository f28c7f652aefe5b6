import { performance } from 'node:perf_hooks';

// A time slice per event-loop turn for starting requests (issue 10: the
// overload 503 of a fresh connection). libuv 1.46 (Node 20) accepts one new
// connection per loop iteration, and an iteration lasts as long as the
// requests it starts: under a flood of keep-alive clients that was ~400
// requests, 60 ms, so a connection arriving more often than 16 times a second
// waited in the accept queue for seconds. Starting at most `sliceMs` of
// requests per turn and deferring the rest to later turns keeps iterations
// short, so accepts keep up; deferred work keeps its order, and a
// connection's first request goes first (new connections in the order they
// came). Under ordinary load a turn never fills its slice and nothing is
// deferred.

export interface LoopSliceOptions {
  /** Wall time of request starts per loop turn, ms. */
  sliceMs: number;
  /** Monotonic clock, ms; default performance.now. */
  now?: () => number;
}

export class LoopSlice<T> {
  readonly #sliceMs: number;
  readonly #now: () => number;
  readonly #run: (item: T) => void;
  #sliceStartMs = 0;
  #isOpen = false;
  /** Deferred first requests of new connections, then the rest: each taken from the front by index. */
  readonly #urgent = new Fifo<T>();
  readonly #deferred = new Fifo<T>();
  #isDrainScheduled = false;

  constructor(options: LoopSliceOptions, run: (item: T) => void) {
    this.#sliceMs = options.sliceMs;
    this.#now = options.now ?? (() => performance.now());
    this.#run = run;
  }

  /** Items waiting for a later turn (status and tests). */
  get deferred(): number {
    return this.#urgent.length + this.#deferred.length;
  }

  /** Runs `item` now if this turn's slice has room and nothing waits; else queues it (`isUrgent`: first). */
  submit(item: T, isUrgent: boolean): void {
    if (this.deferred === 0 && this.#hasRoom()) return this.#run(item);
    (isUrgent ? this.#urgent : this.#deferred).push(item);
    this.#scheduleDrain();
  }

  #hasRoom(): boolean {
    if (!this.#isOpen) {
      this.#isOpen = true;
      this.#sliceStartMs = this.#now();
      // The slice ends with this turn: setImmediate runs after the poll phase that opened it.
      setImmediate(this.#close);
      return true;
    }
    return this.#now() - this.#sliceStartMs < this.#sliceMs;
  }

  readonly #close = (): void => {
    this.#isOpen = false;
  };

  #scheduleDrain(): void {
    if (this.#isDrainScheduled) return;
    this.#isDrainScheduled = true;
    setImmediate(this.#drain);
  }

  // In a check phase: a fresh slice's worth, then the rest waits for the next turn
  // (a setImmediate queued from a setImmediate callback runs after the next poll).
  readonly #drain = (): void => {
    this.#isDrainScheduled = false;
    const startMs = this.#now();
    while (this.deferred > 0) {
      this.#run(this.#urgent.length > 0 ? this.#urgent.take() : this.#deferred.take());
      if (this.#now() - startMs >= this.#sliceMs) break;
    }
    if (this.deferred > 0) this.#scheduleDrain();
  };
}

/**
 * A first-in first-out queue taken from the front by index: shift() and unshift() copied what waited each time (a
 * probe: ~3× the time per doubling past 20,000 requests deferred in one turn, in the loop every client shares).
 */
class Fifo<T> {
  /** Taken items are cleared (a request held past its start would wait for the next compaction). */
  #items: Array<T | undefined> = [];
  #head = 0;

  get length(): number {
    return this.#items.length - this.#head;
  }

  push(item: T): void {
    this.#items.push(item);
  }

  /** The first item; only when length > 0. */
  take(): T {
    const item = this.#items[this.#head] as T;
    this.#items[this.#head++] = undefined;
    if (this.#head === this.#items.length) [this.#items, this.#head] = [[], 0];
    // What was taken is let go once it is half the array: each item is copied at most once more.
    else if (this.#head >= 1024 && this.#head * 2 >= this.#items.length)
      [this.#items, this.#head] = [this.#items.slice(this.#head), 0];
    return item;
  }
}
