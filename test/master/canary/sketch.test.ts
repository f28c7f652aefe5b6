import { PerformanceObserver } from 'node:perf_hooks';
import t from 'tap';
import { LatencySketch, SKETCH_DEFAULTS } from '../../../master/canary/sketch.js';
import { mulberry32, normalSampler } from '../../../scripts/bench/canary-simulation.js';

function sketchOf(values: readonly number[]): LatencySketch {
  const s = new LatencySketch();
  for (const v of values) s.record(v);
  return s;
}

/** The exact k-th largest of a sample (k = 1 is the maximum). */
function kthLargest(sorted: readonly number[], k: number): number {
  return sorted[sorted.length - k]!;
}

t.test('a few KB whatever the traffic', async (t) => {
  const s = new LatencySketch();
  t.equal(s.bucketBytes, 838 * 4, '838 Uint32 buckets with the defaults (1 %, 0.1 ms … 30 min)');
  for (let i = 0; i < 100_000; i++) s.record(i);
  t.equal(s.bucketBytes, 838 * 4, 'recording does not grow it');
  t.equal(s.count, 100_000);
  t.ok(new LatencySketch({ relativeAccuracy: 0.02 }).bucketBytes < 2000, '2 %: half of that');
});

t.test('quantiles are within the relative accuracy', async (t) => {
  const random = mulberry32(1);
  const normal = normalSampler(random);
  const values = Array.from({ length: 20_000 }, () => 300 * Math.exp(0.8 * normal()));
  const s = sketchOf(values);
  const sorted = [...values].sort((a, b) => a - b);
  for (const q of [0, 0.01, 0.25, 0.5, 0.9, 0.99, 0.999, 1]) {
    const exact = sorted[Math.floor(q * (sorted.length - 1))]!;
    const got = s.quantile(q);
    t.ok(Math.abs(got - exact) <= SKETCH_DEFAULTS.relativeAccuracy * exact * (1 + 1e-9), `q=${q}: ${got} vs ${exact}`);
  }
});

t.test('quantile rank: q·(n−1) rounded down, as DDSketch', async (t) => {
  const cases: Array<[values: number[], q: number, expected: number]> = [
    [[10], 0.99, 10],
    [[10, 20], 0.5, 10], // rank 0.5 → the smallest
    [[10, 20], 0.99, 10],
    [[10, 20], 1, 20],
    [Array.from({ length: 100 }, (_, i) => i + 1), 0.99, 99], // rank 98.01 → the 99th smallest
    [Array.from({ length: 40 }, (_, i) => i + 1), 0.99, 39],
  ];
  for (const [values, q, expected] of cases) {
    const got = sketchOf(values).quantile(q);
    t.ok(Math.abs(got - expected) <= 0.01 * expected, `${values.length} values, q=${q}: ${got} ≈ ${expected}`);
  }
  t.ok(Number.isNaN(new LatencySketch().quantile(0.5)), 'NaN when empty');
});

t.test('values outside the range are clamped, never dropped', async (t) => {
  const s = sketchOf([0, -5, Number.NaN, 0.05, 5_000_000, 1e12]);
  t.equal(s.count, 6);
  t.equal(s.quantile(0), 0.1, 'at or below minMs reads as minMs');
  t.ok(s.quantile(1) >= 1_800_000 && s.quantile(1) < 1_800_000 * 1.03, 'above maxMs reads as ≈ maxMs');
  t.equal(s.upperBoundOfKthLargest(1), Number.POSITIVE_INFINITY, 'the overflow bucket has no upper edge');
  t.equal(s.countAbove(10_000_000), 0, 'a threshold in the overflow bucket: nothing is certainly above');
  t.equal(s.countPossiblyAbove(10_000_000), 2, 'but the overflow bucket may be');
  t.equal(s.lowerBoundOfKthLargest(6), 0, 'the bottom bucket starts at 0');
});

t.test('countAbove never counts a value ≤ the threshold; countPossiblyAbove never misses one above', async (t) => {
  const random = mulberry32(2);
  const values = Array.from({ length: 5000 }, () => 1 + 1000 * random() ** 3);
  const s = sketchOf(values);
  for (let i = 0; i < 300; i++) {
    const threshold = i < 100 ? values[i]! : 1 + 1100 * random(); // recorded values themselves: the edge case
    const exact = values.filter((v) => v > threshold).length;
    const low = s.countAbove(threshold);
    const high = s.countPossiblyAbove(threshold);
    if (!(low <= exact && exact <= high)) t.fail(`threshold ${threshold}: ${low} ≤ ${exact} ≤ ${high}`);
    // Within one bucket of the truth: a threshold 2 % higher or lower brackets the counts.
    if (low < values.filter((v) => v > threshold * 1.0203).length)
      t.fail(`countAbove(${threshold}) is more than a bucket low`);
    if (high > values.filter((v) => v > threshold / 1.0203).length)
      t.fail(`countPossiblyAbove(${threshold}) is more than a bucket high`);
  }
  t.pass('300 thresholds');
});

