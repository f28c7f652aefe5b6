import t from 'tap';
import { once } from 'node:events';
import OpenAI from 'openai';
import { startMockUpstream, mockText, type MockStream } from '../../shared/mock-upstream/index.js';
import { EventDecoder } from '../../worker/sse/event-decoder.js';
import { LineDecoder } from '../../worker/sse/line-decoder.js';

// The mock upstream on its own (SPEC §8): non-streaming shapes, header controls, faults, close observation.

t.test('mock upstream', async (t) => {
  const mock = await startMockUpstream({ format: 'ollama' });
  t.teardown(() => mock.close());
  t.equal(mock.baseUrl, mock.url, 'ollama base URL is the origin');
  const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
    fetch(mock.url + path, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...headers },
      body: JSON.stringify(body),
    });
  const messages = [{ role: 'user', content: 'one two' }];

  t.test('non-streaming answers in each shape', async (t) => {
    const o = (await (
      await post('/v1/chat/completions', { model: 'a', messages }, { 'x-mock-tokens': '3' })
    ).json()) as { choices: Array<{ message: { content: string } }>; usage: { prompt_tokens: number } };
    t.equal(o.choices[0]!.message.content, mockText(3));
    t.equal(o.usage.prompt_tokens, 2);
    const l = (await (
      await post('/api/chat', { model: 'b', messages, stream: false }, { 'x-mock-tokens': '4' })
    ).json()) as { message: { content: string }; eval_count: number; done_reason: string };
    t.same([l.message.content, l.eval_count, l.done_reason], [mockText(4), 4, 'stop']);
    const a = (await (
      await post('/v1/messages', { model: 'c', max_tokens: 2, messages }, { 'x-mock-tokens': '5' })
    ).json()) as { content: Array<{ text: string }>; stop_reason: string };
    t.same([a.content[0]!.text, a.stop_reason], [mockText(2), 'max_tokens']);
  });

  t.test('ollama streams NDJSON by default; newline and token-size controls', async (t) => {
    const res = await post(
      '/api/chat',
      { model: 'b', messages },
      { 'x-mock-tokens': '3', 'x-mock-newline': 'crlf', 'x-mock-token-size': '8' },
    );
    t.equal(res.headers.get('content-type'), 'application/x-ndjson');
    const lines = (await res.text()).split('\r\n').filter((l) => l !== '');
    t.equal(lines.length, 4);
    t.equal(
      lines
        .slice(0, 3)
        .map((l) => (JSON.parse(l) as { message: { content: string } }).message.content)
        .join(''),
      mockText(3, 8),
    );
  });

  t.test('framing=quirks: every SSE framing variant at once, same events as plain framing', async (t) => {
    const sse = (text: string): Array<[string, unknown]> => {
      const events: Array<[string, unknown]> = [];
      // Each answer has its own id and timestamp.
      const normalise = (data: string): unknown =>
        data === '[DONE]'
          ? data
          : JSON.parse(data.replace(/mock-\d+/g, 'mock-N').replace(/"created":\s*\d+/g, '"created":0'));
      const decoder = new EventDecoder({
        onEvent: (type, data) => events.push([type, normalise(data)]),
        maxEventBytes: 1 << 20,
      });
      const lines = new LineDecoder({ onLine: (line) => decoder.line(line), maxLineBytes: 1 << 20 });
      lines.push(Buffer.from(text));
      lines.end();
      decoder.end();
      return events;
    };
    for (const [path, body] of [
      ['/v1/chat/completions', { model: 'a', messages, stream: true }],
      ['/v1/messages', { model: 'c', messages, stream: true }],
    ] as const) {
      const plain = await (await post(path, body, { 'x-mock-tokens': '4' })).text();
      const quirky = await (await post(path, body, { 'x-mock-tokens': '4', 'x-mock-framing': 'quirks' })).text();
      for (const quirk of [
        '\r\n',
        /[^\n]\r[^\n]/,
        '\n:',
        /\nevent:[^ ]/,
        '\nid: ',
        '\nretry: ',
        /\ndata:[^ ]/,
        /\ndata: [^\r\n]*(\r\n|\r|\n)data:/,
      ]) {
        t.match(quirky, quirk, `${path}: ${String(quirk)}`);
      }
      t.same(sse(quirky), sse(plain), `${path}: decodes to the same events`);
    }
  });

  t.test('framing=quirks: NDJSON with CRLF, blank lines and no final newline', async (t) => {
    const text = await (
      await post('/api/chat', { model: 'b', messages }, { 'x-mock-tokens': '3', 'x-mock-framing': 'quirks' })
    ).text();
    t.match(text, /}\r\n\r\n/);
    t.notMatch(text, /[^\r]\n/, 'CRLF only');
    t.ok(text.endsWith('}'), 'the last document has no newline');
    const docs = text
      .split(/\r\n/)
      .filter((l) => l.trim() !== '')
      .map((l) => JSON.parse(l) as { message: { content: string } });
    t.equal(docs.map((d) => d.message.content).join(''), mockText(3));
  });

  t.test('error status in the format shape', async (t) => {
    const res = await post('/v1/messages', { messages }, { 'x-mock-fault': 'status', 'x-mock-status': '429' });
    t.equal(res.status, 429);
    t.match(await res.json(), { type: 'error', error: { type: 'rate_limit_error' } });
  });

  t.test('a client hanging up is observed', async (t) => {
    const started = once(mock.events, 'stream');
    const res = await post('/v1/chat/completions', { messages, stream: true }, { 'x-mock-fault': 'stall' });
    const [stream] = (await started) as [MockStream];
    const closed = once(stream, 'close');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    await reader.read();
    await reader.cancel();
    await closed;
    t.equal(stream.isComplete, false);
    t.ok(mock.stats.aborted >= 1);
  });
});

