import t from 'tap';
import { performance } from 'node:perf_hooks';
import { startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { status } from '../helpers/wait.js';
import { scrape } from '../helpers/metrics.js';
import { METRIC } from '../../shared/metric-names.js';

// Issue 5: a worker that never answers the metrics IPC request
// (TEST_WORKER_METRICS=ignore) must not stall /metrics. The scrape still
// answers, without that worker's series, and graygate_worker_scrape_up
// says which worker is missing. /metrics follows the admin token rule.

t.test('a stuck worker does not block /metrics and its absence is visible', async (t) => {
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: { entry: TEST_WORKER_ENTRY, weight: 1 },
        v2: { entry: TEST_WORKER_ENTRY, weight: 1, env: { TEST_WORKER_METRICS: 'ignore' } },
      },
    },
    { env: { GRAYGATE_ADMIN_TOKEN: 'metrics-token' } },
  );
  const auth = { authorization: 'Bearer metrics-token' };
  t.equal((await scrape(gw)).status, 401, '/metrics needs the admin token');

  const versions = await (async () => {
    const res = await fetch(`${gw.adminUrl}/admin/status`, { headers: auth });
    return ((await res.json()) as { versions: Awaited<ReturnType<typeof status>> }).versions;
  })();
  const v1Pid = versions['v1']!.workers[0]!.pid;
  const v2Pid = versions['v2']!.workers[0]!.pid;

  // Twice: a scrape left waiting on the stuck worker would leave the next one waiting too.
  for (const round of [1, 2]) {
    const started = performance.now();
    const m = await scrape(gw, auth);
    t.comment(
      `scrape ${round} answered in ${Math.round(performance.now() - started)} ms (per-worker deadline 1000 ms)`,
    );
    t.equal(m.status, 200, `scrape ${round} answered although v2's worker never replies`);
    t.equal(m.sum(METRIC.workerScrapeUp, { version: 'v1', worker: `v1/0/${v1Pid}` }), 1, 'v1 answered');
    const v2Up = m.samples.filter((s) => s.name === METRIC.workerScrapeUp && s.labels['version'] === 'v2');
    t.same(
      v2Up.map((s) => [s.labels['worker'], s.value]),
      [[`v2/0/${v2Pid}`, 0]],
      'v2 is reported missing, by worker',
    );
    const rss = m.samples
      .filter((s) => s.name === 'process_resident_memory_bytes')
      .map((s) => s.labels['worker'])
      .sort();
    t.same(rss, ['master', `v1/0/${v1Pid}`], "the stuck worker's series are absent, the others are there");
    t.equal(
      m.sum(METRIC.workers, { version: 'v2', state: 'ready' }),
      1,
      'the master still reports the stuck worker as ready',
    );
  }
  const ok = await fetch(`${gw.url}/slow?version=v2`);
  t.equal(ok.status, 200, 'the stuck worker still serves requests');
  await ok.text();
});
