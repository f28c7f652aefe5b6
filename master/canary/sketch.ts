// A bounded latency sketch for the request path (issue 13 part 2): every
// request of both versions of a canary records its first-token or response
// time here, so `record` is one Math.log and one array increment, with no
// allocation, and the memory is fixed whatever the traffic.
//
// Buckets are log-spaced as in DDSketch (Masson, Rim & Lee, "DDSketch: a fast
// and fully-mergeable quantile sketch with relative-error guarantees", VLDB
// 2019): bucket i ≥ 1 holds (minMs·γ^(i−1), minMs·γ^i] with
// γ = (1 + a)/(1 − a), so reporting 2·minMs·γ^i/(γ + 1) for any value in it is
// within a relative error a of the truth. With the defaults (a = 1 %,
// 0.1 ms … 30 min) that is 838 buckets, 3.3 KB of Uint32. Values at or below
// minMs share bucket 0; values above the last edge (≥ maxMs) share an overflow
// bucket, whose upper edge is +∞: both are clamped, never dropped.
//
// The judge (statistics.ts) needs more than quantiles: counts above a
// threshold and bounds on order statistics, each rounded to the bucket edge
// on the side that keeps its test conservative (see each method).

export interface LatencySketchOptions {
  /** Relative accuracy a of quantile estimates, 0 < a < 0.5. Default 0.01 (1 %). */
  relativeAccuracy?: number;
  /** Smallest value resolved, ms; anything ≤ minMs counts as minMs. Default 0.1 ms. */
  minMs?: number;
  /** Largest value resolved, ms; anything above counts as "≥ maxMs". Default 1_800_000 ms (30 min). */
  maxMs?: number;
}

export const SKETCH_DEFAULTS = {
  relativeAccuracy: 0.01, // 1 %
  minMs: 0.1, // 100 µs
  maxMs: 1_800_000, // 30 min
} as const;

/** The read-only part of a sketch: what the judge is given. */
export type LatencySketchView = Pick<
  LatencySketch,
  'count' | 'quantile' | 'countAbove' | 'countPossiblyAbove' | 'upperBoundOfKthLargest' | 'lowerBoundOfKthLargest'
>;

export class LatencySketch {
  readonly #minMs: number;
  readonly #gamma: number;
  readonly #logGamma: number;
  /** Index of the overflow bucket; buckets 1 … #overflow − 1 are the log-spaced ones. */
  readonly #overflow: number;
  readonly #counts: Uint32Array;
  #count = 0;
  /** Highest non-empty bucket (0 when empty): the judge's walks down from the top start here. */
  #top = 0;

  constructor(options: LatencySketchOptions = {}) {
    const a = options.relativeAccuracy ?? SKETCH_DEFAULTS.relativeAccuracy;
    const minMs = options.minMs ?? SKETCH_DEFAULTS.minMs;
    const maxMs = options.maxMs ?? SKETCH_DEFAULTS.maxMs;
    if (!(a > 0 && a < 0.5)) throw new RangeError(`relativeAccuracy: must be > 0 and < 0.5, got ${a}`);
    if (!(minMs > 0)) throw new RangeError(`minMs: must be > 0, got ${minMs}`);
    if (!(maxMs > minMs)) throw new RangeError(`maxMs: must be > minMs, got ${maxMs}`);
    this.#minMs = minMs;
    this.#gamma = (1 + a) / (1 - a);
    this.#logGamma = Math.log(this.#gamma);
    this.#overflow = Math.ceil(Math.log(maxMs / minMs) / this.#logGamma) + 1;
    this.#counts = new Uint32Array(this.#overflow + 1);
  }

  /** Values recorded since creation or the last reset. */
  get count(): number {
    return this.#count;
  }

  /** Memory held by the buckets, bytes. */
  get bucketBytes(): number {
    return this.#counts.byteLength;
  }

  /** Records one value, ms. Hot path: no allocation. NaN and negatives count as 0. */
  record(ms: number): void {
    const i = this.#indexOf(ms);
    this.#counts[i]!++;
    this.#count++;
    if (i > this.#top) this.#top = i;
  }

