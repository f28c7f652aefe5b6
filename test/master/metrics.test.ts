import t from 'tap';
import {
  createMasterMetrics,
  PROXY_LATENCY_BUCKETS_S,
  type RegistryView,
  type VersionView,
  type WorkerView,
} from '../../master/metrics.js';
import { gatherMetrics, labelPerProcess } from '../../master/admin/metrics-endpoint.js';
import { createWorkerMetrics } from '../../worker/metrics.js';
import { METRIC, MASTER_WORKER_LABEL } from '../../shared/metric-names.js';
import { parsePrometheusText, sumSamples } from '../../scripts/cli/prom-text.js';
import { parsePromText } from '../helpers/metrics.js';

// The master's registry and the merge of worker registries, with plain
// objects standing in for the supervisor and its worker handles (STYLE §17).
// The workers' registries are real prom-client registries, their JSON sent
// through JSON.stringify/parse as IPC does.

type StubWorker = WorkerView & { state: WorkerView['state'] };
function worker(
  instance: number,
  pid: number,
  answer: () => Promise<unknown[] | undefined>,
  state: WorkerView['state'] = 'ready',
): StubWorker {
  const w: StubWorker & { lastMetrics: readonly unknown[] | undefined } = {
    state,
    instance,
    pid,
    lastMetrics: undefined,
    // As WorkerHandle: the last answer is kept.
    requestMetrics: async () => {
      const metrics = await answer();
      if (metrics !== undefined) w.lastMetrics = metrics;
      return metrics;
    },
    health: { misses: 0, rssBytes: 0, eventLoopDelayMs: 0, probeRoundTripMs: 0 },
  };
  return w;
}
function version(workers: WorkerView[], extra: Partial<VersionView> = {}): VersionView {
  return { admission: { queued: 0 }, workers, draining: [], restarts: 0, ...extra };
}
const overIpc = async (collect: () => Promise<unknown[]>): Promise<unknown[]> =>
  JSON.parse(JSON.stringify(await collect())) as unknown[];

t.test('proxy latency buckets: sub-millisecond to seconds', async (t) => {
  t.ok(PROXY_LATENCY_BUCKETS_S[0]! < 0.001, 'first bucket under 1 ms');
  t.equal(PROXY_LATENCY_BUCKETS_S.at(-1), 600, "last bucket at timeouts.totalMs's default");
});

t.test("health gauges: a worker's last probe while its process lives, none once it exited", async (t) => {
  const alive = worker(0, 11, async () => []);
  const dead = worker(1, 12, async () => [], 'crashed');
  for (const w of [alive, dead]) Object.assign(w.health, { rssBytes: 50_000_000, eventLoopDelayMs: 3 });
  const m = createMasterMetrics({ versions: () => ({ versions: new Map([['v1', version([alive, dead])]]) }) });
  const text = await m.registry.metrics();
  t.match(text, /graygate_worker_rss_bytes\{version="v1",worker="v1\/0\/11"\} 50000000/);
  t.notMatch(text, /worker="v1\/1\/12"/, 'the crashed one (waiting for its restart) has no series');
});

t.test("a removed version's workers count under its name till gone, with a version added again under it", async (t) => {
  // A churn probe: a removed version's workers served for up to drainTimeoutMs in no graygate_workers series. They
  // drain where they are, in `workers` and `draining` both (a review: counted twice), and one stopped is gone.
  const again = version([worker(0, 21, async () => [])]);
  const serving = worker(0, 11, async () => []);
  const drainingOne = worker(1, 12, async () => [], 'draining');
  const stopped = worker(2, 13, async () => [], 'stopped');
  const removed = { name: 'v1', ...version([serving, drainingOne, stopped], { draining: [drainingOne] }) };
  for (const w of [serving, drainingOne, ...again.workers]) Object.assign(w.health, { rssBytes: 1_000_000 });
  const m = createMasterMetrics({ versions: () => ({ versions: new Map([['v1', again]]), removing: [removed] }) });
  const text = await m.registry.metrics();
  const samples = parsePrometheusText(text);
  t.equal(sumSamples(samples, METRIC.workers, { version: 'v1', state: 'ready' }), 2, 'the new one and the removed one');
  t.equal(sumSamples(samples, METRIC.workers, { version: 'v1', state: 'draining' }), 1, 'once');
  t.equal(sumSamples(samples, METRIC.workers, { version: 'v1', state: 'stopped' }), 0, 'a stopped one is gone');
  t.match(text, /graygate_worker_rss_bytes\{version="v1",worker="v1\/0\/11"\} 1000000/, "the removed one's health");
});

