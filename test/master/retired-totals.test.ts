import t from 'tap';
import { AggregatorRegistry } from 'prom-client';
import {
  isCumulative,
  newest,
  readWorkerMetrics,
  RetiredTotals,
  type MetricJson,
} from '../../master/retired-totals.js';

// What the master keeps of an exited worker (SPEC §9): its graygate_* counters
// and histograms, summed per version and label set; nothing else.

const metric = (name: string, type: string, values: unknown[]): MetricJson =>
  ({ name, help: name, type, aggregator: 'sum', values }) as unknown as MetricJson;

t.test('isCumulative: graygate_* counters and histograms only', async (t) => {
  const cases: Array<[string, string, boolean]> = [
    ['graygate_tokens_total', 'counter', true],
    ['graygate_stream_first_token_seconds', 'histogram', true],
    ['graygate_streams_active', 'gauge', false],
    ['process_cpu_user_seconds_total', 'counter', false],
    ['nodejs_gc_duration_seconds', 'histogram', false],
  ];
  for (const [name, type, expected] of cases) t.equal(isCumulative(metric(name, type, [])), expected, name);
});

t.test('add sums per version and label set, whatever the label order; forget drops a version', async (t) => {
  const totals = new RetiredTotals();
  const tokens = (completion: number, order: 'vk' | 'kv'): MetricJson =>
    metric('graygate_tokens_total', 'counter', [
      {
        value: completion,
        labels: order === 'vk' ? { version: 'v1', kind: 'completion' } : { kind: 'completion', version: 'v1' },
      },
    ]);
  totals.add('v1', [
    tokens(5, 'vk'),
    metric('graygate_streams_active', 'gauge', [{ value: 2, labels: { version: 'v1' } }]),
  ]);
  totals.add('v1', [tokens(7, 'kv')]);
  totals.add('v2', [
    metric('graygate_tokens_total', 'counter', [{ value: 1, labels: { version: 'v2', kind: 'prompt' } }]),
  ]);
  const values = (): Array<[string, number]> =>
    totals
      .metrics()
      .flatMap((m) => m.values.map((v): [string, number] => [`${m.name} ${String(v.labels['version'])}`, v.value]));
  t.same(
    values(),
    [
      ['graygate_tokens_total v1', 12],
      ['graygate_tokens_total v2', 1],
    ],
    'one series each; no gauge',
  );
  totals.forget('v1');
  t.same(values(), [['graygate_tokens_total v2', 1]]);
});

t.test('odd input from another release is skipped, never thrown on', async (t) => {
  const totals = new RetiredTotals();
  const raw = [
    null,
    { name: 'graygate_x_total' },
    metric('graygate_x_total', 'counter', [
      null,
      { value: 1 },
      { value: 'a', labels: {} },
      { value: 2, labels: null },
      { value: 3, labels: {} },
    ]),
  ];
  t.doesNotThrow(() => totals.add('v1', readWorkerMetrics(raw)));
  t.same(totals.metrics()[0]?.values, [{ value: 3, labels: {} }]);
});

t.test("a hostile build's entries prom-client cannot print are skipped: the scrape stays whole", async (t) => {
  // help: 5 (or a label value, a metricName that is an object) passed, and prom-client threw printing it: every
  // /metrics after was a 500, for good once it sat in a version's retired totals (a review's repro).
  const evil = { toString: 1 };
  const raw = [
    { ...metric('graygate_a_total', 'counter', [{ value: 1, labels: {} }]), help: 5 },
    metric('graygate_b_total', 'counter', [
      { value: 1, labels: { version: evil } },
      { value: 2, labels: {}, metricName: evil },
      { value: 3, labels: { version: 'v1', n: 4 } },
    ]),
  ];
  const read = readWorkerMetrics(raw);
  t.same(
    read.map((m) => [m.name, m.values]),
    [['graygate_b_total', [{ value: 3, labels: { version: 'v1', n: 4 } }]]],
  );
  const text = await AggregatorRegistry.aggregate([read]).metrics();
  t.match(text, /graygate_b_total\{version="v1",n="4"\} 3/);
});

t.test("names, label names and types prom-client prints as they are: a build's lines are not written", async (t) => {
  // A newline in one of them wrote lines of the build's choosing into /metrics (another version's series among them);
  // `__proto__` as a name made every aggregation throw (a probe's hostile build).
  const injected = 'graygate_x_total{version="v1"} 1\ngraygate_requests_total{version="v1",code="500"} 99999';
  const sample = { value: 1, labels: {} };
  const raw = [
    metric('__proto__', 'counter', [sample]),
    metric('constructor', 'counter', [sample]),
    metric(injected, 'counter', [sample]),
    metric('graygate_c_total', 'counter\ninjected 1', [sample]),
    metric('graygate_d_total', 'bogus', [sample]),
    metric('graygate e', 'counter', [sample]),
    metric('graygate_f_total', 'counter', [
      { value: 1, labels: { 'x="1"} 5\ninjected{version="v1"} 42\nz': 'a' } },
      { value: 2, labels: {}, metricName: injected },
      { value: 3, labels: { version: 'v2' }, metricName: 'graygate_f_total' },
    ]),
  ];
  const read = readWorkerMetrics(raw);
  t.same(
    read.map((m) => [m.name, m.values.map((v) => v.value)]),
    [['graygate_f_total', [3]]],
  );
  const text = await AggregatorRegistry.aggregate([read]).metrics();
  t.notMatch(text, /injected|99999/);
});

t.test("newest: a worker's two answers, each series at its newer (higher) value, in either order", async (t) => {
  const scrape = [
    metric('graygate_tokens_total', 'counter', [
      { value: 5, labels: { version: 'v1', kind: 'completion' } },
      { value: 3, labels: { version: 'v1', kind: 'prompt' } },
    ]),
    metric('process_cpu_user_seconds_total', 'counter', [{ value: 1, labels: {} }]),
  ];
  const probe = [
    metric('graygate_tokens_total', 'counter', [
      { value: 9, labels: { kind: 'completion', version: 'v1' } },
      { value: 3, labels: { version: 'v1', kind: 'prompt' } },
    ]),
    metric('graygate_upstream_errors_total', 'counter', [{ value: 2, labels: { version: 'v1', kind: 'reset' } }]),
  ];
  for (const [a, b] of [
    [scrape, probe],
    [probe, scrape],
  ] as const) {
    const totals = new RetiredTotals();
    totals.add('v1', newest(a, b));
    const values = (name: string): number[] =>
      totals
        .metrics()
        .filter((m) => m.name === name)
        .flatMap((m) => m.values.map((v) => v.value))
        .sort((x, y) => x - y);
    t.same(values('graygate_tokens_total'), [3, 9], 'completion from the probe, prompt unchanged');
    t.same(values('graygate_upstream_errors_total'), [2], 'a family only one answer has');
  }
});
