import t from 'tap';
import { Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { httpRequest } from '../helpers/http.js';
import { scrape } from '../helpers/metrics.js';
import { pollUntil } from '../helpers/wait.js';
import { computeRows } from '../../scripts/cli/top-view.js';
import { runTop } from '../../scripts/cli/top.js';

// Issue 5 part 5: `graygate top` computes its rows from the same /metrics a
// Prometheus scrapes, and draws them.

t.test('graygate top against a running gateway', async (t) => {
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: { entry: TEST_WORKER_ENTRY, weight: 1, instances: 2 },
        v2: { entry: TEST_WORKER_ENTRY, weight: 0 },
      },
    },
    { env: { GRAYGATE_ADMIN_TOKEN: 'top-token' } },
  );
  const auth = { authorization: 'Bearer top-token' };

  t.test('rows from two real scrapes count the requests in between', async (t) => {
    const before = await scrape(gw, auth);
    const beforeAt = performance.now();
    for (let i = 0; i < 6; i++) await httpRequest(`${gw.url}/slow?version=v1`);
    await httpRequest(`${gw.url}/slow?version=v2`);
    // One scrape is exact only once the master logged them all: the count is the event.
    const after = await pollUntil(
      () => scrape(gw, auth),
      (s) => s.sum('graygate_requests_total') >= before.sum('graygate_requests_total') + 7,
      'graygate_requests_total counts the 7 requests',
    );
    const afterAt = performance.now();
    const rows = computeRows({ atMs: beforeAt, samples: before.samples }, { atMs: afterAt, samples: after.samples });
    const v1 = rows.find((r) => r.version === 'v1')!;
    t.equal(Math.round(v1.rps! * ((afterAt - beforeAt) / 1000)), 6, 'rate × interval = the 6 requests');
    t.equal(v1.errorRate, 0);
    t.ok(v1.p99Ms! > 0, `p99 ${v1.p99Ms} ms`);
    t.equal(v1.workersUp, 2);
    t.equal(rows.find((r) => r.version === 'v2')!.workersScraped, 1);
  });

  t.test('runTop draws frames and stops', async (t) => {
    let out = '';
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        out += chunk.toString('utf8');
        cb();
      },
    });
    await runTop({ adminUrl: gw.adminUrl, token: 'top-token', output: sink, frames: 2, intervalMs: 100 });
    t.equal(out.match(/^graygate top — /gm)?.length, 2, 'two frames');
    t.match(out, /VERSION\s+REQ\/S\s+ERR%\s+P99 MS/);
    t.match(out, /\nv1\s+\S+\s+\S+\s+\S+\s+\S+\s+0\s+0\s+2\/2\n/);
  });

  t.test('a wrong token ends top with a one-line reason', async (t) => {
    await t.rejects(
      runTop({
        adminUrl: gw.adminUrl,
        token: 'nope',
        output: new Writable({ write: (_c, _e, cb) => cb() }),
        frames: 1,
      }),
      { exitCode: 1, message: /^401 unauthorized/ },
    );
  });
});