t.test('order-statistic bounds bracket the exact k-th largest', async (t) => {
  const random = mulberry32(3);
  const normal = normalSampler(random);
  const values = Array.from({ length: 3000 }, () => 50 * Math.exp(normal()));
  const s = sketchOf(values);
  const sorted = [...values].sort((a, b) => a - b);
  for (const k of [1, 2, 5, 30, 100, 1500, 3000]) {
    const exact = kthLargest(sorted, k);
    const upper = s.upperBoundOfKthLargest(k);
    const lower = s.lowerBoundOfKthLargest(k);
    t.ok(lower <= exact && exact <= upper, `k=${k}: ${lower} ≤ ${exact} ≤ ${upper}`);
    t.ok(upper / lower < 1.0203 + 1e-9, `k=${k}: one bucket wide`);
  }
  const cases: Array<[k: number, upper: number, lower: number]> = [
    [0, Number.POSITIVE_INFINITY, 0], // nothing to bound
    [3001, Number.POSITIVE_INFINITY, 0], // more than recorded
  ];
  for (const [k, upper, lower] of cases) {
    t.equal(s.upperBoundOfKthLargest(k), upper, `upper k=${k}`);
    t.equal(s.lowerBoundOfKthLargest(k), lower, `lower k=${k}`);
  }
});

t.test('merge adds, reset forgets', async (t) => {
  const a = sketchOf([1, 2, 3]);
  const b = sketchOf([100, 200]);
  a.merge(b);
  t.equal(a.count, 5);
  t.ok(Math.abs(a.quantile(1) - 200) <= 2, 'the merged maximum');
  t.equal(a.countAbove(50), 2);
  a.reset();
  t.equal(a.count, 0);
  t.equal(a.countPossiblyAbove(0), 0);
  t.equal(a.upperBoundOfKthLargest(1), Number.POSITIVE_INFINITY);
  a.record(7);
  t.ok(Math.abs(a.quantile(0.5) - 7) <= 0.07, 'usable after reset');
  t.throws(() => a.merge(new LatencySketch({ relativeAccuracy: 0.02 })), RangeError, 'layouts must match');
});

t.test('options are checked', async (t) => {
  const cases: Array<[options: ConstructorParameters<typeof LatencySketch>[0], message: RegExp]> = [
    [{ relativeAccuracy: 0 }, /relativeAccuracy/],
    [{ relativeAccuracy: 0.5 }, /relativeAccuracy/],
    [{ minMs: 0 }, /minMs/],
    [{ minMs: 10, maxMs: 10 }, /maxMs/],
  ];
  for (const [options, message] of cases)
    t.throws(() => new LatencySketch(options), { name: 'RangeError', message }, JSON.stringify(options));
});

t.test('record allocates nothing (hot path)', async (t) => {
  const s = new LatencySketch();
  const values = new Float64Array(4096).map((_, i) => 0.05 + ((i * 7919) % 5000));
  const recordAll = (rounds: number): void => {
    for (let r = 0; r < rounds; r++) for (let i = 0; i < values.length; i++) s.record(values[i]!);
  };
  recordAll(100); // let the JIT optimise both loops first
  // Garbage collections during 2 million records, the fewest over five runs. An allocation per call (≥ 16 bytes, one
  // heap number: 32 MB a run) fills the young generation and collects in every run; code that allocates nothing
  // never does. A heap size difference cannot tell: a collection during the run takes the garbage back out of it.
  // The fewest, because what the rest of the process allocates meanwhile (this file runs among the other unit
  // files) may collect once.
  const collections: number[] = [];
  const observer = new PerformanceObserver(() => undefined);
  observer.observe({ entryTypes: ['gc'] });
  t.teardown(() => observer.disconnect());
  for (let run = 0; run < 5; run++) {
    observer.takeRecords();
    recordAll(500);
    await new Promise(setImmediate); // the collections' entries are queued after the synchronous loop
    collections.push(observer.takeRecords().length);
  }
  t.equal(
    Math.min(...collections),
    0,
    `no collection in a run of 2 million records (per run: ${collections.join(', ')})`,
  );
});
