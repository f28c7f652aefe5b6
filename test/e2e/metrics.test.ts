import t from 'tap';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { waitForStatus, type VersionRow } from '../helpers/wait.js';
import { scrape, scrapeUntil } from '../helpers/metrics.js';
import { countPromptTokens } from '../../shared/mock-upstream/index.js';
import { METRIC, NO_VERSION, UPSTREAM_ERROR_KINDS } from '../../shared/metric-names.js';
import { postStream, chatBody, type StreamClient } from '../worker/fixtures/sse-client.js';

// Issue 5, the counting test: a known mix of 200s, 503 queue_full, 404
// unknown_version and 400 through real master and worker processes, v1 with
// two instances. Every slot is held by a stream stalled by the mock upstream
// (no clocks): with one socket per worker and no queue, the next request to a
// full version is refused at once. The scraped counters must equal the counts
// exactly, and the workers' counters must be the sum of both instances.

const prompt = (directive: string): number => {
  const body = chatBody(directive) as { messages: Array<{ content: string }> };
  return countPromptTokens(body.messages.map((m) => m.content));
};

t.test('scraped counters equal the requests made, across two instances', async (t) => {
  const gw = await startGateway(t, {
    versions: {
      v1: { weight: 50, instances: 2, upstream: { format: 'openai', url: 'mock:' } },
      v2: { weight: 50, upstream: { format: 'openai', url: 'mock:' } },
    },
    limits: { maxSocketsPerWorker: 1, maxQueuePerVersion: 0 },
  });
  const url = (version: string): string => `${gw.url}/v1/chat/completions?version=${version}`;
  const inflight = (vs: Record<string, VersionRow>): number[] =>
    Object.values(vs).flatMap((v) => v.workers.map((w) => w.inflight));
  // The master frees a slot when the worker's socket is back, a moment after the client has its answer.
  const settle = (held: number): Promise<unknown> =>
    waitForStatus(gw, (vs) => inflight(vs).reduce((a, b) => a + b, 0) === held, `${held} requests in flight`);

  let v1Prompt = 0;
  let v2Prompt = 0;
  const complete = async (version: string, tokens: number, held: number): Promise<void> => {
    const directive = `[mock tokens=${tokens}]`;
    const s = await postStream(url(version), chatBody(directive));
    await s.done;
    t.equal(s.status, 200, `${version} ${directive} answered`);
    t.equal(s.data.at(-1), '[DONE]');
    if (version === 'v1') v1Prompt += prompt(directive);
    else v2Prompt += prompt(directive);
    await settle(held);
  };
  const hold = async (version: string): Promise<StreamClient> => {
    const s = await postStream(url(version), chatBody('[mock tokens=5 fault=stall after=1]'));
    await s.until(() => s.text() !== '');
    return s;
  };
  const refuse = async (version: string): Promise<void> => {
    const res = await httpRequest(url(version), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(chatBody('[mock tokens=1]')),
    });
    t.equal(res.status, 503);
    t.equal(json<{ error: { code: string } }>(res).error.code, 'queue_full');
  };

  // v1, both instances free: the first takes both answers (tokens 5 + 6).
  await complete('v1', 5, 0);
  await complete('v1', 6, 0);
  // Hold instance 0: the next two go to instance 1 (tokens 3 + 4).
  const held1 = await hold('v1');
  await complete('v1', 3, 1);
  await complete('v1', 4, 1);
  const held2 = await hold('v1');
  const v1Busy = await waitForStatus(
    gw,
    (vs) => vs['v1']!.workers.every((w) => w.inflight === 1),
    'both v1 instances busy',
  );
  t.equal(new Set(v1Busy['v1']!.workers.map((w) => w.pid)).size, 2, 'the two held streams are on two instances');
  for (let i = 0; i < 4; i++) await refuse('v1');
  // v2, one instance: two answers (tokens 2 + 9), then held.
  await complete('v2', 2, 2);
  await complete('v2', 9, 2);
  const held3 = await hold('v2');
  for (let i = 0; i < 3; i++) await refuse('v2');
  // No version for these: unknown (404) and malformed (400).
  t.equal((await httpRequest(url('v9'), { method: 'POST', body: '{}' })).status, 404);
  t.equal(
    (await httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', headers: { 'x-version': 'v9' }, body: '{}' }))
      .status,
    404,
  );
  t.equal((await httpRequest(url('Bad!'), { method: 'POST', body: '{}' })).status, 400);

  for (const s of [held1, held2, held3]) s.req.destroy();
  const m = await scrapeUntil(
    gw,
    (s) => s.sum(METRIC.streamsActive) === 0 && s.sum(METRIC.requestsTotal) === 19,
    'held streams finished in master and workers',
  );

  t.test('master counters', async (t) => {
    const requests = (version: string, code: string): number => m.sum(METRIC.requestsTotal, { version, code });
    t.equal(requests('v1', '200'), 6, 'v1: 4 answers + 2 held streams (status sent before the client left)');
    t.equal(requests('v1', '503'), 4);
    t.equal(requests('v2', '200'), 3);
    t.equal(requests('v2', '503'), 3);
    t.equal(requests(NO_VERSION, '404'), 2);
    t.equal(requests(NO_VERSION, '400'), 1);
    t.equal(m.sum(METRIC.rejectedTotal, { version: 'v1', reason: 'queue_full' }), 4);
    t.equal(m.sum(METRIC.rejectedTotal, { version: 'v2', reason: 'queue_full' }), 3);
    t.equal(m.sum(METRIC.rejectedTotal), 7, 'no other rejection');
    t.equal(
      m.sum(`${METRIC.requestDurationSeconds}_count`, { version: 'v1' }),
      10,
      'one latency observation per v1 request',
    );
    t.equal(m.sum(`${METRIC.requestDurationSeconds}_count`, { version: 'v2' }), 6);
    t.equal(m.sum(`${METRIC.requestDurationSeconds}_bucket`, { version: 'v1', le: '+Inf' }), 10);
    t.equal(m.sum(METRIC.queueDepth, { version: 'v1' }), 0);
    t.equal(m.sum(METRIC.workers, { version: 'v1', state: 'ready' }), 2);
    t.equal(m.sum(METRIC.workers, { version: 'v2', state: 'ready' }), 1);
    t.equal(m.sum(METRIC.workerRestartsTotal, { version: 'v1' }), 0);
  });

  t.test('worker counters are summed over both v1 instances', async (t) => {
    t.equal(
      m.sum(METRIC.tokensTotal, { version: 'v1', kind: 'completion' }),
      5 + 6 + 3 + 4,
      'instance 0 had 11, instance 1 had 7',
    );
    t.equal(m.sum(METRIC.tokensTotal, { version: 'v1', kind: 'prompt' }), v1Prompt);
    t.equal(m.sum(METRIC.tokensTotal, { version: 'v2', kind: 'completion' }), 2 + 9);
    t.equal(m.sum(METRIC.tokensTotal, { version: 'v2', kind: 'prompt' }), v2Prompt);
    t.equal(
      m.sum(`${METRIC.streamFirstTokenSeconds}_count`, { version: 'v1' }),
      6,
      'every v1 stream sent a first token, held ones too',
    );
    t.equal(m.sum(`${METRIC.streamFirstTokenSeconds}_count`, { version: 'v2' }), 3);
    t.equal(m.sum(METRIC.upstreamErrorsTotal), 0, 'a client leaving is not an upstream error');
    const tokenSeries = m.samples.filter((s) => s.name === METRIC.tokensTotal && s.labels['version'] === 'v1');
    t.equal(tokenSeries.length, 2, 'one merged series per kind, not one per instance');
    for (const kind of UPSTREAM_ERROR_KINDS)
      t.equal(m.sum(METRIC.upstreamErrorsTotal, { version: 'v1', kind }), 0, `${kind} series exists at 0`);
  });

  t.test('per-process series are kept apart by a worker label', async (t) => {
    const workers = m.samples.filter((s) => s.name === 'process_resident_memory_bytes').map((s) => s.labels['worker']);
    t.equal(workers.length, 4, 'master + 3 workers');
    t.ok(workers.includes('master'));
    t.equal(workers.filter((w) => w?.startsWith('v1/')).length, 2);
    t.equal(
      m.samples.filter((s) => s.name === 'process_start_time_seconds').length,
      4,
      "prom-client's `omit` aggregator does not drop them",
    );
    const node = m.samples.filter((s) => s.name === 'nodejs_version_info');
    t.ok(
      node.length === 4 && node.every((s) => s.labels['version'] === process.version),
      "a series' own `version` label (Node's) is kept",
    );
    const up = m.samples.filter((s) => s.name === METRIC.workerScrapeUp);
    t.equal(up.length, 3);
    t.ok(
      up.every((s) => s.value === 1),
      'every worker answered the scrape',
    );
  });

  t.test('the exposition parses with a third-party Prometheus parser', async (t) => {
    const again = await scrape(gw);
    t.equal(again.status, 200);
    t.match(again.contentType, /^text\/plain; version=0\.0\.4/);
    const names = new Set(again.families.map((f) => f.name));
    for (const name of Object.values(METRIC)) t.ok(names.has(name), `${name} is exposed`);
    const requests = again.families.find((f) => f.name === METRIC.requestsTotal)!;
    t.equal(requests.type, 'COUNTER');
    const v1ok = requests.metrics.find((s) => s.labels?.['version'] === 'v1' && s.labels['code'] === '200');
    t.equal(Number(v1ok?.value), 6, 'both parsers read the same value');
    t.equal(again.families.find((f) => f.name === METRIC.requestDurationSeconds)?.type, 'HISTOGRAM');
  });
});
