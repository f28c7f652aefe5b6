import t from 'tap';
import { once } from 'node:events';
import { createServer, request, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { startGateway, type Teardown } from '../helpers/gateway.js';
import {
  startMockUpstream,
  mockEmbedding,
  mockText,
  countPromptTokens,
  BASE_PATHS,
  MOCK_MODEL_CREATED,
  type MockFormat,
  type MockStream,
} from '../../shared/mock-upstream/index.js';
import { postStream } from '../worker/fixtures/sse-client.js';
import { scrape, scrapeUntil, type Scrape } from '../helpers/metrics.js';
import { DEAD_PORT } from '../helpers/dead-port.js';

// Issue 12 parts 2 and 3, SPEC §12: embeddings, legacy completions, the
// Responses API and models through the real gateway with the official openai
// client: relayed for OpenAI upstreams, converted for Ollama embeddings,
// refused with unsupported_endpoint naming the format elsewhere.

const MODELS = ['mock-large', 'mock-small'];

t.test('endpoints per format', async (t) => {
  const mock = await startMockUpstream({ models: MODELS });
  t.teardown(() => mock.close());

  const versions: Record<string, Record<string, unknown>> = {};
  for (const f of ['openai', 'ollama', 'anthropic'] as MockFormat[])
    versions[f] = { weight: f === 'openai' ? 1 : 0, upstream: { format: f, url: mock.url + BASE_PATHS[f] } };
  versions['pinned'] = { weight: 0, upstream: { format: 'ollama', url: mock.url, model: 'pinned:7b' } };
  versions['pinging'] = { weight: 0, upstream: { format: 'anthropic', url: mock.url, pingIntervalMs: 20 } };
  versions['down'] = {
    weight: 0,
    upstream: { format: 'openai', url: `http://127.0.0.1:${DEAD_PORT}/v1`, timeouts: { connectMs: 2000 } },
  };
  const stored = await startStoredResponses(t);
  versions['stored'] = {
    weight: 0,
    upstream: { format: 'openai', url: `${stored.url}/v1`, apiKeyEnv: 'GG_STORED_KEY' },
    env: { GG_STORED_KEY: 'sk-stored' },
  };
  versions['failing'] = { weight: 0, upstream: { format: 'openai', url: `${await startFailingUpstream(t)}/v1` } };
  const gw = await startGateway(t, { versions, routing: { default: 'openai' } });
  const clientOf = (version: string): OpenAI =>
    new OpenAI({
      baseURL: `${gw.url}/v1`,
      apiKey: 'not-used',
      maxRetries: 0,
      defaultHeaders: { 'x-version': version },
    });
  const nextUpstream = (): Promise<MockStream> => once(mock.events, 'stream').then(([s]) => s as MockStream);
  const inputs = ['The quick brown fox', 'naïve café 🚀'];
  const expected = inputs.map((text) => mockEmbedding(text));

  for (const version of ['openai', 'ollama']) {
    t.test(`${version}: embeddings, base64 (the client's default) and float`, async (t) => {
      const client = clientOf(version);
      const upstream = nextUpstream();
      const viaBase64 = await client.embeddings.create({ model: 'embedder', input: inputs });
      t.same((await upstream).path, version === 'openai' ? '/v1/embeddings' : '/api/embed');
      t.equal(viaBase64.object, 'list');
      t.same(
        viaBase64.data.map((d) => d.index),
        [0, 1],
      );
      t.same(
        viaBase64.data.map((d) => Array.from(d.embedding)),
        expected,
        'the vectors, exactly (float32 through base64)',
      );
      t.same(viaBase64.usage, { prompt_tokens: countPromptTokens(inputs), total_tokens: countPromptTokens(inputs) });
      t.equal(viaBase64.model, 'embedder');
      const viaFloat = await client.embeddings.create({
        model: 'embedder',
        input: 'one',
        encoding_format: 'float',
        dimensions: 4,
      });
      t.same(viaFloat.data[0]!.embedding, mockEmbedding('one', 4), 'floats; dimensions passed on');
    });
  }

  t.test('ollama: embeddings of token arrays are a 400 naming input', async (t) => {
    await t.rejects(clientOf('ollama').embeddings.create({ model: 'e', input: [[1, 2, 3]] }), {
      status: 400,
      message: /^400 input: an ollama upstream embeds text/,
    });
  });

  t.test('openai: legacy completions, not streamed and streamed', async (t) => {
    const client = clientOf('openai');
    const prompt = 'Say hello [mock tokens=5]';
    const completion = await client.completions.create({ model: 'davinci-mock', prompt });
    t.equal(completion.object, 'text_completion');
    t.equal(completion.choices[0]!.text, mockText(5));
    t.equal(completion.choices[0]!.finish_reason, 'stop');
    t.same(completion.usage, {
      prompt_tokens: countPromptTokens([prompt]),
      completion_tokens: 5,
      total_tokens: countPromptTokens([prompt]) + 5,
    });
    const parts: string[] = [];
    let usage: OpenAI.CompletionUsage | undefined;
    for await (const chunk of await client.completions.create({
      model: 'davinci-mock',
      prompt,
      stream: true,
      stream_options: { include_usage: true },
    })) {
      parts.push(chunk.choices[0]?.text ?? '');
      if (chunk.usage) usage = chunk.usage;
    }
    t.equal(parts.join(''), mockText(5));
    t.equal(usage?.completion_tokens, 5, 'the usage chunk when asked');
    const raw = await postStream(`${gw.url}/v1/completions`, { model: 'm', prompt, stream: true });
    await raw.done;
    t.equal(raw.data.at(-1), '[DONE]');
    t.notOk(
      raw.data.some((d) => d.includes('"usage"')),
      'no usage chunk unless asked (graygate asks the upstream for it always)',
    );
  });

  t.test('openai: the Responses API, not streamed and streamed, events relayed as they are', async (t) => {
    const client = clientOf('openai');
    const response = await client.responses.create({ model: 'gpt-mock', input: 'Say hello [mock tokens=6]' });
    t.equal(response.object, 'response');
    t.equal(response.status, 'completed');
    t.equal(response.output_text, mockText(6));
    t.equal(response.usage?.output_tokens, 6);
    const types: string[] = [];
    const deltas: string[] = [];
    for await (const event of await client.responses.create({
      model: 'gpt-mock',
      input: 'Say hello [mock tokens=6]',
      stream: true,
    })) {
      types.push(event.type);
      if (event.type === 'response.output_text.delta') deltas.push(event.delta);
    }
    t.equal(types[0], 'response.created');
    t.equal(types.at(-1), 'response.completed');
    t.equal(deltas.join(''), mockText(6));
    const raw = await postStream(`${gw.url}/v1/responses`, { model: 'm', input: 'hi [mock tokens=2]', stream: true });
    await raw.done;
    const first = JSON.parse(raw.data[0]!) as { type: string; sequence_number: number };
    t.same([first.type, first.sequence_number], ['response.created', 0], 'events unchanged');
    t.notOk(raw.data.includes('[DONE]'), 'no [DONE] added: the Responses API sends none');
  });

  t.test("a Responses stream that fails ends in the Responses API's own error event, once", async (t) => {
    // The AI SDK validates every Responses event by its type: graygate's chat-shaped `{"error": …}` failed that
    // validation instead of reaching the application as the API's error (a client probe).
    const read = async (input: string): Promise<{ text: string; events: Array<Record<string, unknown>> }> => {
      const res = await fetch(`${gw.url}/v1/responses?version=openai`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', input, stream: true }),
      });
      const text = await res.text();
      const events = text
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => JSON.parse(line.slice(6)) as Record<string, unknown>);
      return { text, events };
    };
    const failures = (s: Scrape): number =>
      s.sum('graygate_request_errors_total', { version: 'openai', kind: 'stream_failed' });
    const requests = (s: Scrape): number => s.sum('graygate_requests_total', { version: 'openai' });
    const before = await scrape(gw);
    const cut = await read('hi [mock tokens=6 fault=malformed after=2]');
    const last = cut.events.at(-1)!;
    t.match(last, { type: 'error', code: 'upstream_protocol_error', param: null });
    t.equal(last['sequence_number'], (cut.events.at(-2)!['sequence_number'] as number) + 1, 'numbered after the last');
    t.match(cut.text, /event: error\ndata: \{"type":"error"/);
    const failed = await read('hi [mock tokens=6 fault=error status=500 after=2]');
    t.equal(failed.events.filter((e) => e['type'] === 'error').length, 1, "the upstream's error, and no second");
    t.match(failed.events.at(-1), { type: 'error', message: /mock upstream error/ });
    // Failed streams, for the canary too: graygate's error event and the upstream's (the master reads the last bytes).
    const after = await scrapeUntil(gw, (s) => requests(s) === requests(before) + 2, 'both streams counted');
    t.equal(failures(after) - failures(before), 2);
  });

  t.test('a client leaving a relayed stream closes the upstream', async (t) => {
    const upstream = nextUpstream();
    const s = await postStream(`${gw.url}/v1/responses`, {
      model: 'm',
      input: 'hi [mock tokens=50 fault=stall after=2]',
      stream: true,
    });
    const handle = await upstream;
    await s.until(() => s.data.filter((d) => d.includes('output_text.delta')).length === 2);
    const gone = once(handle, 'close');
    s.req.destroy();
    await gone;
    t.equal(handle.isComplete, false);
  });

  t.test("an OpenAI upstream's 4xx keeps its own type, code and param; a 5xx is graygate's 502", async (t) => {
    // A probe with the SDK: `context_length_exceeded` and `insufficient_quota` reached applications as
    // upstream_status, so `err.code === 'context_length_exceeded'` (truncate and retry) never matched.
    const client = clientOf('failing');
    const messages = [{ role: 'user' as const, content: 'a long history' }];
    for (const stream of [false, true])
      await t.rejects(client.chat.completions.create({ model: 'context', messages, stream }), {
        status: 400,
        code: 'context_length_exceeded',
        type: 'invalid_request_error',
        param: 'messages',
        message: /upstream answered 400: This model's maximum context length is 8192 tokens/,
      });
    await t.rejects(client.chat.completions.create({ model: 'quota', messages }), {
      status: 429,
      code: 'insufficient_quota',
      type: 'insufficient_quota',
      param: null,
    });
    await t.rejects(client.embeddings.create({ model: 'quota', input: 'x' }), {
      status: 429,
      code: 'insufficient_quota',
    });
    await t.rejects(client.chat.completions.create({ model: 'server', messages }), {
      status: 502,
      code: 'upstream_status',
      type: 'upstream_error',
    });
    // Code null, as on many of api.openai.com's 400s: its type and param (what SDK users branch on), graygate's code.
    await t.rejects(client.chat.completions.create({ model: 'no-code', messages }), {
      status: 400,
      code: 'upstream_status',
      type: 'invalid_request_error',
      param: null,
    });
  });

  t.test('openai: a stored response retrieved, streamed again, its input listed, cancelled and deleted', async (t) => {
    const client = clientOf('stored');
    const before = (await scrape(gw)).sum('graygate_tokens_total');
    const response = await client.responses.retrieve('resp_1');
    t.same([response.id, response.status], ['resp_1', 'completed']);
    const types: string[] = [];
    for await (const event of await client.responses.retrieve('resp_1', { stream: true })) types.push(event.type);
    t.same(types, ['response.created', 'response.output_text.delta', 'response.completed'], 'its events, relayed');
    const items = await client.responses.inputItems.list('resp_1', { limit: 2 });
    t.same(
      items.data.map((item) => item.id),
      ['msg_1'],
    );
    t.equal((await client.responses.cancel('resp_1')).status, 'cancelled');
    await client.responses.delete('resp_1');
    await t.rejects(client.responses.retrieve('resp_gone'), { status: 404, message: /resp_gone' not found/ });
    const raw = await fetch(`${gw.url}/v1/responses/resp_1?version=stored&include%5B%5D=x`);
    t.equal(raw.status, 200);
    t.same(
      stored.seen.map(({ method, url }) => `${method} ${url}`),
      [
        'GET /v1/responses/resp_1',
        'GET /v1/responses/resp_1?stream=true',
        'GET /v1/responses/resp_1/input_items?limit=2',
        'POST /v1/responses/resp_1/cancel',
        'DELETE /v1/responses/resp_1',
        'GET /v1/responses/resp_gone',
        'GET /v1/responses/resp_1?include%5B%5D=x',
      ],
      "the client's calls, query kept (not the routing parameter)",
    );
    t.ok(
      stored.seen.every((r) => r.authorization === 'Bearer sk-stored'),
      "each with the version's key",
    );
    t.same(
      stored.seen.filter((r) => r.contentLength !== undefined).map((r) => r.method),
      ['POST'],
      'GET and DELETE sent without a body',
    );
    t.equal((await scrape(gw)).sum('graygate_tokens_total'), before, 'a stored usage is not counted again');

    // A body on a GET (the master frames it; the worker does not read it): the upstream still gets a plain GET.
    const withBody = await new Promise<number>((resolve, reject) => {
      const req = request(`${gw.url}/v1/responses/resp_1?version=stored`, {
        method: 'GET',
        headers: { 'content-type': 'application/json', 'content-length': '13' },
      });
      req.on('response', (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end('{"smuggle":1}');
    });
    t.equal(withBody, 200);
    t.same(stored.seen.at(-1), {
      method: 'GET',
      url: '/v1/responses/resp_1',
      authorization: 'Bearer sk-stored',
      contentLength: undefined,
    });
    const put = await fetch(`${gw.url}/v1/responses/resp_1?version=stored`, { method: 'PUT' });
    t.same([put.status, put.headers.get('allow')], [405, 'GET, DELETE']);
    const cancelGet = await fetch(`${gw.url}/v1/responses/resp_1/cancel?version=stored`);
    t.same([cancelGet.status, cancelGet.headers.get('allow')], [405, 'POST']);
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['ollama', () => clientOf('ollama').responses.retrieve('resp_1')],
      ['anthropic', () => clientOf('anthropic').responses.delete('resp_1')],
    ];
    for (const [format, call] of cases) {
      await t.rejects(call(), {
        status: 400,
        code: 'unsupported_endpoint',
        message: new RegExp(`/v1/responses/resp_1 is not supported by this version's upstream format \\(${format}\\)`),
      });
    }
  });

  t.test('endpoints a format does not serve: 400 unsupported_endpoint naming the format', async (t) => {
    const cases: Array<[string, () => Promise<unknown>]> = [
      ['anthropic', () => clientOf('anthropic').embeddings.create({ model: 'e', input: 'x' })],
      ['ollama', () => clientOf('ollama').completions.create({ model: 'm', prompt: 'x' })],
      ['anthropic', () => clientOf('anthropic').completions.create({ model: 'm', prompt: 'x' })],
      ['ollama', () => clientOf('ollama').responses.create({ model: 'm', input: 'x' })],
      ['anthropic', () => clientOf('anthropic').responses.create({ model: 'm', input: 'x', stream: true })],
    ];
    for (const [format, call] of cases) {
      await t.rejects(call(), {
        status: 400,
        code: 'unsupported_endpoint',
        message: new RegExp(`upstream format \\(${format}\\)`),
      });
    }
  });

  for (const version of ['openai', 'ollama', 'anthropic']) {
    t.test(`${version}: models listed by the upstream, and retrieved`, async (t) => {
      const client = clientOf(version);
      const list = await client.models.list();
      t.same(
        list.data.map((m) => m.id),
        MODELS,
        'the real model ids',
      );
      t.ok(list.data.every((m) => m.object === 'model' && m.created === MOCK_MODEL_CREATED));
      const one = await client.models.retrieve('mock-small');
      t.same([one.id, one.object], ['mock-small', 'model']);
      await t.rejects(client.models.retrieve('no-such-model'), { status: 404, code: 'not_found' });
    });
  }

  t.test('upstream.model wins; ids with slashes and colons are retrieved', async (t) => {
    const client = clientOf('pinned');
    t.same(
      (await client.models.list()).data.map((m) => m.id),
      ['pinned:7b'],
    );
    t.equal((await client.models.retrieve('pinned:7b')).owned_by, 'graygate/pinned');
  });

  t.test("a whole answer slower than pingIntervalMs: the worker's 102s do not disturb the client", async (t) => {
    const completion = await clientOf('pinging').chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'hi [mock tokens=3 first-byte-ms=300]' }],
    });
    t.equal(completion.choices[0]!.message.content, mockText(3));
    const embedded = await clientOf('openai').embeddings.create({ model: 'e', input: 'x' });
    t.equal(embedded.data.length, 1);
  });

  t.test('an upstream that is down and nothing cached: 502 upstream_unreachable', async (t) => {
    await t.rejects(clientOf('down').models.list(), { status: 502, code: 'upstream_unreachable' });
  });
});

