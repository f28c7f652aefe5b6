// Exact percentiles over recorded values (ms). A load run records at most a
// few hundred thousand responses, so keeping every value is cheap and avoids
// bucket error in the p99 of fast 503s.

export interface Percentiles {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  p999: number;
  max: number;
}

export class Recorder {
  #values = new Float64Array(1024);
  #count = 0;
  #sum = 0;

  record(value: number): void {
    if (this.#count === this.#values.length) {
      const grown = new Float64Array(this.#values.length * 2);
      grown.set(this.#values);
      this.#values = grown;
    }
    this.#values[this.#count++] = value;
    this.#sum += value;
  }

  /** Adds every value another recorder holds. */
  merge(other: Recorder): void {
    for (let i = 0; i < other.#count; i++) this.record(other.#values[i]!);
  }

  get count(): number {
    return this.#count;
  }

  percentiles(): Percentiles {
    const n = this.#count;
    if (n === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, p999: 0, max: 0 };
    const sorted = this.#values.slice(0, n).sort();
    // Nearest-rank: the smallest value with at least q of the samples at or below it.
    const at = (q: number): number => round(sorted[Math.min(n - 1, Math.max(0, Math.ceil(q * n) - 1))]!);
    return {
      count: n,
      min: round(sorted[0]!),
      mean: round(this.#sum / n),
      p50: at(0.5),
      p90: at(0.9),
      p99: at(0.99),
      p999: at(0.999),
      max: round(sorted[n - 1]!),
    };
  }
}

function round(ms: number): number {
  return Math.round(ms * 100) / 100;
}
