import t from 'tap';
import { once } from 'node:events';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { scrape, scrapeUntil } from '../helpers/metrics.js';
import { countPromptTokens } from '../../shared/mock-upstream/index.js';
import { METRIC, UPSTREAM_ERROR_KINDS } from '../../shared/metric-names.js';
import { postStream, chatBody } from '../worker/fixtures/sse-client.js';
import { DEAD_PORT } from '../helpers/dead-port.js';

// Issue 5: a streamed request records first-token latency and token counts;
// each upstream failure kind is counted once; the master's and the worker's
// request lines (real JSON lines from the processes' stdout) share a reqId,
// carry the fields an operator needs, and hold no secret.

const CLIENT_SECRET = 'sk-client-7f3c9a1e5d';
const CLIENT_KEY = 'xkey-4b8e2d6f0a';
const UPSTREAM_SECRET = 'sk-upstream-91d0c3b7e2';
const QUERY_SECRET = 'qkey-5a1f9e3c7b';

type LogLine = Record<string, unknown>;

function logLines(gw: Gateway): LogLine[] {
  return gw
    .output()
    .split('\n')
    .filter((l) => l.startsWith('{'))
    .map((l) => JSON.parse(l) as LogLine);
}

async function requestLines(gw: Gateway, reqId: string): Promise<{ master: LogLine; worker: LogLine }> {
  // The lines are written when each process sees the request end; the output is the event.
  for (let i = 0; i < 5000; i++) {
    const lines = logLines(gw).filter((l) => l['reqId'] === reqId);
    const master = lines.find((l) => l['role'] === 'master' && l['msg'] === 'request');
    const worker = lines.find((l) => l['role'] === 'worker' && l['msg'] === 'request finished');
    if (master !== undefined && worker !== undefined) return { master, worker };
    await once(gw.child.stdout!, 'data');
  }
  throw new Error(`no master and worker lines for ${reqId}:\n${gw.output()}`);
}

t.test('stream metrics, upstream error kinds, request logs', async (t) => {
  const mock = { format: 'openai', url: 'mock:' };
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: {
          weight: 1,
          upstream: { ...mock, apiKeyEnv: 'GG_TEST_UPSTREAM_KEY' },
          env: { GG_TEST_UPSTREAM_KEY: UPSTREAM_SECRET },
        },
        quick: { weight: 0, upstream: { ...mock, timeouts: { firstByteMs: 200 } } },
        dead: { weight: 0, upstream: { format: 'openai', url: `http://127.0.0.1:${DEAD_PORT}/v1` } },
      },
    },
    { env: { LOG_LEVEL: 'debug' } },
  );
  const url = (version: string): string => `${gw.url}/v1/chat/completions?version=${version}`;

  t.test('a streamed request records first-token latency and tokens', async (t) => {
    const directive = '[mock tokens=7 interval-ms=1]';
    const s = await postStream(
      `${url('v1')}&key=${QUERY_SECRET}`,
      chatBody(directive, { stream_options: { include_usage: true } }),
      {
        authorization: `Bearer ${CLIENT_SECRET}`,
        'x-api-key': CLIENT_KEY,
        'x-request-id': 'metrics-log-1',
      },
    );
    await s.done;
    t.equal(s.status, 200);
    const m = await scrapeUntil(
      gw,
      (m) => m.sum(METRIC.streamsActive, { version: 'v1' }) === 0,
      'the stream ended in the worker',
    );
    t.equal(m.sum(`${METRIC.streamFirstTokenSeconds}_count`, { version: 'v1' }), 1, 'one first-token observation');
    const ttft = m.sum(`${METRIC.streamFirstTokenSeconds}_sum`, { version: 'v1' });
    t.ok(ttft > 0, `first token after ${ttft} s`);
    t.equal(
      m.sum(`${METRIC.streamFirstTokenSeconds}_bucket`, { version: 'v1', le: '60' }),
      1,
      'the 60 s bucket exists and holds it',
    );
    t.equal(m.sum(METRIC.tokensTotal, { version: 'v1', kind: 'completion' }), 7);
    const body = chatBody(directive) as { messages: Array<{ content: string }> };
    t.equal(
      m.sum(METRIC.tokensTotal, { version: 'v1', kind: 'prompt' }),
      countPromptTokens(body.messages.map((x) => x.content)),
    );

    const { master, worker } = await requestLines(gw, 'metrics-log-1');
    t.match(master, {
      reqId: 'metrics-log-1',
      version: 'v1',
      method: 'POST',
      path: '/v1/chat/completions',
      status: 200,
      workerPid: Number,
    });
    t.ok((master['durationMs'] as number) > 0 && (master['bytesOut'] as number) > 0, 'master: duration and bytes out');
    t.match(worker, {
      reqId: 'metrics-log-1',
      version: 'v1',
      role: 'worker',
      method: 'POST',
      path: '/v1/chat/completions',
      status: 200,
      stream: true,
      tokens: 7,
    });
    t.equal(worker['pid'], master['workerPid'], "the worker line's pid is the worker the master logged");
    t.ok(
      (worker['firstTokenMs'] as number) > 0 &&
        (worker['bytesOut'] as number) > 0 &&
        (worker['durationMs'] as number) > 0,
      'worker: first token, bytes, duration',
    );
    // The canary's time per token (SPEC §11): the worker's measure, and the master's line says what it was told.
    t.equal(typeof worker['timePerTokenMs'], 'number', 'worker: its time per token');
    t.ok(
      Math.abs((master['timePerTokenMs'] as number) - (worker['timePerTokenMs'] as number)) <= 0.011,
      'the master: the one the worker reported (the trailer has 3 decimals, each line 2)',
    );
  });

  t.test('no log line holds a secret', async (t) => {
    const out = gw.output();
    t.ok(logLines(gw).length > 5, 'the processes logged (LOG_LEVEL=debug)');
    for (const secret of [CLIENT_SECRET, CLIENT_KEY, UPSTREAM_SECRET, QUERY_SECRET])
      t.notOk(out.includes(secret), `${secret.slice(0, 8)}… is not in the output`);
  });

  t.test('upstream errors are counted by kind', async (t) => {
    const failures: Array<[string, string]> = [
      ['v1', '[mock tokens=5 fault=reset after=2]'],
      ['v1', '[mock tokens=5 fault=status status=500]'],
      ['v1', '[mock tokens=5 fault=malformed after=1]'],
      ['quick', '[mock tokens=5 first-byte-ms=60000]'],
      ['dead', '[mock tokens=5]'],
    ];
    for (const [version, directive] of failures) {
      const s = await postStream(url(version), chatBody(directive));
      await s.done;
    }
    const m = await scrapeUntil(gw, (m) => m.sum(METRIC.streamsActive) === 0, 'every stream ended');
    const count = (version: string, kind: string): number => m.sum(METRIC.upstreamErrorsTotal, { version, kind });
    t.same(
      UPSTREAM_ERROR_KINDS.map((k) => [k, count('v1', k)]),
      [
        ['connect', 0],
        ['timeout', 0],
        ['reset', 1],
        ['status', 1],
        ['protocol', 1],
      ],
    );
    t.equal(count('quick', 'timeout'), 1);
    t.equal(count('dead', 'connect'), 1);
    t.equal(m.sum(METRIC.upstreamErrorsTotal), 5, 'nothing else counted');
    t.equal((await scrape(gw)).status, 200);
  });
});