  /**
   * Estimate of the q-quantile (0 ≤ q ≤ 1), ms, within the relative accuracy
   * for values inside [minMs, maxMs] (clamped outside). The rank is
   * q·(count − 1) rounded down, counted from the smallest value, as in
   * DDSketch. NaN when empty.
   */
  quantile(q: number): number {
    if (this.#count === 0) return Number.NaN;
    const rankFromBottom = Math.floor(Math.min(1, Math.max(0, q)) * (this.#count - 1)); // 0-based
    const i = this.#bucketOfKthLargest(this.#count - rankFromBottom);
    if (i === 0) return this.#minMs;
    if (i === this.#overflow) return this.#upperEdge(i - 1);
    return (2 * this.#upperEdge(i)) / (this.#gamma + 1);
  }

  /**
   * Values recorded that are certainly > ms: only buckets whose every value
   * is above ms count, never the bucket holding ms. This undercounts by at
   * most that one bucket (a relative 2 % of ms), the side that makes an
   * exceedance test of the canary conservative: a count of values above ms
   * is at most the true count above ms, whatever the bucket layout.
   */
  countAbove(ms: number): number {
    let i = this.#indexOf(ms);
    // Floating-point rounding of the log may put ms one bucket low: step up until its edge is ≥ ms.
    while (i < this.#overflow && this.#upperEdge(i) < ms) i++;
    return this.#sumFrom(i + 1);
  }

  /**
   * Values recorded that may be > ms: the bucket holding ms counts too. The
   * overcounting counterpart of countAbove, for upper bounds (a canary shown
   * to be no worse than the baseline must be so even when counted this way).
   */
  countPossiblyAbove(ms: number): number {
    let i = this.#indexOf(ms);
    while (i > 0 && this.#upperEdge(i - 1) >= ms) i--;
    return this.#sumFrom(i);
  }

  /**
   * An upper bound, ms, of the k-th largest value recorded (k = 1 is the
   * maximum): the upper edge of its bucket, +∞ in the overflow bucket or when
   * k ≤ 0 (no order statistic to bound). When k > count, +∞ as well.
   */
  upperBoundOfKthLargest(k: number): number {
    if (!(k >= 1) || k > this.#count) return Number.POSITIVE_INFINITY;
    const i = this.#bucketOfKthLargest(k);
    return i === this.#overflow ? Number.POSITIVE_INFINITY : this.#upperEdge(i);
  }

  /** A lower bound, ms, of the k-th largest value: the lower edge of its bucket; 0 when k > count or in bucket 0. */
  lowerBoundOfKthLargest(k: number): number {
    if (!(k >= 1) || k > this.#count) return 0;
    const i = this.#bucketOfKthLargest(k);
    return i === 0 ? 0 : this.#upperEdge(i - 1);
  }

  /** Adds other's values to this one. Both must have the same options. */
  merge(other: LatencySketch): void {
    if (other.#counts.length !== this.#counts.length || other.#gamma !== this.#gamma || other.#minMs !== this.#minMs) {
      throw new RangeError('cannot merge latency sketches with different options');
    }
    for (let i = 0; i < this.#counts.length; i++) this.#counts[i]! += other.#counts[i]!;
    this.#count += other.#count;
    this.#top = Math.max(this.#top, other.#top);
  }

  /** Forgets every value (a new step starts); keeps the memory. */
  reset(): void {
    this.#counts.fill(0);
    this.#count = 0;
    this.#top = 0;
  }

  #indexOf(ms: number): number {
    if (!(ms > this.#minMs)) return 0;
    const i = Math.ceil(Math.log(ms / this.#minMs) / this.#logGamma);
    return i < this.#overflow ? i : this.#overflow;
  }

  /** Upper edge of bucket i < overflow: minMs·γ^i. */
  #upperEdge(i: number): number {
    return this.#minMs * Math.exp(i * this.#logGamma);
  }

  #sumFrom(first: number): number {
    let sum = 0;
    for (let i = this.#top; i >= first; i--) sum += this.#counts[i]!;
    return sum;
  }

  // Walks down from the top: the judge asks about the top 1 %, a few buckets away.
  #bucketOfKthLargest(k: number): number {
    let seen = 0;
    for (let i = this.#top; i > 0; i--) {
      seen += this.#counts[i]!;
      if (seen >= k) return i;
    }
    return 0;
  }
}