interface StoredCall {
  method: string;
  url: string;
  authorization: string | undefined;
  contentLength: string | undefined;
}

/** An OpenAI upstream with one stored response, resp_1 (OpenAI's shapes, abridged), recording each call. */
/** An OpenAI upstream that answers every call with the error its body's `model` names, in OpenAI's own shapes. */
async function startFailingUpstream(t: Teardown): Promise<string> {
  const errors: Record<string, [number, Record<string, unknown>]> = {
    context: [
      400,
      {
        message: "This model's maximum context length is 8192 tokens. However, your messages resulted in 9001 tokens.",
        type: 'invalid_request_error',
        param: 'messages',
        code: 'context_length_exceeded',
      },
    ],
    quota: [
      429,
      {
        message: 'You exceeded your current quota.',
        type: 'insufficient_quota',
        param: null,
        code: 'insufficient_quota',
      },
    ],
    server: [500, { message: 'The server had an error.', type: 'server_error', param: null, code: 'server_error' }],
    'no-code': [
      400,
      { message: 'Unrecognized request argument.', type: 'invalid_request_error', param: null, code: null },
    ],
  };
  const server = createServer((req, res) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const model = (JSON.parse(Buffer.concat(parts).toString('utf8')) as { model: string }).model;
      const [status, error] = errors[model] ?? [404, { message: 'no such case', type: 'x', param: null, code: null }];
      res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify({ error }));
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

async function startStoredResponses(t: Teardown): Promise<{ url: string; seen: StoredCall[] }> {
  const seen: StoredCall[] = [];
  const response = (status: string): Record<string, unknown> => ({
    id: 'resp_1',
    object: 'response',
    created_at: 1,
    status,
    model: 'gpt-stored',
    output: [],
    usage: { input_tokens: 3, output_tokens: 5, total_tokens: 8 },
  });
  const json = (res: ServerResponse, status: number, body: unknown): void => {
    res.writeHead(status, { 'content-type': 'application/json' }).end(JSON.stringify(body));
  };
  const server = createServer((req, res) => {
    const url = req.url!;
    const { authorization, 'content-length': contentLength } = req.headers;
    seen.push({ method: req.method!, url, authorization, contentLength });
    const path = url.split('?', 1)[0];
    if (path === '/v1/responses/resp_1' && url.endsWith('stream=true')) {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const events = [
        { type: 'response.created', sequence_number: 0, response: response('in_progress') },
        { type: 'response.output_text.delta', sequence_number: 1, item_id: 'msg_2', output_index: 0, delta: 'hi' },
        { type: 'response.completed', sequence_number: 2, response: response('completed') },
      ];
      res.end(events.map((e) => `event: ${e.type}\ndata: ${JSON.stringify(e)}\n\n`).join(''));
    } else if (path === '/v1/responses/resp_1' && req.method === 'DELETE')
      json(res, 200, { id: 'resp_1', object: 'response.deleted', deleted: true });
    else if (path === '/v1/responses/resp_1') json(res, 200, response('completed'));
    else if (path === '/v1/responses/resp_1/input_items') {
      const item = { id: 'msg_1', type: 'message', role: 'user', content: [{ type: 'input_text', text: 'hi' }] };
      json(res, 200, { object: 'list', data: [item], first_id: 'msg_1', last_id: 'msg_1', has_more: false });
    } else if (path === '/v1/responses/resp_1/cancel') json(res, 200, response('cancelled'));
    else {
      const message = `Response with id '${path!.split('/').at(-1)}' not found.`;
      json(res, 404, { error: { message, type: 'invalid_request_error', param: null, code: null } });
    }
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => new Promise((resolve) => server.close(resolve)));
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, seen };
}