t.test('master series: request counts, latency, rejections, gauges read at scrape time', async (t) => {
  const v1 = version([worker(0, 11, async () => []), worker(1, 12, async () => [], 'starting')], {
    admission: { queued: 3 },
    restarts: 2,
  });
  const m = createMasterMetrics({ versions: () => ({ versions: new Map([['v1', v1]]) }) });
  m.onRequestDone('v1', 200, undefined);
  m.onRequestDone('v1', 200, 'stream_failed');
  m.onRequestDone('v1', 503, '5xx');
  m.onRequestDone('v1', 0, 'abandoned');
  m.onRequestDone('none', 404, undefined);
  m.observeHeaderLatency('v1', 0.0004);
  m.observeHeaderLatency('v1', 2);
  m.onRejected('v1', 'queue_full');
  const samples = parsePrometheusText(await m.registry.metrics());
  const sum = (name: string, labels: Record<string, string> = {}): number => sumSamples(samples, name, labels);
  t.equal(sum(METRIC.requestsTotal, { version: 'v1', code: '200' }), 2);
  t.equal(sum(METRIC.requestsTotal, { version: 'v1', code: '503' }), 1);
  t.equal(sum(METRIC.requestsTotal, { version: 'none', code: '404' }), 1);
  for (const kind of ['5xx', 'stream_failed', 'abandoned'])
    t.equal(sum(METRIC.requestErrorsTotal, { version: 'v1', kind }), 1, `errors of kind ${kind}`);
  t.match(
    await m.registry.metrics(),
    /graygate_request_errors_total\{version="none",kind="5xx"\} 0/,
    "every kind has a series from a version's first request",
  );
  t.equal(
    sum(`${METRIC.requestDurationSeconds}_bucket`, { version: 'v1', le: '0.0005' }),
    1,
    'a sub-millisecond answer lands in a sub-millisecond bucket',
  );
  t.equal(sum(`${METRIC.requestDurationSeconds}_count`, { version: 'v1' }), 2);
  t.equal(sum(METRIC.rejectedTotal, { version: 'v1', reason: 'queue_full' }), 1);
  // A rejection ratio or alert reads a series at 0 before the first refusal, not no data (the error kinds' rule).
  for (const reason of ['queue_full', 'queue_timeout', 'no_ready_worker', 'body_budget', 'worker_timeout'])
    t.match(
      await m.registry.metrics(),
      new RegExp(`graygate_rejected_total\\{version="none",reason="${reason}"\\} 0`),
      `${reason}: a series from a version's first request`,
    );
  t.equal(sum(METRIC.queueDepth, { version: 'v1' }), 3);
  t.equal(sum(METRIC.workers, { version: 'v1', state: 'ready' }), 1);
  t.equal(sum(METRIC.workers, { version: 'v1', state: 'starting' }), 1);
  t.equal(sum(METRIC.workerRestartsTotal, { version: 'v1' }), 2);
});