t.test(
  'server defaults: failEvery refuses every Nth answer with a 500 in the format shape; firstByteMs delays the first token',
  async (t) => {
    const mock = await startMockUpstream({ failEvery: 4, defaults: { firstByteMs: 150 } });
    t.teardown(() => mock.close());
    const post = (path: string, body: unknown, headers: Record<string, string> = {}): Promise<Response> =>
      fetch(mock.url + path, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...headers },
        body: JSON.stringify(body),
      });
    const messages = [{ role: 'user', content: '[mock tokens=2] hi' }];
    const statuses: number[] = [];
    for (let i = 0; i < 8; i++) {
      // Counted across formats and even when the request asks for a fault of its own.
      const res =
        i % 2 === 0
          ? await post('/v1/chat/completions', { messages }, { 'x-mock-first-byte-ms': '0' })
          : await post('/v1/messages', { max_tokens: 5, messages });
      statuses.push(res.status);
      if (i === 3) t.match(await res.json(), { type: 'error', error: { type: 'api_error' } }, 'anthropic error body');
      else if (i === 7) t.match(await res.json(), { type: 'error' });
      else await res.arrayBuffer();
    }
    t.same(statuses, [200, 200, 200, 500, 200, 200, 200, 500], 'the 4th and 8th answers, deterministic');
    const streamed = once(mock.events, 'stream');
    const started = performance.now();
    const res = await post('/v1/chat/completions', { messages, stream: true });
    t.equal(res.status, 200);
    const [stream] = (await streamed) as [MockStream];
    t.equal(stream.controls.firstByteMs, 150, 'the answer has the server default (no header, no directive)');
    const reader = (res.body as ReadableStream<Uint8Array>).getReader();
    const decoder = new TextDecoder();
    let text = '';
    while (!text.includes('"content":"')) {
      const { value, done } = await reader.read();
      if (done) break;
      text += decoder.decode(value);
    }
    // A lower bound only, which load cannot break (it only makes things later): the default is applied as a delay,
    // not just recorded. 140, not 150: the mock's timer counts from the loop's cached time.
    t.ok(performance.now() - started >= 140, 'the server default delays the first token');
    await reader.cancel();
    const more: number[] = [];
    for (let i = 0; i < 3; i++) {
      const quick = await post('/v1/chat/completions', { messages }, { 'x-mock-first-byte-ms': '0' });
      more.push(quick.status);
      await quick.arrayBuffer();
    }
    t.same(more, [200, 200, 500], 'streams count too: the 12th answer fails');
  },
);

