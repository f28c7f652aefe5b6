import t from 'tap';
import { once } from 'node:events';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { startMockUpstream, mockText, BASE_PATHS, type MockStream } from '../../shared/mock-upstream/index.js';
import { postStream, openPost, chatBody } from '../worker/fixtures/sse-client.js';
import { DEAD_PORT } from '../helpers/dead-port.js';

// Issue 3 parts 5, 7, 8: cancellation, timeouts and upstream failures, through
// the real master and worker. Every wait is on an event (a chunk arrived, a
// connection closed); the only timers are the gateway's own deadlines.

interface ErrorBody {
  error: { message: string; type: string; code: string };
}

function lastError(data: string[]): ErrorBody['error'] {
  return (JSON.parse(data.at(-1)!) as ErrorBody).error;
}

t.test('faults', async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());

  const openai = { format: 'openai', url: mock.url + BASE_PATHS.openai };
  const gw = await startGateway(t, {
    versions: {
      v1: { weight: 1, upstream: openai },
      // Short deadlines: idle 300 ms, first byte 300 ms (for an upstream that never sends its first byte).
      quick: { weight: 0, upstream: { ...openai, timeouts: { idleMs: 300, firstByteMs: 300 } } },
      // An idle deadline for a stream that stalls after its first tokens: the tokens before the stall must beat both
      // deadlines on a loaded box (a review saw 300 ms missed there: a 504 before the first byte), so 1 s and 30 s.
      stalls: { weight: 0, upstream: { ...openai, timeouts: { idleMs: 1000, firstByteMs: 30_000 } } },
      ollama: { weight: 0, upstream: { format: 'ollama', url: mock.url, maxEventBytes: 65536 } },
      small: { weight: 0, upstream: { ...openai, maxEventBytes: 65536 } },
      pinger: { weight: 0, upstream: { ...openai, pingIntervalMs: 20 } },
      dead: {
        weight: 0,
        upstream: { format: 'openai', url: `http://127.0.0.1:${DEAD_PORT}/v1`, timeouts: { connectMs: 2000 } },
      },
    },
  });
  const url = (version: string): string => `${gw.url}/v1/chat/completions?version=${version}`;
  const nextMockStream = (): Promise<MockStream> => once(mock.events, 'stream').then(([s]) => s as MockStream);
  const contentCount = (data: string[]): number =>
    data.filter((d) => d.includes('"content":"') && !d.includes('"content":""')).length;

  t.test('client disconnect mid-stream closes the upstream connection', async (t) => {
    const upstream = nextMockStream();
    const s = await postStream(url('v1'), chatBody('[mock tokens=50 fault=stall after=3]'));
    const handle = await upstream;
    await s.until(() => contentCount(s.data) === 3);
    const closedUpstream = once(handle, 'close');
    s.req.destroy();
    await closedUpstream;
    t.equal(handle.isComplete, false, 'the mock saw its connection close before the answer was complete');
    t.equal(handle.isClosed, true);
  });

  t.test('client disconnect before the first byte closes the upstream connection', async (t) => {
    const upstream = nextMockStream();
    // The status is committed late, so no response arrives while the upstream is silent: hang up on the request.
    const { req, client } = openPost(url('v1'), chatBody('[mock first-byte-ms=60000]'));
    client.catch(() => undefined);
    const handle = await upstream;
    const closedUpstream = once(handle, 'close');
    req.destroy();
    await closedUpstream;
    t.equal(handle.isComplete, false, 'the upstream request was aborted');
  });

  t.test('idle timeout on a stalled upstream: error event, stream ends, upstream closed', async (t) => {
    const upstream = nextMockStream();
    const s = await postStream(url('stalls'), chatBody('[mock tokens=10 fault=stall after=2]'));
    const handle = await upstream;
    const upstreamClosed = once(handle, 'close');
    const { isComplete } = await s.done;
    t.ok(isComplete, 'the stream ended normally');
    t.equal(s.status, 200);
    t.equal(s.text(), mockText(2));
    t.equal(lastError(s.data).code, 'upstream_timeout');
    t.match(lastError(s.data).message, /idle timeout, 1000 ms/);
    t.notOk(s.data.includes('[DONE]'), 'no [DONE] after an error');
    await upstreamClosed;
  });

  t.test('first-byte timeout before any event: a real 504', async (t) => {
    const res = await httpRequest(url('quick'), {
      method: 'POST',
      body: JSON.stringify(chatBody('[mock first-byte-ms=60000]')),
    });
    t.equal(res.status, 504);
    t.same(json<ErrorBody>(res).error.code, 'upstream_timeout');
    t.match(json<ErrorBody>(res).error.message, /first-byte timeout/);
  });

  t.test('reset (RST) mid-stream: error event, stream ends', async (t) => {
    const upstream = nextMockStream();
    const s = await postStream(url('v1'), chatBody('[mock tokens=50 fault=stall after=2]'));
    const handle = await upstream;
    await s.until(() => contentCount(s.data) === 2);
    handle.reset();
    const { isComplete } = await s.done;
    t.ok(isComplete);
    t.equal(s.text(), mockText(2));
    t.equal(lastError(s.data).code, 'upstream_reset');
    t.notOk(s.data.includes('[DONE]'));
  });

  t.test('connection closed mid-body (FIN): error event, stream ends', async (t) => {
    const upstream = nextMockStream();
    const s = await postStream(url('v1'), chatBody('[mock tokens=50 fault=stall after=4]'));
    const handle = await upstream;
    // Cut only once the tokens reached the client: data racing the close may be dropped by the upstream client.
    await s.until(() => contentCount(s.data) === 4);
    handle.cut();
    await s.done;
    t.equal(s.text(), mockText(4));
    t.equal(lastError(s.data).code, 'upstream_reset');
    t.notOk(s.data.includes('[DONE]'));
  });

  t.test('malformed event mid-stream is an upstream_protocol_error, never dropped', async (t) => {
    const s = await postStream(url('v1'), chatBody('[mock tokens=10 fault=malformed after=3]'));
    await s.done;
    t.equal(s.text(), mockText(3));
    t.equal(lastError(s.data).code, 'upstream_protocol_error');
    t.equal(lastError(s.data).type, 'upstream_error');
  });

  t.test('over-long line mid-stream → error event; before any event → 502', async (t) => {
    const s = await postStream(url('small'), chatBody('[mock tokens=10 fault=long-line line-bytes=200000 after=2]'));
    await s.done;
    t.equal(s.text(), mockText(2));
    t.equal(lastError(s.data).code, 'upstream_protocol_error');
    t.match(lastError(s.data).message, /maxEventBytes/);
    const res = await httpRequest(url('ollama'), {
      method: 'POST',
      body: JSON.stringify(chatBody('[mock fault=long-line line-bytes=200000 after=0]')),
    });
    t.equal(res.status, 502);
    t.equal(json<ErrorBody>(res).error.code, 'upstream_protocol_error');
  });

  t.test('upstream error statuses: 4xx/429 passed through, 5xx → 502', async (t) => {
    // An OpenAI upstream's 4xx keeps its own type (the mock's code is null, as api.openai.com's often is: the code
    // is graygate's then); a 5xx and Ollama's shape (no type) are graygate's.
    for (const [version, status, expected, type] of [
      ['v1', 429, 429, 'rate_limit_exceeded'],
      ['v1', 400, 400, 'invalid_request_error'],
      ['v1', 500, 502, 'upstream_error'],
      ['ollama', 404, 404, 'upstream_error'],
    ] as const) {
      const res = await httpRequest(url(version), {
        method: 'POST',
        body: JSON.stringify(chatBody(`[mock fault=status status=${status}]`)),
      });
      t.equal(res.status, expected, `${version} ${status}`);
      const { error } = json<ErrorBody>(res);
      t.equal(error.code, 'upstream_status');
      t.equal(error.type, type);
      t.match(error.message, new RegExp(`mock upstream error ${status}`), 'the upstream message is kept');
    }
  });

  t.test('unreachable upstream → 502 upstream_unreachable', async (t) => {
    const res = await httpRequest(url('dead'), { method: 'POST', body: JSON.stringify(chatBody('')) });
    t.equal(res.status, 502);
    t.equal(json<ErrorBody>(res).error.code, 'upstream_unreachable');
  });

  t.test('a silent upstream gets `: ping` comments while the stream stays open', async (t) => {
    // The upstream stalls after one token: wait for the ping itself, no clock involved.
    const upstream = nextMockStream();
    const s = await postStream(url('pinger'), chatBody('[mock tokens=5 fault=stall after=1]'));
    const handle = await upstream;
    // 20 ms pings: on a loaded box one may come before the token does, so wait for both.
    await s.until(() => s.comments.length >= 1 && s.text() === mockText(1));
    t.equal(s.status, 200);
    t.ok(
      s.comments.every((c) => c === ': ping'),
      'only `: ping` comments',
    );
    t.equal(s.text(), mockText(1), 'the token before the silence was delivered');
    const closedUpstream = once(handle, 'close');
    s.req.destroy();
    await closedUpstream;
  });
});
