import t from 'tap';
import { computeRows, histogramQuantile, renderRows } from '../../../scripts/cli/top-view.js';
import { parsePrometheusText } from '../../../scripts/cli/prom-text.js';
import { parsePromText } from '../../helpers/metrics.js';

t.test('histogramQuantile interpolates like Prometheus', async (t) => {
  const cases: Array<[number, Array<[number, number]>, number | undefined]> = [
    [0.99, [], undefined],
    [
      0.99,
      [
        [0.1, 0],
        [Infinity, 0],
      ],
      undefined,
    ],
    [
      0.5,
      [
        [1, 10],
        [2, 20],
        [Infinity, 20],
      ],
      1,
    ], // rank 10 at the top of the first bucket
    [
      0.75,
      [
        [1, 10],
        [2, 20],
        [Infinity, 20],
      ],
      1.5,
    ],
    [
      0.99,
      [
        [0.001, 100],
        [Infinity, 100],
      ],
      0.00099,
    ],
    [
      0.99,
      [
        [1, 0],
        [Infinity, 5],
      ],
      1,
    ], // in +Inf: the highest finite bound
  ];
  for (const [q, b, want] of cases) {
    const got = histogramQuantile(q, new Map(b));
    if (want === undefined) t.equal(got, undefined);
    else t.ok(Math.abs(got! - want) < 1e-12, `q=${q} ${JSON.stringify(b)} → ${got}`);
  }
});

t.test('rows from two scrapes: rates over the interval, a restarted counter counted from zero', async (t) => {
  // v1failed: streams of v1 that failed after their 200 (counted under code 200, and as errors).
  const scrape = (v1ok: number, v1err: number, v2ok: number, bucket: number, v1failed: number): string => `
# TYPE graygate_requests_total counter
graygate_requests_total{version="v1",code="200"} ${v1ok}
graygate_requests_total{version="v1",code="503"} ${v1err}
graygate_requests_total{version="v2",code="200"} ${v2ok}
graygate_requests_total{version="none",code="404"} 9
# TYPE graygate_request_errors_total counter
graygate_request_errors_total{version="v1",kind="5xx"} ${v1err}
graygate_request_errors_total{version="v1",kind="stream_failed"} ${v1failed}
graygate_request_errors_total{version="v2",kind="5xx"} 0
# TYPE graygate_request_duration_seconds histogram
graygate_request_duration_seconds_bucket{le="0.001",version="v1"} ${bucket}
graygate_request_duration_seconds_bucket{le="0.01",version="v1"} ${v1ok + v1err}
graygate_request_duration_seconds_bucket{le="+Inf",version="v1"} ${v1ok + v1err}
graygate_queue_depth{version="v1"} 4
graygate_streams_active{version="v2"} 2
graygate_worker_scrape_up{version="v1",worker="v1/0/1"} 1
graygate_worker_scrape_up{version="v1",worker="v1/1/2"} 0
`;
  const a = scrape(100, 0, 50, 100, 0);
  const b = scrape(180, 20, 10, 100, 10); // v2 went down: its process restarted
  t.doesNotThrow(() => parsePromText(b), 'the fixture is valid exposition text');
  const rows = computeRows(
    { atMs: 0, samples: parsePrometheusText(a) },
    { atMs: 2000, samples: parsePrometheusText(b) },
  );
  t.same(
    rows.map((r) => r.version),
    ['v1', 'v2'],
    'no row for requests without a version',
  );
  const [v1, v2] = rows;
  t.equal(v1!.rps, 50, '100 requests in 2 s');
  t.equal(v1!.errorRate, 0.3, '20 answered 503 and 10 streams failed after their 200, of 100');
  t.ok(v1!.p99Ms! > 1 && v1!.p99Ms! <= 10, `p99 ${v1!.p99Ms} ms is in the (1, 10] ms bucket`);
  t.equal(v1!.queueDepth, 4);
  t.equal(v1!.workersUp, 1);
  t.equal(v1!.workersScraped, 2);
  t.equal(v2!.rps, 5, 'a counter that went down counts from zero');
  t.equal(v2!.streams, 2);
  t.equal(v2!.p99Ms, undefined);
  // A master older than graygate_request_errors_total: its 5xx are the errors.
  const old = (text: string): string =>
    text
      .split('\n')
      .filter((l) => !l.includes('graygate_request_errors_total'))
      .join('\n');
  const [oldV1] = computeRows(
    { atMs: 0, samples: parsePrometheusText(old(a)) },
    { atMs: 2000, samples: parsePrometheusText(old(b)) },
  );
  t.equal(oldV1!.errorRate, 0.2, 'the 20 503s of 100');
  const first = computeRows(undefined, { atMs: 0, samples: parsePrometheusText(a) });
  t.equal(first[0]!.rps, undefined, 'no rate from one scrape');
  t.match(
    renderRows(rows),
    /^VERSION\s+REQ\/S\s+ERR%\s+P99 MS\s+TTFT P99 MS\s+QUEUE\s+STREAMS\s+WORKERS UP\nv1\s+50\.0\s+30\.0\s+\S+\s+-\s+4\s+0\s+1\/2\nv2\s+5\.0/,
  );
});

