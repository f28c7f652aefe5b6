import { availableParallelism } from 'node:os';

// Worker start-ups at once (issue 9 part 0). A worker's start is CPU-bound
// (loading and compiling its modules); forking seven at once on two cores made
// each take seven cores' worth of wall time, and the ready timeout — which
// measures one worker — fired for workers that were only waiting for a CPU.
// Starts beyond `slots` wait here, and a worker's ready timer runs from its
// own fork, so it measures that worker alone. The total time to start N
// workers is no worse: the CPUs were the bottleneck either way.

export class StartLimiter {
  readonly #slots: number;
  #running = 0;
  readonly #waiting: Array<() => void> = [];

  /** `slots`: concurrent starts; default the machine's available parallelism. */
  constructor(slots: number = availableParallelism()) {
    this.#slots = Math.max(1, slots);
  }

  /** Resolves with a release function once a start may begin. Call release exactly once (ready, exit or failure). */
  acquire(): Promise<() => void> {
    return new Promise((resolve) => {
      const grant = (): void => {
        this.#running++;
        let isReleased = false;
        resolve(() => {
          if (isReleased) return;
          isReleased = true;
          this.#running--;
          this.#waiting.shift()?.();
        });
      };
      if (this.#running < this.#slots) grant();
      else this.#waiting.push(grant);
    });
  }

  /** Starts waiting for a slot (status). */
  get waiting(): number {
    return this.#waiting.length;
  }
}
