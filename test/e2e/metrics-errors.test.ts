import t from 'tap';
import { once } from 'node:events';
import { Agent, createServer, request, type IncomingMessage } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { scrape, scrapeUntil } from '../helpers/metrics.js';
import { computeRows } from '../../scripts/cli/top-view.js';
import { waitForStatus } from '../helpers/wait.js';
import { httpRequest, json } from '../helpers/http.js';
import { WAITED_HEADER } from '../../shared/ipc.js';

// What an SRE reads must be what clients saw (an observability probe): a stream that fails after its 200 and a
// request its client gave up waiting for are errors of their version — the canary counts them so (SPEC §11) —
// in graygate_request_errors_total and in `graygate top`'s ERR%, where requests_total counts them under 200 and 0.
// A request given up on is timed too: how long it waited is the least its answer would have taken.

t.test('errors the status code does not show: a stream cut after its 200, a request given up on', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } });
  const before = await scrape(gw);
  const requests = (s: typeof before): number => s.sum('graygate_requests_total', { version: 'v1' });

  // A stream whose worker dies after its first event: the client gets 200, then a final error event.
  const { pid } = (await waitForStatus(gw, (v) => v.v1!.workers[0]?.state === 'ready', 'worker ready')).v1!.workers[0]!;
  const stream = request(`${gw.url}/sse?events=100000&ms=10&version=v1`, { agent: false }).end();
  const [res] = (await once(stream, 'response')) as [IncomingMessage];
  t.equal(res.statusCode, 200);
  let body = '';
  res.setEncoding('utf8');
  res.on('data', (chunk: string) => (body += chunk));
  await once(res, 'data');
  process.kill(pid, 'SIGKILL');
  await once(res, 'end');
  t.match(body, /worker_error/, 'the stream ended with an error event');

  // A request its client gives up on while the (new) worker holds it.
  await waitForStatus(gw, (v) => v.v1!.workers.some((w) => w.state === 'ready' && w.pid !== pid), 'worker back');
  const waiting = request(`${gw.url}/slow?ms=600000&version=v1`, { agent: false }).end();
  waiting.on('error', () => undefined);
  await waitForStatus(gw, (v) => v.v1!.workers.some((w) => w.inflight === 1), 'request with the worker');
  waiting.destroy();

  const after = await scrapeUntil(gw, (s) => requests(s) === requests(before) + 2, 'both requests finished');
  t.equal(after.sum('graygate_requests_total', { version: 'v1', code: '200' }), 1, 'the stream: 200');
  t.equal(after.sum('graygate_requests_total', { version: 'v1', code: '0' }), 1, 'the request given up on: 0');
  t.equal(after.sum('graygate_request_errors_total', { version: 'v1', kind: 'stream_failed' }), 1);
  t.equal(after.sum('graygate_request_errors_total', { version: 'v1', kind: 'abandoned' }), 1);
  t.equal(after.sum('graygate_request_errors_total', { version: 'v1', kind: '5xx' }), 0);
  t.equal(
    after.sum('graygate_request_duration_seconds_count', { version: 'v1' }) -
      before.sum('graygate_request_duration_seconds_count', { version: 'v1' }),
    2,
    'both timed: the stream to its headers, the request given up on to its client leaving',
  );
  const [row] = computeRows({ atMs: 0, samples: before.samples }, { atMs: 1000, samples: after.samples });
  t.equal(row?.errorRate, 1, 'top: both are errors');
});

t.test("the master tells the worker how long it held the request, in place of any client's value", async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } });
  const res = await httpRequest(`${gw.url}/echo`, { headers: { [WAITED_HEADER]: '86400000' } });
  const waited = json<{ headers: Record<string, string> }>(res).headers[WAITED_HEADER];
  t.match(waited, /^\d+\.\d\d$/, `${waited} ms`);
  t.not(waited, '86400000');
});

// Two ways an upstream's own `response.failed` passed for a success. The master reads the worker in pieces (64 KiB at
// most) and looked for the error event in the last two and their seam: one that echoes a long answer (OpenAI's echoes
// the response so far) was missed, in graygate_request_errors_total and for the canary (a probe); on
// limits.directStreams the worker reported it done, whatever its size. And the worker reads an event's type from its
// JSON, wherever it is, where the framed hop's master looked only at the event's first bytes (`event:
// response.failed` or `data: {"type":"response.failed"`): one with no event line and `type` last, as openai-python's
// types serialise (response, sequence_number, type), passed for a success there.
const longFailed = {
  type: 'response.failed',
  sequence_number: 1,
  response: { status: 'failed', output: [{ type: 'message', content: [{ text: 'x'.repeat(150_000) }] }] },
};
const FAILED_STREAMS = [
  {
    what: 'longer than a read',
    events: [
      `event: response.output_text.delta\ndata: ${JSON.stringify({ type: 'response.output_text.delta', sequence_number: 0, delta: 'hi' })}\n\n`,
      `event: response.failed\ndata: ${JSON.stringify(longFailed)}\n\n`,
    ],
    seen: /event: response\.failed\n/,
  },
  {
    what: 'with no event line, its type last,',
    events: [
      `data: ${JSON.stringify({ delta: 'hi', sequence_number: 0, type: 'response.output_text.delta' })}\n\n`,
      `data: ${JSON.stringify({ response: { status: 'failed' }, sequence_number: 1, type: 'response.failed' })}\n\n`,
    ],
    seen: /"type":"response\.failed"/,
  },
];

// One gateway a mode, its upstream answering each request with the stream its model names (FAILED_STREAMS' index).
for (const directStreams of [false, true]) {
  const mode = directStreams ? ' (limits.directStreams)' : '';
  t.test(`an upstream's response.failed is a failed stream${mode}`, async (t) => {
    const upstream = createServer((req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (chunk: string) => (body += chunk));
      req.on('end', () => {
        const { events } = FAILED_STREAMS[Number((JSON.parse(body) as { model: string }).model)]!;
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(events[0]);
        res.end(events[1]);
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    t.teardown(() => new Promise((resolve) => upstream.close(resolve)));
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
    const gw = await startGateway(t, {
      versions: { v1: { weight: 1, upstream: { format: 'openai', url } } },
      ...(directStreams ? { limits: { directStreams: true } } : {}),
    });
    // Kept alive: a connection that closes after its answer is never offered to the worker.
    const agent = new Agent({ keepAlive: true });
    t.teardown(() => agent.destroy());
    for (const [model, { what, seen }] of FAILED_STREAMS.entries()) {
      await t.test(what, async (t) => {
        const before = await scrape(gw);
        const requests = (s: typeof before): number => s.sum('graygate_requests_total', { version: 'v1' });
        const failures = (s: typeof before): number =>
          s.sum('graygate_request_errors_total', { version: 'v1', kind: 'stream_failed' });
        const res = await httpRequest(`${gw.url}/v1/responses`, {
          agent,
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: JSON.stringify({ model: String(model), input: 'hi', stream: true }),
        });
        t.equal(res.status, 200);
        t.match(res.body, seen, 'the client got the upstream’s event');
        const after = await scrapeUntil(gw, (s) => requests(s) === requests(before) + 1, 'the stream finished');
        t.equal(failures(after) - failures(before), 1);
      });
    }
  });
}
