import { benchArgs } from './args.js';
import { simulateScenario, type Scenario, type ScenarioSummary, type VersionModel } from './canary-simulation.js';

// Issue 13 figures for docs/BENCHMARKS.md: the canary judge's false-alarm
// rate, power, and requests and time to a decision, by simulation (the same
// simulator as test/master/canary/statistics-simulation.test.ts). Each row
// runs seeded canaries through the controller of SPEC §11 (advance when the
// judge says so and stepMs has passed, hold after maxStepMs) calling judge()
// every `--judge-every-ms` of simulated time.
// Run: `npm run build && node dist/scripts/bench/canary-sim.js [flags]`, flags:
//   --runs N            canaries per row with equal versions (default 2000)
//   --power-runs N      canaries per row with a worse canary (default 200)
//   --rate R            requests per second to the pair (default 100)
//   --steps 10,50,100   canary percent per step (default 10,50,100)
//   --step-ms MS        stepMs (default 60000); maxStepMs is 10 × stepMs
//   --min-requests N    minRequests (default 200, SPEC §11)
//   --alpha A           alpha (default 0.01)
//   --judge-every-ms MS how often the controller calls judge() (default 100)
//   --seed N            first seed (default 1)

const { values } = benchArgs({
  options: {
    runs: { type: 'string', default: '2000' },
    'power-runs': { type: 'string', default: '200' },
    rate: { type: 'string', default: '100' },
    steps: { type: 'string', default: '10,50,100' },
    'step-ms': { type: 'string', default: '60000' },
    'min-requests': { type: 'string', default: '200' },
    alpha: { type: 'string', default: '0.01' },
    'judge-every-ms': { type: 'string', default: '100' },
    seed: { type: 'string', default: '1' },
  },
});

const rate = Number(values.rate);
const stepMs = Number(values['step-ms']);
const base: Omit<Scenario, 'baseline' | 'canary'> = {
  steps: values.steps.split(',').map(Number),
  requestsPerSecond: rate,
  stepMs,
  maxStepMs: 10 * stepMs,
  judgeEveryRequests: Math.max(1, Math.round((rate * Number(values['judge-every-ms'])) / 1000)),
  streamShare: 0.5,
  options: { alpha: Number(values.alpha), minRequests: Number(values['min-requests']) },
};

// An LLM-like version: first token ~300 ms (p99 ≈ 760 ms), whole answers ~2 s (p99 ≈ 6.4 s), a stream's time per
// token ~25 ms (40 tokens/s; p99 ≈ 40 ms: a stream's mean over its tokens varies less than one latency).
const llm = (errorRate: number): VersionModel => ({
  errorRate,
  firstToken: { medianMs: 300, sigma: 0.4 },
  response: { medianMs: 2000, sigma: 0.5 },
  timePerToken: { medianMs: 25, sigma: 0.2 },
});
// The embedded mock upstream behind the gateway: first token and answers in ~20 ms, tokens ~10 ms apart.
const mock = (errorRate: number): VersionModel => ({
  errorRate,
  firstToken: { medianMs: 20, sigma: 0.5 },
  response: { medianMs: 20, sigma: 0.5 },
  timePerToken: { medianMs: 10, sigma: 0.3 },
});

interface Row {
  name: string;
  baseline: VersionModel;
  canary: VersionModel;
  /** true: the canary is no worse than the criteria (a rollback is a false alarm). */
  isEqual: boolean;
  over?: Partial<Scenario>;
}

const rows: Row[] = [
  { name: 'equal, 1 % errors (LLM-like latencies)', baseline: llm(0.01), canary: llm(0.01), isEqual: true },
  { name: 'equal, 5 % errors', baseline: llm(0.05), canary: llm(0.05), isEqual: true },
  {
    name: 'equal, mock upstream, stepMs 3 s',
    baseline: mock(0),
    canary: mock(0),
    isEqual: true,
    over: { stepMs: 3000, maxStepMs: 30_000 },
  },
  { name: 'edge: errors 7 % vs 5 % (= 1.2 × 5 % + 1 pt)', baseline: llm(0.05), canary: llm(0.07), isEqual: true },
  { name: '2× errors (5 % → 10 %)', baseline: llm(0.05), canary: llm(0.1), isEqual: false },
  {
    name: '+50 % p99 (latencies × 1.5)',
    baseline: llm(0.01),
    canary: { errorRate: 0.01, firstToken: { medianMs: 450, sigma: 0.4 }, response: { medianMs: 3000, sigma: 0.5 } },
    isEqual: false,
  },
  {
    name: '+400 ms first token (LLM-like, 300 ms)',
    baseline: llm(0.01),
    canary: { ...llm(0.01), addedFirstTokenMs: 400 },
    isEqual: false,
  },
  {
    name: '+400 ms first token (mock upstream, all streams)',
    baseline: mock(0),
    canary: { ...mock(0), addedFirstTokenMs: 400 },
    isEqual: false,
    over: { streamShare: 1 },
  },
  {
    name: 'tokens 2× slower after the same first token (25 → 50 ms per token)',
    baseline: llm(0.01),
    canary: { ...llm(0.01), timePerToken: { medianMs: 50, sigma: 0.2 } },
    isEqual: false,
  },
  {
    name: 'tokens 1.5× slower (25 → 37.5 ms per token)',
    baseline: llm(0.01),
    canary: { ...llm(0.01), timePerToken: { medianMs: 37.5, sigma: 0.2 } },
    isEqual: false,
  },
  { name: '25 % errors (baseline 1 %)', baseline: llm(0.01), canary: llm(0.25), isEqual: false },
  { name: '50 % errors (plainly broken)', baseline: llm(0.01), canary: llm(0.5), isEqual: false },
];

function seconds(ms: number): string {
  return Number.isNaN(ms) ? '–' : ms < 10_000 ? `${(ms / 1000).toFixed(1)} s` : `${(ms / 1000).toFixed(0)} s`;
}

function share(count: number, runs: number): string {
  return `${count} (${((100 * count) / runs).toFixed(count > 0 && count < runs / 10 ? 2 : 1)} %)`;
}

function format(row: Row, s: ScenarioSummary): string {
  const decided = row.isEqual
    ? `promoted in ${seconds(s.medianMsToPromotion)}`
    : s.rolledBack === 0
      ? '–'
      : `rolled back after ${s.medianCanaryRequestsToRollback} canary / ${s.medianRequestsToRollback} requests, ${seconds(s.medianMsToRollback)}`;
  return `| ${row.name} | ${s.runs} | ${share(s.rolledBack, s.runs)} | ${share(s.held, s.runs)} | ${share(s.promoted, s.runs)} | ${decided} |`;
}

console.log(
  `steps ${base.steps.join('/')} %, ${rate} req/s, stepMs ${stepMs}, maxStepMs ${base.maxStepMs}, minRequests ${base.options.minRequests}, ` +
    `alpha ${base.options.alpha}, judge every ${base.judgeEveryRequests} requests, half streams\n`,
);
console.log('| scenario | canaries | rolled back | held | promoted | median to the decision |');
console.log('|---|---:|---:|---:|---:|---|');
let seed = Number(values.seed);
for (const row of rows) {
  const scenario: Scenario = { ...base, baseline: row.baseline, canary: row.canary, ...row.over };
  const summary = simulateScenario(scenario, Number(row.isEqual ? values.runs : values['power-runs']), seed++);
  console.log(format(row, summary));
}
