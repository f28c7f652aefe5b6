import t from 'tap';
import { startGateway } from '../helpers/gateway.js';
import { startH2Upstream, TEST_CERT_PATH } from '../helpers/h2-upstream.js';
import { chatBody, postStream } from '../worker/fixtures/sse-client.js';

// The hosted APIs answer over HTTP/2 (ALPN on https, upstream.http2 on by default): the real worker, forked by the
// real master, streams a chat completion from an HTTP/2-only upstream on 127.0.0.1 (test/helpers/h2-upstream.ts),
// whose certificate that worker alone trusts, through NODE_EXTRA_CA_CERTS in its version's env.

/** An OpenAI-format chunk with `delta`. */
const chunk = (delta: Record<string, unknown>, finish: string | null = null): string =>
  `data: ${JSON.stringify({
    id: 'chatcmpl-h2',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'h2-model',
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;

t.test('a worker streams an answer from an HTTP/2 upstream', async (t) => {
  const seen: string[] = [];
  const origin = await startH2Upstream(t, (req, res) => {
    seen.push(`${req.httpVersion} ${req.method} ${req.url}`);
    req.resume();
    req.on('end', () => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.write(chunk({ role: 'assistant', content: '' }));
      res.write(chunk({ content: 'over ' }));
      res.write(chunk({ content: 'HTTP/2' }));
      res.write(chunk({}, 'stop'));
      res.end('data: [DONE]\n\n');
    });
  });
  const url = `${origin}/v1`;
  const gw = await startGateway(t, {
    versions: { v1: { weight: 1, upstream: { format: 'openai', url }, env: { NODE_EXTRA_CA_CERTS: TEST_CERT_PATH } } },
  });

  const s = await postStream(`${gw.url}/v1/chat/completions`, chatBody(''));
  t.equal(s.status, 200);
  const { isComplete } = await s.done;
  t.ok(isComplete, 'the stream ended whole');
  t.equal(s.text(), 'over HTTP/2');
  t.equal(s.data.at(-1), '[DONE]');
  t.same(seen, ['2.0 POST /v1/chat/completions'], 'asked over HTTP/2');
});
