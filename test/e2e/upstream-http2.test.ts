import t from 'tap';
import { startGateway } from '../helpers/gateway.js';
import { startH2Upstream, TEST_CERT_PATH } from '../helpers/h2-upstream.js';
import { chatBody, postStream } from '../worker/fixtures/sse-client.js';

// The hosted APIs answer over HTTP/2 and HTTP/1.1 (ALPN on https): with upstream.http2 true the real worker, forked
// by the real master, streams a chat completion over HTTP/2 from an upstream on 127.0.0.1
// (test/helpers/h2-upstream.ts), whose certificate that worker alone trusts, through NODE_EXTRA_CA_CERTS in its
// version's env; by default it asks over HTTP/1.1 (client.ts: what undici 7's HTTP/2 client does not do).

/** An OpenAI-format chunk with `delta`. */
const chunk = (delta: Record<string, unknown>, finish: string | null = null): string =>
  `data: ${JSON.stringify({
    id: 'chatcmpl-h2',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'h2-model',
    choices: [{ index: 0, delta, finish_reason: finish }],
  })}\n\n`;

t.test('a worker streams an answer over HTTP/2 with upstream.http2, over HTTP/1.1 by default', async (t) => {
  const seen: string[] = [];
  const origin = await startH2Upstream(
    t,
    (req, res) => {
      seen.push(`${req.httpVersion} ${req.method} ${req.url}`);
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.write(chunk({ role: 'assistant', content: '' }));
        res.write(chunk({ content: 'over ' }));
        res.write(chunk({ content: `HTTP/${req.httpVersion}` }));
        res.write(chunk({}, 'stop'));
        res.end('data: [DONE]\n\n');
      });
    },
    true,
  );
  const url = `${origin}/v1`;
  const env = { NODE_EXTRA_CA_CERTS: TEST_CERT_PATH };
  const gw = await startGateway(t, {
    versions: {
      h2: { weight: 1, upstream: { format: 'openai', url, http2: true }, env },
      plain: { weight: 0, upstream: { format: 'openai', url }, env },
    },
    routing: { default: 'h2' },
  });

  for (const [version, text] of [
    ['h2', 'over HTTP/2.0'],
    ['plain', 'over HTTP/1.1'],
  ] as const) {
    const s = await postStream(`${gw.url}/v1/chat/completions?version=${version}`, chatBody(''));
    t.equal(s.status, 200);
    const { isComplete } = await s.done;
    t.ok(isComplete, 'the stream ended whole');
    t.equal(s.text(), text, version);
    t.equal(s.data.at(-1), '[DONE]');
  }
  t.same(seen, ['2.0 POST /v1/chat/completions', '1.1 POST /v1/chat/completions']);
});
