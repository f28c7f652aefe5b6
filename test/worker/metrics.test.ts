import t from 'tap';
import type { MetricObjectWithValues, MetricValue } from 'prom-client';
import { createWorkerMetrics, upstreamErrorKind, FIRST_TOKEN_BUCKETS_S } from '../../worker/metrics.js';
import { ERROR_CATALOGUE } from '../../shared/errors.js';
import { METRIC } from '../../shared/metric-names.js';

type Json = MetricObjectWithValues<MetricValue<string>>;

t.test('upstream error kind of every catalogued code', async (t) => {
  const expected: Record<string, string | undefined> = {
    upstream_unreachable: 'connect',
    upstream_timeout: 'timeout',
    upstream_reset: 'reset',
    upstream_status: 'status',
    upstream_protocol_error: 'protocol',
  };
  for (const code of Object.keys(ERROR_CATALOGUE)) t.equal(upstreamErrorKind(code), expected[code], code);
  t.equal(upstreamErrorKind('client_closed'), undefined, 'a client leaving is not an upstream error');
});

t.test('first-token buckets span 10 ms to 300 s', async (t) => {
  t.equal(FIRST_TOKEN_BUCKETS_S[0], 0.01);
  t.equal(FIRST_TOKEN_BUCKETS_S.at(-1), 300);
  t.same(
    [...FIRST_TOKEN_BUCKETS_S].sort((a, b) => a - b),
    FIRST_TOKEN_BUCKETS_S,
    'ascending',
  );
});

t.test('hooks feed the series the master scrapes, labelled with the version', async (t) => {
  const m = createWorkerMetrics({ version: 'v7' });
  m.streamStarted();
  m.streamStarted();
  m.streamEnded();
  m.observeFirstToken(0.3);
  m.onUpstreamError('reset');
  m.onUpstreamError('reset');
  m.addTokens({ prompt_tokens: 12, completion_tokens: 30 });
  m.addTokens({ prompt_tokens: Number.NaN, completion_tokens: -1 });
  const json = (await m.collect()) as Json[];
  const get = (name: string): Json => json.find((x) => x.name === name)!;
  const value = (name: string, labels: Record<string, string>): number | undefined =>
    get(name).values.find((v) => Object.entries(labels).every(([k, l]) => v.labels[k] === l))?.value;

  t.equal(value(METRIC.streamsActive, { version: 'v7' }), 1);
  t.equal(value(METRIC.upstreamErrorsTotal, { version: 'v7', kind: 'reset' }), 2);
  t.equal(value(METRIC.upstreamErrorsTotal, { version: 'v7', kind: 'connect' }), 0, 'every kind exists at 0');
  t.equal(value(METRIC.tokensTotal, { version: 'v7', kind: 'prompt' }), 12, 'malformed usage is not counted');
  t.equal(value(METRIC.tokensTotal, { version: 'v7', kind: 'completion' }), 30);
  const hist = get(METRIC.streamFirstTokenSeconds).values as Array<MetricValue<string> & { metricName?: string }>;
  t.equal(hist.find((v) => v.metricName?.endsWith('_count'))?.value, 1);
  t.equal(hist.find((v) => v.metricName?.endsWith('_bucket') && v.labels['le'] === 0.25)?.value, 0);
  t.equal(hist.find((v) => v.metricName?.endsWith('_bucket') && v.labels['le'] === 0.5)?.value, 1);
  t.ok(
    json.some((x) => x.name === 'process_cpu_user_seconds_total'),
    'default process metrics are included',
  );
  const graygate = json.filter((x) => x.name.startsWith('graygate_'));
  t.ok(
    graygate.every((x) => x.values.every((v) => Number.isFinite(v.value))),
    'graygate_* values are finite, so they survive the JSON of IPC',
  );
});

t.test("collectCounters carries every cumulative graygate_* family of the worker's registry", async (t) => {
  const m = createWorkerMetrics({ version: 'v1' });
  const all = (await m.registry.getMetricsAsJSON()) as unknown as Array<{ name: string; type: string }>;
  const cumulative = all
    .filter((f) => f.name.startsWith('graygate_') && (f.type === 'counter' || f.type === 'histogram'))
    .map((f) => f.name)
    .sort();
  const carried = ((await m.collectCounters()) as Array<{ name: string }>).map((f) => f.name).sort();
  t.same(carried, cumulative, 'a counter added to the worker must be added to collectCounters');
});
