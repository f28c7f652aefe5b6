import t from 'tap';
import { admin, startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { pollPause, waitForStatus, isAlive, type VersionRow } from '../helpers/wait.js';
import { scrape, scrapeUntil, type Scrape } from '../helpers/metrics.js';
import { countPromptTokens } from '../../shared/mock-upstream/index.js';
import { METRIC } from '../../shared/metric-names.js';
import { postStream, chatBody, type StreamClient } from '../worker/fixtures/sse-client.js';

// SPEC §9 (defect f2): /metrics sums a version's worker processes, and the
// counters went backwards when one of them went away (tokens 500 → 210 when
// one of two workers restarted, 30 → 0 and the first-token histogram gone
// after a deploy), which Prometheus reads as a reset. Real master, real
// workers, the mock upstream: v1 has two instances, one is killed (SIGKILL,
// its pid read from /admin/status) while it holds a stream, then v1 is
// deployed. Every scrape is checked against every earlier one: no counter or
// histogram series of a worker may go down or vanish, and the totals equal
// what was served, the traffic after the last scrape before the deploy
// included (the old workers' final snapshot). Gauges and process series of a
// gone process must go.

const FIRST = METRIC.streamFirstTokenSeconds;
const CUMULATIVE = new Set<string>([
  METRIC.tokensTotal,
  METRIC.upstreamErrorsTotal,
  `${FIRST}_bucket`,
  `${FIRST}_sum`,
  `${FIRST}_count`,
]);

const prompt = (directive: string): number => {
  const body = chatBody(directive) as { messages: Array<{ content: string }> };
  return countPromptTokens(body.messages.map((m) => m.content));
};

t.test('worker counters never go down across a crash and a deploy, and count everything served', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { weight: 1, instances: 2, upstream: { format: 'openai', url: 'mock:' } } },
    limits: { maxSocketsPerWorker: 1, maxQueuePerVersion: 0 },
  });
  const url = `${gw.url}/v1/chat/completions?version=v1`;
  const served = { completion: 0, prompt: 0, firstTokens: 0, statusErrors: 0 };
  const inflight = (vs: Record<string, VersionRow>): number => vs['v1']!.workers.reduce((n, w) => n + w.inflight, 0);
  // The master frees a slot when the worker's socket is back, a moment after the client has its answer.
  const settle = (held: number): Promise<Record<string, VersionRow>> =>
    waitForStatus(gw, (vs) => inflight(vs) === held, `${held} requests in flight`);

  const complete = async (tokens: number, held: number): Promise<void> => {
    const directive = `[mock tokens=${tokens}]`;
    const s = await postStream(url, chatBody(directive));
    await s.done;
    t.equal(s.data.at(-1), '[DONE]', `${directive} answered`);
    served.completion += tokens;
    served.prompt += prompt(directive);
    served.firstTokens++;
    await settle(held);
  };
  const fail = async (held: number): Promise<void> => {
    const s = await postStream(url, chatBody('[mock fault=status status=500]'));
    await s.done;
    t.equal(s.status, 502, 'an upstream 500 is a 502');
    served.statusErrors++;
    await settle(held);
  };
  const hold = async (): Promise<StreamClient> => {
    const s = await postStream(url, chatBody('[mock tokens=5 fault=stall after=1]'));
    await s.until(() => s.text() !== '');
    served.firstTokens++;
    return s;
  };

  // Every scrape is compared with all the earlier ones: a series may only go up.
  const highest = new Map<string, number>();
  const key = (s: { name: string; labels: Record<string, string> }): string => `${s.name}${JSON.stringify(s.labels)}`;
  const drops: string[] = [];
  const check = (m: Scrape): void => {
    const now = new Map(m.samples.filter((s) => CUMULATIVE.has(s.name)).map((s) => [key(s), s.value]));
    for (const [k, before] of highest) {
      const after = now.get(k);
      if (after === undefined || after < before) drops.push(`${k}: ${before} → ${after ?? 'absent'}`);
    }
    for (const [k, v] of now) highest.set(k, Math.max(v, highest.get(k) ?? 0));
  };
  const matchesServed = (m: Scrape): boolean =>
    m.sum(METRIC.tokensTotal, { version: 'v1', kind: 'completion' }) === served.completion &&
    m.sum(METRIC.tokensTotal, { version: 'v1', kind: 'prompt' }) === served.prompt &&
    m.sum(`${FIRST}_count`, { version: 'v1' }) === served.firstTokens &&
    m.sum(`${FIRST}_bucket`, { version: 'v1', le: '+Inf' }) === served.firstTokens &&
    m.sum(METRIC.upstreamErrorsTotal, { version: 'v1', kind: 'status' }) === served.statusErrors;
  /** Scrapes (each one checked) until the totals equal what was served and `also` holds, or a series went down. */
  const scrapeServed = (what: string, also: (m: Scrape) => boolean = () => true): Promise<Scrape> =>
    scrapeUntil(
      gw,
      (m) => {
        check(m);
        return drops.length > 0 || (matchesServed(m) && also(m));
      },
      what,
    );
  const processes = (m: Scrape): string[] =>
    m.samples.filter((s) => s.name === 'process_start_time_seconds').map((s) => s.labels['worker']!);

  // Both instances count: the first holds a stream, the second answers (maxSocketsPerWorker 1).
  const first = await hold();
  await complete(3, 1);
  await complete(4, 1);
  await fail(1);
  first.req.destroy();
  await settle(0);
  await complete(5, 0);
  const held = await hold();
  const busy = await settle(1);
  const victim = busy['v1']!.workers.find((w) => w.inflight === 1)!;
  const other = busy['v1']!.workers.find((w) => w.inflight === 0)!;
  // What a Prometheus scraping now would see; the totals are summed over both instances.
  await scrapeServed('v1 counts everything served', (m) => m.sum(METRIC.streamsActive, { version: 'v1' }) === 1);

  // A crash: its counters stay, its gauges and process series go.
  process.kill(victim.pid, 'SIGKILL');
  await held.done;
  // Scraped all the while it is gone and replaced: each scrape is checked.
  const replaced = await scrapeServed(
    'the victim replaced',
    (m) =>
      m.sum(METRIC.workers, { version: 'v1', state: 'ready' }) === 2 &&
      m.sum(METRIC.workerRestartsTotal, { version: 'v1' }) === 1 &&
      processes(m).length === 3,
  );
  t.notOk(
    processes(replaced).some((w) => w.endsWith(`/${victim.pid}`)),
    "the victim's process series are gone",
  );
  t.equal(replaced.sum(METRIC.streamsActive, { version: 'v1' }), 0, 'its held stream left graygate_streams_active');
  t.same(drops, [], 'no worker series went down or vanished across the crash');
  const after = await waitForStatus(
    gw,
    (vs) => vs['v1']!.workers.every((w) => w.state === 'ready' && w.pid !== victim.pid) && !isAlive(victim.pid),
    'the victim gone and replaced',
  );
  t.ok(
    after['v1']!.workers.some((w) => w.pid === other.pid),
    'only the victim was killed',
  );
  await complete(6, 0);
  await complete(2, 0);
  await scrapeServed('the replacement counts on top');
  t.same(drops, [], 'no worker series went down or vanished');

  // A deploy: the old build counts to its end.
  const oldPids = after['v1']!.workers.map((w) => w.pid);
  // Served after the last scrape: only the old workers' final snapshot at stop has these.
  await complete(7, 0);
  await fail(0);
  const deployed = await admin<{ workers: Array<{ pid: number }> }>(gw, 'POST', '/admin/versions/v1/deploy', {});
  t.equal(deployed.status, 200);
  t.notOk(
    deployed.body.workers.some((w) => oldPids.includes(w.pid)),
    'the old build is gone',
  );
  const m = await scrape(gw);
  check(m);
  t.ok(matchesServed(m), `the first scrape after the deploy counts everything served ${JSON.stringify(served)}`);
  t.same(
    processes(m)
      .filter((w) => w !== 'master')
      .map((w) => Number(w.split('/')[2]))
      .sort(),
    deployed.body.workers.map((w) => w.pid).sort(),
    'process series of the new build only',
  );
  t.same(drops, [], 'no worker series went down or vanished across the deploy');
  await complete(1, 0);
  await scrapeServed('the new build counts on top');
  t.same(drops, [], 'no worker series went down or vanished');
});

t.test("a worker that crashes between scrapes keeps its counts up to its last health probe's answer", async (t) => {
  // An observability probe: an OOM kill between two scrapes lost 60 % of a worker's token count (all it counted since
  // the last scrape). Every health probe's answer now carries the worker's counters and histograms.
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { healthIntervalMs: 100 },
  });
  const stats = async (): Promise<{ pid: number; probesSinceTokens: number }> =>
    json<{ pid: number; probesSinceTokens: number }>(await httpRequest(`${gw.url}/stats`));
  for (let i = 0; i < 3; i++) t.equal((await httpRequest(`${gw.url}/tokens?n=7`)).status, 200);
  // No scrape before the crash: the event is a probe answered after the tokens were counted.
  let seen = await stats();
  while (seen.probesSinceTokens < 1) {
    await pollPause();
    seen = await stats();
  }
  process.kill(seen.pid, 'SIGKILL');
  await waitForStatus(gw, (v) => v.v1!.workers[0]?.state === 'ready' && v.v1!.workers[0].pid !== seen.pid, 'restart');
  const after = await scrape(gw);
  t.equal(after.sum('graygate_tokens_total', { version: 'v1', kind: 'completion' }), 21, 'the 21 tokens are kept');
});
