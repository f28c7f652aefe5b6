import t from 'tap';
import { startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { runCli } from '../helpers/cli.js';
import { status, waitForStatus } from '../helpers/wait.js';
import { scrape } from '../helpers/metrics.js';
import { METRIC } from '../../shared/metric-names.js';

// SPEC §4, §6, §7: the queue is the version's (requests waiting for a slot on
// any of its workers). /admin/status showed it on every worker row, so two
// workers and 3 queued read as 6 in `graygate status`, against
// graygate_queue_depth 3. It is shown once per version: in the JSON on the
// version, in the CLI's QUEUED column on the version's first row.

t.test('the version queue is counted once: /admin/status, graygate status and /metrics agree', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1, instances: 2 } },
    limits: { maxSocketsPerWorker: 1, maxQueuePerVersion: 8, queueTimeoutMs: 60_000 },
  });
  const clients = new AbortController();
  t.teardown(() => clients.abort());
  const send = (): Promise<unknown> =>
    fetch(`${gw.url}/slow?ms=60000`, { signal: clients.signal }).catch(() => 'aborted');
  // Both slots held, then 3 wait.
  const requests = [send(), send()];
  await waitForStatus(gw, (v) => v['v1']!.workers.every((w) => w.inflight === 1), 'both workers busy');
  requests.push(send(), send(), send());
  const versions = await waitForStatus(gw, (v) => v['v1']!.queued === 3, '3 queued');

  const v1 = versions['v1']!;
  t.equal(v1.workers.length, 2);
  t.same(
    v1.workers.map((w) => 'queued' in w),
    [false, false],
    'no worker row claims the version queue',
  );
  t.equal((await scrape(gw)).sum(METRIC.queueDepth, { version: 'v1' }), 3, 'graygate_queue_depth says the same');

  const human = await runCli(t, ['status', '--admin', gw.adminUrl]);
  t.equal(human.code, 0);
  // The table, before the lines under it (client connections).
  const [header, ...lines] = human.stdout.split('\n\n')[0]!.trimEnd().split('\n');
  const from = header!.indexOf('QUEUED');
  const to = header!.indexOf('LAST DEPLOY');
  const queuedCells = lines.map((l) => l.slice(from, to).trim());
  t.same(queuedCells, ['3', ''], 'QUEUED once, on the version row; the second worker row leaves it blank');
  t.same(
    lines.map((l) => l.slice(header!.indexOf('INFLIGHT'), from).trim()),
    ['1', '1'],
    'INFLIGHT stays per worker',
  );
  const json = await runCli(t, ['status', '--json', '--admin', gw.adminUrl]);
  t.equal(
    (JSON.parse(json.stdout) as { versions: Record<string, { queued: number }> }).versions['v1']?.queued,
    3,
    '--json has the version queue',
  );

  clients.abort();
  await Promise.all(requests);
  await waitForStatus(gw, (v) => v['v1']!.queued === 0, 'the queue left with its clients');
  t.equal((await status(gw))['v1']!.queued, 0);
});
