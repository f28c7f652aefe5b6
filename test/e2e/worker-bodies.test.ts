import t from 'tap';
import OpenAI from 'openai';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { startMockUpstream, mockText, countPromptTokens, BASE_PATHS } from '../../shared/mock-upstream/index.js';

// Issue 9 part 5, through the real master and worker: hostile bodies are 400s
// naming the limit they break (never a 500 from a stack overflow), and a large
// legitimate body still reaches the upstream whole. What they cost the worker's
// event loop is measured by test/worker/fixtures/bench/bodies.ts.

interface ErrorBody {
  error: { code: string; message: string; type: string };
}

t.test('request bodies on the worker', async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const gw = await startGateway(t, {
    versions: {
      openai: { weight: 1, upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } },
      anthropic: { weight: 0, upstream: { format: 'anthropic', url: mock.url } },
    },
    routing: { default: 'openai' },
  });
  const post = (body: string, version = 'openai') =>
    httpRequest(`${gw.url}/v1/chat/completions?version=${version}`, {
      method: 'POST',
      body,
      headers: { 'content-type': 'application/json' },
    });
  const prefix = '{"model":"m","messages":[{"role":"user","content":"hi"}],';

  t.test('JSON nested 100 000 deep: 400 naming the depth limit', async (t) => {
    const res = await post(`${prefix}"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`);
    t.equal(res.status, 400);
    const { error } = json<ErrorBody>(res);
    t.equal(error.code, 'invalid_request');
    t.equal(error.type, 'invalid_request_error');
    t.match(error.message, /nested more than 64 levels deep \(limit 64\)/);
  });

  t.test('300 000 keys: 400 naming the member limit', async (t) => {
    const keys = Array.from({ length: 300_000 }, (_, i) => `"key_${i}":1`).join(',');
    const res = await post(`${prefix}${keys}}`);
    t.equal(res.status, 400);
    t.match(json<ErrorBody>(res).error.message, /more than 10000 members \(limit 10000\)/);
  });

  t.test('over 50 000 values spread over small objects: 400 naming the total limit', async (t) => {
    // 5 001 arrays of 9 items: no container over 10 000, about 50 016 members and items in all.
    const items = Array.from({ length: 5001 }, () => '[1,1,1,1,1,1,1,1,1]').join(',');
    const res = await post(`${prefix}"x":[${items}]}`);
    t.equal(res.status, 400);
    t.match(json<ErrorBody>(res).error.message, /more than 50000 members and items in total \(limit 50000\)/);
  });

  for (const version of ['openai', 'anthropic']) {
    t.test(`${version}: an 8 MB body of long messages reaches the upstream whole`, async (t) => {
      const client = new OpenAI({
        baseURL: `${gw.url}/v1`,
        apiKey: 'not-used',
        maxRetries: 0,
        defaultHeaders: { 'x-version': version },
      });
      const long = 'lorem ipsum dolor sit amet, consectetur adipiscing élit; 日本語 '.repeat(30_000); // 2 MB each
      const messages = [
        { role: 'system' as const, content: long },
        { role: 'user' as const, content: long },
        { role: 'assistant' as const, content: long },
        { role: 'user' as const, content: `${long} [mock tokens=6]` },
      ];
      t.ok(Buffer.byteLength(JSON.stringify({ messages })) > 8_000_000, 'over 8 MB');
      const completion = await client.chat.completions.create({ model: 'm', messages });
      t.equal(completion.choices[0]?.message.content, mockText(6));
      // The mock counts the words of every message it received: all of them arrived, unchanged.
      t.equal(completion.usage?.prompt_tokens, countPromptTokens(messages.map((m) => m.content)));
    });
  }
});