t.test('gatherMetrics sums instances, keeps processes apart, reports missing workers', async (t) => {
  const a = createWorkerMetrics({ version: 'v1' });
  const b = createWorkerMetrics({ version: 'v1' });
  a.addTokens({ prompt_tokens: 10, completion_tokens: 5 });
  b.addTokens({ prompt_tokens: 1, completion_tokens: 7 });
  a.observeFirstToken(0.07);
  b.observeFirstToken(0.2);
  b.observeFirstToken(30);
  a.onUpstreamError('timeout');
  b.onUpstreamError('timeout');
  const stuck = new Promise<undefined>(() => {});
  const deadlineAnswer = (): Promise<undefined> => Promise.race([stuck, Promise.resolve(undefined)]);
  const supervisor: RegistryView = {
    versions: new Map([
      [
        'v1',
        version([worker(0, 101, () => overIpc(() => a.collect())), worker(1, 102, () => overIpc(() => b.collect()))]),
      ],
      // requestMetrics resolves undefined when its deadline passes; here at once.
      ['v2', version([worker(0, 201, deadlineAnswer), worker(1, 202, async () => [], 'crashed')])],
    ]),
  };
  const master = createMasterMetrics({ versions: () => supervisor });
  master.onRequestDone('v1', 200, undefined);
  const registry = await gatherMetrics(supervisor, master, { deadlineMs: 50 });
  const text = await registry.metrics();
  t.doesNotThrow(() => parsePromText(text), 'parses with parse-prometheus-text-format');
  const samples = parsePrometheusText(text);
  const sum = (name: string, labels: Record<string, string> = {}): number => sumSamples(samples, name, labels);
  const series = (name: string): Array<Record<string, string>> =>
    samples.filter((s) => s.name === name).map((s) => s.labels);

  t.equal(sum(METRIC.tokensTotal, { version: 'v1', kind: 'prompt' }), 11, 'counters sum over instances');
  t.equal(series(METRIC.tokensTotal).filter((l) => l['version'] === 'v1').length, 2, 'one series per kind');
  t.equal(sum(METRIC.upstreamErrorsTotal, { version: 'v1', kind: 'timeout' }), 2);
  t.equal(sum(`${METRIC.streamFirstTokenSeconds}_count`, { version: 'v1' }), 3, 'histograms merge');
  t.equal(sum(`${METRIC.streamFirstTokenSeconds}_bucket`, { version: 'v1', le: '0.1' }), 1);
  t.equal(sum(`${METRIC.streamFirstTokenSeconds}_bucket`, { version: 'v1', le: '0.25' }), 2);
  t.equal(sum(`${METRIC.streamFirstTokenSeconds}_bucket`, { version: 'v1', le: '+Inf' }), 3);
  t.equal(sum(METRIC.requestsTotal, { version: 'v1', code: '200' }), 1, "the master's own series are there");

  t.same(
    series(METRIC.workerScrapeUp)
      .map((l) => l['worker'])
      .sort(),
    ['v1/0/101', 'v1/1/102', 'v2/0/201'],
    'every serving worker was asked; a crashed one is not',
  );
  t.equal(sum(METRIC.workerScrapeUp, { worker: 'v2/0/201' }), 0, 'the silent worker is visible as 0');
  t.same(
    series('process_start_time_seconds')
      .map((l) => l['worker'])
      .sort(),
    [MASTER_WORKER_LABEL, 'v1/0/101', 'v1/1/102'],
    'one per process, not omitted',
  );
  t.match(
    series('process_cpu_user_seconds_total').find((l) => l['worker'] === 'v1/1/102'),
    { version: 'v1' },
  );
  t.ok(
    samples.filter((s) => s.name === 'nodejs_version_info').every((s) => s.labels['version'] === process.version),
    "Node's own version label is kept",
  );
  const lag = samples.filter(
    (s) => s.name === 'nodejs_eventloop_lag_mean_seconds' && s.labels['worker'] !== MASTER_WORKER_LABEL,
  );
  t.ok(
    lag.every((s) => Number.isNaN(s.value) || Number.isFinite(s.value)),
    'a NaN that crossed IPC as null is NaN again, not +Inf',
  );
});