t.test('the text reader: escapes, NaN spellings, and errors on a broken line', async (t) => {
  const samples = parsePrometheusText('a{l="x\\"y\\\\z\\n"} 1\nb Nan\nc +Inf 1700000000\n');
  t.same(samples[0], { name: 'a', labels: { l: 'x"y\\z\n' }, value: 1 });
  t.ok(Number.isNaN(samples[1]!.value));
  t.equal(samples[2]!.value, Infinity);
  t.throws(() => parsePrometheusText('a{l="x"} one'), /line 1 is not a Prometheus sample/);
});

t.test('rows are the versions /admin/status lists: a removed version leaves no row and no state', async (t) => {
  const text = (versions: string[], count: number): string =>
    versions
      .map(
        (v) =>
          `graygate_requests_total{version="${v}",code="200"} ${count}\ngraygate_worker_scrape_up{version="${v}",worker="${v}/0/1"} 1\n`,
      )
      .join('');
  const before = { atMs: 0, samples: parsePrometheusText(text(['v1', 'v3'], 10)), versions: ['v1', 'v3'] };
  // v3 was removed between the scrapes, but this master still exposes its counter.
  const stale = { atMs: 1000, samples: parsePrometheusText(text(['v1', 'v3'], 20)), versions: ['v1'] };
  t.same(
    computeRows(before, stale).map((r) => r.version),
    ['v1'],
    'series of a version status no longer lists are ignored',
  );
  t.equal(computeRows(before, stale)[0]!.rps, 10);
  const gone = { atMs: 2000, samples: parsePrometheusText(text(['v1'], 30)), versions: ['v1'] };
  t.same(
    computeRows(stale, gone).map((r) => r.version),
    ['v1'],
    'and once its series are gone too',
  );
  // v3 is added again under the same name: its old counter must not make a rate.
  const readded = { atMs: 3000, samples: parsePrometheusText(text(['v1', 'v3'], 40)), versions: ['v1', 'v3'] };
  const rows = computeRows(gone, readded);
  t.same(
    rows.map((r) => [r.version, r.rps]),
    [
      ['v1', 10],
      ['v3', undefined],
    ],
    'a version the previous scrape did not list has no rate yet',
  );
  const listedOnly = { atMs: 4000, samples: parsePrometheusText(text(['v1'], 50)), versions: ['v1', 'v4'] };
  t.same(
    computeRows(readded, listedOnly).find((r) => r.version === 'v4'),
    {
      version: 'v4',
      rps: undefined,
      errorRate: undefined,
      p99Ms: undefined,
      firstTokenP99Ms: undefined,
      queueDepth: 0,
      streams: 0,
      workersUp: 0,
      workersScraped: 0,
    },
    'a listed version without series yet has a row of zeros',
  );
});

t.test('rows are in the order people count: v2 before v10', async (t) => {
  const names = ['v10', 'v2', 'canary-b', 'v1', 'canary-a'];
  const samples = parsePrometheusText(
    names.map((v) => `graygate_requests_total{version="${v}",code="200"} 1\n`).join(''),
  );
  t.same(
    computeRows(undefined, { atMs: 0, samples, versions: names }).map((r) => r.version),
    ['canary-a', 'canary-b', 'v1', 'v2', 'v10'],
  );
});