t.test('the Responses API: function calls and JSON mode in its own shapes, streamed and not', async (t) => {
  // What the Responses API's clients (the openai SDK's responses.create, the AI SDK's default OpenAI provider) send
  // and read: flat function tools, `tool_choice: {type: "function", name}`, `text.format` JSON mode.
  const mock = await startMockUpstream({ format: 'openai' });
  t.teardown(() => mock.close());
  const client = new OpenAI({ baseURL: mock.baseUrl, apiKey: 'k', maxRetries: 0 });
  const tools = [
    {
      type: 'function' as const,
      name: 'get_weather',
      strict: true,
      parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
    },
    { type: 'function' as const, name: 'get_time', strict: false, parameters: { type: 'object', properties: {} } },
  ];
  const args = '{"city":"Paris"}';
  const asked = await client.responses.create({
    model: 'm',
    input: `Weather and time? [mock tools=get_weather,get_time args=${args}]`,
    tools,
  });
  t.same(
    asked.output.map((item) => (item.type === 'function_call' ? [item.name, item.arguments, item.status] : item.type)),
    [
      ['get_weather', args, 'completed'],
      ['get_time', args, 'completed'],
    ],
    'each call asked for is an output item of its own',
  );
  const callIds = asked.output.map((item) => (item.type === 'function_call' ? item.call_id : ''));
  t.equal(new Set(callIds).size, 2, 'each call has a call_id of its own');
  t.equal(asked.output_text, '', 'no text beside the calls');

  const forced = await client.responses.create({
    model: 'm',
    input: 'What time is it?',
    tools,
    tool_choice: { type: 'function', name: 'get_weather' },
  });
  t.match(
    forced.output,
    [{ type: 'function_call', name: 'get_weather', arguments: JSON.stringify({ city: mockText(3) }) }],
    'a forced function is called, its arguments made from its schema',
  );

  const stream = await client.responses.create({
    model: 'm',
    input: `Weather? [mock tools=get_weather args=${args}]`,
    tools,
    stream: true,
  });
  const types: string[] = [];
  let streamedArgs = '';
  let completed: OpenAI.Responses.Response | undefined;
  for await (const event of stream) {
    types.push(event.type);
    if (event.type === 'response.function_call_arguments.delta') streamedArgs += event.delta;
    if (event.type === 'response.completed') completed = event.response;
  }
  t.same(
    [...new Set(types)],
    [
      'response.created',
      'response.in_progress',
      'response.output_item.added',
      'response.function_call_arguments.delta',
      'response.function_call_arguments.done',
      'response.output_item.done',
      'response.completed',
    ],
  );
  t.equal(streamedArgs, args, 'the argument pieces join to the arguments');
  t.match(completed?.output, [{ type: 'function_call', name: 'get_weather', arguments: args }]);

  const schema = {
    type: 'object',
    properties: { name: { type: 'string' }, age: { type: 'integer' } },
    required: ['name', 'age'],
    additionalProperties: false,
  };
  const structured = await client.responses.create({
    model: 'm',
    input: 'A person',
    text: { format: { type: 'json_schema', name: 'person', schema, strict: true } },
  });
  t.same(JSON.parse(structured.output_text), { name: mockText(3), age: 42 }, 'json_schema: a value of the schema');
  const object = await client.responses.create({
    model: 'm',
    input: 'Any JSON [mock tokens=2]',
    text: { format: { type: 'json_object' } },
  });
  t.same(JSON.parse(object.output_text), { answer: mockText(2) }, 'json_object: a JSON object');
});
