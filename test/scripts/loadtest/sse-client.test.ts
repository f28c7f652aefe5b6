import t from 'tap';
import { startMockUpstream } from '../../../shared/mock-upstream/index.js';
import { chatBody, responsesBody } from '../../../scripts/loadtest/chat-request.js';
import { readStream } from '../../../scripts/loadtest/sse-client.js';

// The load tests' stream client reads both dialects `compare --sse` sends (a chat completion's chunks and a Responses
// API stream's events) from the real mock upstream: every token counted, the end seen, an error event an error.

t.test('a chat stream and a Responses stream: each token counted, its end seen', async (t) => {
  const mock = await startMockUpstream();
  t.teardown(() => mock.close());
  for (const [path, body] of [
    ['/chat/completions', chatBody],
    ['/responses', responsesBody],
  ] as const) {
    let tokens = 0;
    const r = await readStream(`${mock.baseUrl}${path}`, {
      body: body({ tokens: 7, intervalMs: 0 }),
      agent: false,
      timeoutMs: 30_000,
      onToken: () => tokens++,
    });
    t.equal(r.error, null, `${path}: no error`);
    t.equal(r.status, 200);
    t.equal(r.tokens, 7, `${path}: every token`);
    t.equal(tokens, 7, `${path}: each one told as it came`);
    t.ok(r.isDone, `${path}: its end seen`);
    t.type(r.firstTokenMs, 'number');
  }
});

t.test("a Responses stream's error event is an error, not a stream that merely lacks its end", async (t) => {
  const mock = await startMockUpstream();
  t.teardown(() => mock.close());
  const body = JSON.stringify({
    model: 'graygate-mock',
    stream: true,
    input: '[mock tokens=3 fault=error after=1] hi',
  });
  const r = await readStream(`${mock.baseUrl}/responses`, { body, agent: false, timeoutMs: 30_000 });
  t.match(r.error, /^error event: /);
  t.equal(r.isDone, false);
});