t.test("a gone worker's counters and histograms stay in its version's totals; its gauges do not", async (t) => {
  const a = createWorkerMetrics({ version: 'v1' });
  const b = createWorkerMetrics({ version: 'v1' });
  a.addTokens({ prompt_tokens: 10, completion_tokens: 5 });
  b.addTokens({ prompt_tokens: 1, completion_tokens: 7 });
  a.observeFirstToken(0.07);
  b.observeFirstToken(0.2);
  b.onUpstreamError('reset');
  b.streamStarted();
  let isAStuck = false;
  const wa = worker(0, 101, () => (isAStuck ? Promise.resolve(undefined) : overIpc(() => a.collect())));
  const wb = worker(1, 102, () => overIpc(() => b.collect()));
  const group: VersionView & { workers: WorkerView[] } = { ...version([wa, wb]), workers: [wa, wb] };
  const view: RegistryView = { versions: new Map([['v1', group]]) };
  const master = createMasterMetrics({ versions: () => view });
  const read = async (): Promise<{ sum: (n: string, l?: Record<string, string>) => number; procs: string[] }> => {
    const samples = parsePrometheusText(await (await gatherMetrics(view, master, { deadlineMs: 50 })).metrics());
    return {
      sum: (name, labels = {}) => sumSamples(samples, name, labels),
      procs: samples
        .filter((s) => s.name === 'process_start_time_seconds')
        .map((s) => s.labels['worker']!)
        .sort(),
    };
  };
  const completion = { version: 'v1', kind: 'completion' };

  const before = await read();
  t.equal(before.sum(METRIC.tokensTotal, completion), 12);
  t.equal(before.sum(`${METRIC.streamFirstTokenSeconds}_count`, { version: 'v1' }), 2);
  t.equal(before.sum(METRIC.streamsActive, { version: 'v1' }), 1);

  // b crashes: its handle's state is final when the supervisor hands its last answer over.
  b.addTokens({ prompt_tokens: 0, completion_tokens: 100 });
  wb.state = 'crashed';
  master.retireWorker('v1', wb.lastMetrics);
  const crashed = await read();
  t.equal(
    crashed.sum(METRIC.tokensTotal, completion),
    12,
    "b's share stays; what it counted after its last answer is lost",
  );
  t.equal(crashed.sum(`${METRIC.streamFirstTokenSeconds}_count`, { version: 'v1' }), 2);
  t.equal(crashed.sum(`${METRIC.streamFirstTokenSeconds}_bucket`, { version: 'v1', le: '0.25' }), 2);
  t.equal(crashed.sum(`${METRIC.streamFirstTokenSeconds}_sum`, { version: 'v1' }), 0.27);
  t.equal(crashed.sum(METRIC.upstreamErrorsTotal, { version: 'v1', kind: 'reset' }), 1);
  t.equal(crashed.sum(METRIC.streamsActive, { version: 'v1' }), 0, 'its gauge went with it');
  t.same(crashed.procs, [MASTER_WORKER_LABEL, 'v1/0/101'], 'its process series went with it');

  // Its replacement starts from zero; a, late for this scrape, counts with its last answer.
  const c = createWorkerMetrics({ version: 'v1' });
  c.addTokens({ prompt_tokens: 2, completion_tokens: 3 });
  group.workers = [wa, worker(1, 103, () => overIpc(() => c.collect()))];
  isAStuck = true;
  const replaced = await read();
  t.equal(replaced.sum(METRIC.tokensTotal, completion), 5 + 7 + 3);
  t.equal(replaced.sum(METRIC.tokensTotal, { version: 'v1', kind: 'prompt' }), 10 + 1 + 2);
  t.same(replaced.procs, [MASTER_WORKER_LABEL, 'v1/1/103'], "the late worker's process series are absent");

  const series = (): number => master.retiredMetrics().reduce((n, m) => n + m.values.length, 0);
  const held = series();
  for (let i = 0; i < 50; i++) master.retireWorker('v1', wb.lastMetrics);
  t.equal(series(), held, 'totals are per label set, not per worker: restarts do not grow them');
  master.forgetVersion('v1');
  t.same(master.retiredMetrics(), [], "a removed version's totals go");
});

t.test('labelPerProcess leaves graygate_* series alone', async (t) => {
  const input = [
    {
      name: 'graygate_x',
      help: '',
      type: 'counter',
      aggregator: 'sum',
      values: [{ value: 1, labels: { version: 'v1' } }],
    },
    { name: 'process_y', help: '', type: 'gauge', aggregator: 'omit', values: [{ value: 2, labels: {} }] },
  ] as unknown as Parameters<typeof labelPerProcess>[0];
  const out = labelPerProcess(input, { version: 'v1', worker: 'v1/0/1' });
  t.equal(out[0], input[0]);
  t.same(out[1], {
    ...input[1],
    aggregator: 'first',
    values: [{ value: 2, labels: { version: 'v1', worker: 'v1/0/1' } }],
  });
});

t.test('forgetVersion drops a removed version’s series (issue 12)', async (t) => {
  const m = createMasterMetrics({ versions: () => ({ versions: new Map() }) });
  m.onRequestDone('gone', 200, undefined);
  m.onRequestDone('gone', 503, '5xx');
  m.onRequestDone('kept', 200, undefined);
  m.observeHeaderLatency('gone', 0.01);
  m.onRejected('gone', 'queue_full');
  t.match(await m.registry.metrics(), /version="gone"/);
  m.forgetVersion('gone');
  const text = await m.registry.metrics();
  t.notMatch(text, /version="gone"/, 'no series of the removed version');
  t.match(text, /graygate_requests_total\{version="kept",code="200"\} 1/, 'others stay');
  m.onRequestDone('gone', 200, undefined);
  t.match(
    await m.registry.metrics(),
    /graygate_requests_total\{version="gone",code="200"\} 1/,
    'a version added again starts from zero',
  );
});
