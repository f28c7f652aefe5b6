import t from 'tap';
import { once } from 'node:events';
import OpenAI from 'openai';
import { FORMATS, startFormatGateway } from '../helpers/format-gateway.js';
import { startGateway } from '../helpers/gateway.js';
import {
  mockText,
  sampleFromSchema,
  CHAT_PATHS,
  BASE_PATHS,
  startMockUpstream,
  type MockFormat,
  type MockStream,
} from '../../shared/mock-upstream/index.js';
import { postStream } from '../worker/fixtures/sse-client.js';
import { JSON_ANSWER_TOOL } from '../../worker/upstream/anthropic-tools.js';

// Issue 12 part 1, SPEC §12: tool calling and JSON mode through the real
// gateway with the official openai client, for every upstream format: the
// mock answers in each format's own wire shape, and records what it was sent,
// so the conversion is checked both ways.

const WEATHER: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'Current weather of a city',
    parameters: { type: 'object', properties: { city: { type: 'string' } }, required: ['city'] },
  },
};
const TIME: OpenAI.ChatCompletionTool = {
  type: 'function',
  function: {
    name: 'get_time',
    parameters: { type: 'object', properties: { zone: { type: 'string' }, hours24: { type: 'boolean' } } },
  },
};
const ARGS = '{"city":"Paris"}';

const PERSON_SCHEMA = {
  type: 'object',
  properties: {
    name: { type: 'string' },
    age: { type: 'integer' },
    tags: { type: 'array', items: { type: 'string' } },
  },
  required: ['name', 'age', 'tags'],
  additionalProperties: false,
};

t.test('tool calling and JSON mode per format', async (t) => {
  const { gw, mock } = await startFormatGateway(t);
  const nextUpstream = (): Promise<MockStream> => once(mock.events, 'stream').then(([s]) => s as MockStream);

  for (const format of FORMATS) {
    const client = new OpenAI({
      baseURL: `${gw.url}/v1`,
      apiKey: 'not-used',
      maxRetries: 0,
      defaultHeaders: { 'x-version': format },
    });

    t.test(`${format}: a non-streamed tool call`, async (t) => {
      const upstream = nextUpstream();
      const completion = await client.chat.completions.create({
        model: 'm',
        messages: [{ role: 'user', content: `Weather in Paris? [mock tools=get_weather args=${ARGS}]` }],
        tools: [WEATHER],
      });
      const choice = completion.choices[0]!;
      t.equal(choice.finish_reason, 'tool_calls');
      t.equal(choice.message.content, null, 'no text: content is null, as OpenAI sends it');
      const calls = choice.message.tool_calls!;
      t.equal(calls.length, 1);
      const call = calls[0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      t.equal(call.type, 'function');
      t.equal(call.function.name, 'get_weather');
      t.same(JSON.parse(call.function.arguments), { city: 'Paris' }, 'arguments are a JSON string');
      t.match(call.id, /^\S+$/, 'an id');
      const sent = (await upstream).body;
      const tools = sent['tools'] as Array<Record<string, unknown>>;
      if (format === 'anthropic')
        t.same(tools[0], {
          name: 'get_weather',
          input_schema: WEATHER.function.parameters,
          description: 'Current weather of a city',
        });
      else t.same(tools[0], WEATHER, 'the tool reached the upstream as OpenAI sent it');
    });

    t.test(`${format}: a streamed tool call, fragments as OpenAI streams them`, async (t) => {
      const s = await postStream(`${gw.url}/v1/chat/completions?version=${format}`, {
        model: 'm',
        stream: true,
        messages: [{ role: 'user', content: 'Weather? [mock tools=get_weather]' }],
        tools: [WEATHER],
      });
      await s.done;
      t.equal(s.data.at(-1), '[DONE]');
      const chunks = s.data.slice(0, -1).map((d) => JSON.parse(d) as OpenAI.ChatCompletionChunk);
      const fragments = chunks.flatMap((c) => c.choices[0]?.delta.tool_calls ?? []);
      t.ok(fragments.length >= 2, 'a first fragment and argument fragments');
      t.same(
        Object.keys(fragments[0]!).sort(),
        ['function', 'id', 'index', 'type'],
        'the first fragment has index, id, type, function',
      );
      t.equal(fragments[0]!.function?.name, 'get_weather');
      t.equal(fragments[0]!.function?.arguments, '', 'and empty arguments');
      for (const later of fragments.slice(1))
        t.same(Object.keys(later).sort(), ['function', 'index'], 'later fragments: index and arguments only');
      const args = fragments.map((f) => f.function?.arguments ?? '').join('');
      t.same(
        JSON.parse(args),
        sampleFromSchema(WEATHER.function.parameters),
        'arguments made from the schema arrive whole',
      );
      t.equal(chunks.find((c) => c.choices[0]?.finish_reason)?.choices[0]?.finish_reason, 'tool_calls');
    });

    t.test(`${format}: parallel calls, streamed, assembled by the openai client`, async (t) => {
      const stream = client.chat.completions.stream({
        model: 'm',
        messages: [{ role: 'user', content: `Weather and time? [mock tools=get_weather,get_time args=${ARGS}]` }],
        tools: [WEATHER, TIME],
      });
      const final = await stream.finalChatCompletion();
      const calls = final.choices[0]!.message.tool_calls as OpenAI.ChatCompletionMessageFunctionToolCall[];
      t.same(
        calls.map((c) => c.function.name),
        ['get_weather', 'get_time'],
      );
      t.same(
        calls.map((c) => JSON.parse(c.function.arguments) as unknown),
        [{ city: 'Paris' }, { city: 'Paris' }],
      );
      t.equal(new Set(calls.map((c) => c.id)).size, 2, 'distinct ids');
      t.equal(final.choices[0]!.finish_reason, 'tool_calls');
    });

    t.test(`${format}: a tool called without arguments gets {}, streamed and not`, async (t) => {
      // Anthropic streams no input fragment for it; `arguments: ""` broke the openai client's runTools.
      const request = {
        model: 'm',
        messages: [{ role: 'user' as const, content: 'Time? [mock tools=get_time args={}]' }],
        tools: [TIME],
      };
      const whole = await client.chat.completions.create(request);
      const streamed = await client.chat.completions.stream(request).finalChatCompletion();
      for (const [how, completion] of [
        ['not streamed', whole],
        ['streamed', streamed],
      ] as const) {
        const call = completion.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
        t.equal(call.function.arguments, '{}', how);
      }
    });

    t.test(`${format}: a tool-result round trip`, async (t) => {
      const first = await client.chat.completions.create({
        model: 'm',
        messages: [{ role: 'user', content: `Weather and time? [mock tools=get_weather,get_time args=${ARGS}]` }],
        tools: [WEATHER, TIME],
      });
      const message = first.choices[0]!.message;
      const calls = message.tool_calls as OpenAI.ChatCompletionMessageFunctionToolCall[];
      const upstream = nextUpstream();
      const second = await client.chat.completions.create({
        model: 'm',
        tools: [WEATHER, TIME],
        messages: [
          { role: 'system', content: 'Be brief.' },
          { role: 'user', content: 'Weather and time?' },
          message,
          { role: 'tool', tool_call_id: calls[0]!.id, content: 'Sunny, 21°C' },
          { role: 'tool', tool_call_id: calls[1]!.id, content: '12:00 [mock tokens=4]' },
        ],
      });
      t.equal(second.choices[0]!.message.content, mockText(4), 'the model answers after the results');
      t.equal(second.choices[0]!.finish_reason, 'stop');
      const sent = (await upstream).body['messages'] as Array<Record<string, unknown>>;
      const args = { city: 'Paris' };
      if (format === 'openai') {
        t.same(sent.slice(2), [
          message,
          { role: 'tool', tool_call_id: calls[0]!.id, content: 'Sunny, 21°C' },
          { role: 'tool', tool_call_id: calls[1]!.id, content: '12:00 [mock tokens=4]' },
        ]);
      } else if (format === 'ollama') {
        t.same(sent.slice(2), [
          {
            role: 'assistant',
            content: '',
            tool_calls: calls.map((c, index) => ({
              id: c.id,
              function: { index, name: c.function.name, arguments: args },
            })),
          },
          { role: 'tool', content: 'Sunny, 21°C', tool_call_id: calls[0]!.id, tool_name: 'get_weather' },
          { role: 'tool', content: '12:00 [mock tokens=4]', tool_call_id: calls[1]!.id, tool_name: 'get_time' },
        ]);
      } else {
        t.same(
          sent.slice(1),
          [
            {
              role: 'assistant',
              content: calls.map((c) => ({ type: 'tool_use', id: c.id, name: c.function.name, input: args })),
            },
            {
              role: 'user',
              content: [
                { type: 'tool_result', tool_use_id: calls[0]!.id, content: 'Sunny, 21°C' },
                { type: 'tool_result', tool_use_id: calls[1]!.id, content: '12:00 [mock tokens=4]' },
              ],
            },
          ],
          'tool_use blocks, then every result in one user turn',
        );
      }
    });

    t.test(`${format}: JSON mode, json_object, streamed`, async (t) => {
      const stream = await client.chat.completions.create({
        model: 'm',
        stream: true,
        response_format: { type: 'json_object' },
        messages: [{ role: 'user', content: 'Answer in JSON [mock tokens=3]' }],
      });
      const { content, finish } = await contentOf(stream);
      t.same(JSON.parse(content), { answer: mockText(3) }, 'valid JSON as content');
      t.equal(finish, 'stop', 'a plain stop, even where a tool carried it');
    });

    t.test(`${format}: JSON mode, json_schema, not streamed`, async (t) => {
      const upstream = nextUpstream();
      const completion = await client.chat.completions.create({
        model: 'm',
        response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON_SCHEMA, strict: true } },
        messages: [{ role: 'user', content: 'Who?' }],
      });
      t.same(JSON.parse(completion.choices[0]!.message.content!), sampleFromSchema(PERSON_SCHEMA));
      t.equal(completion.choices[0]!.message.tool_calls, undefined);
      const sent = (await upstream).body;
      if (format === 'ollama') t.same(sent['format'], PERSON_SCHEMA, 'format: the schema');
      if (format === 'anthropic')
        t.same(sent['output_config'], { format: { type: 'json_schema', schema: PERSON_SCHEMA } }, 'structured outputs');
      if (format === 'openai')
        t.same(sent['response_format'], {
          type: 'json_schema',
          json_schema: { name: 'person', schema: PERSON_SCHEMA, strict: true },
        });
    });

    t.test(`${format}: JSON mode, json_schema not strict, streamed`, async (t) => {
      const upstream = nextUpstream();
      const stream = await client.chat.completions.create({
        model: 'm',
        stream: true,
        response_format: { type: 'json_schema', json_schema: { name: 'person', schema: PERSON_SCHEMA } },
        messages: [{ role: 'user', content: 'Who?' }],
      });
      const { content, finish } = await contentOf(stream);
      t.same(JSON.parse(content), sampleFromSchema(PERSON_SCHEMA), "the schema's JSON as content");
      t.equal(finish, 'stop');
      const sent = (await upstream).body;
      // Anthropic: best effort, as OpenAI without strict: the answer tool takes keywords structured outputs refuse.
      if (format === 'anthropic') {
        t.same(
          (sent['tools'] as Array<{ name: string; input_schema: unknown }>).map((tool) => [
            tool.name,
            tool.input_schema,
          ]),
          [[JSON_ANSWER_TOOL, PERSON_SCHEMA]],
          "the answer tool, the schema its input's",
        );
        t.equal(sent['output_config'], undefined, 'not structured outputs');
      }
    });

    t.test(`${format}: a forced tool (tool_choice)`, async (t) => {
      const choice: OpenAI.ChatCompletionToolChoiceOption = { type: 'function', function: { name: 'get_time' } };
      if (format === 'ollama') {
        await t.rejects(
          client.chat.completions.create({
            model: 'm',
            messages: [{ role: 'user', content: 'Time?' }],
            tools: [WEATHER, TIME],
            tool_choice: choice,
          }),
          { status: 400, message: /tool_choice: an ollama upstream cannot force a tool call/ },
        );
        return;
      }
      const completion = await client.chat.completions.create({
        model: 'm',
        messages: [{ role: 'user', content: 'Time?' }],
        tools: [WEATHER, TIME],
        tool_choice: choice,
      });
      const call = completion.choices[0]!.message.tool_calls![0] as OpenAI.ChatCompletionMessageFunctionToolCall;
      t.equal(call.function.name, 'get_time', 'the named tool was called');
      t.same(JSON.parse(call.function.arguments), sampleFromSchema(TIME.function.parameters));
    });
  }

  t.test('fields a format cannot express are 400s naming them, never dropped', async (t) => {
    const cases: Array<[MockFormat, Record<string, unknown>, RegExp]> = [
      ['ollama', { n: 2 }, /^n: an ollama upstream cannot express it/],
      ['anthropic', { seed: 7 }, /^seed: is not supported by an anthropic upstream/],
      ['anthropic', { logprobs: true, top_logprobs: 2 }, /^logprobs: .*; top_logprobs: /],
      ['ollama', { logit_bias: { '50256': -100 } }, /^logit_bias: /],
      ['anthropic', { frequency_penalty: 0.5 }, /^frequency_penalty: /],
      ['ollama', { parallel_tool_calls: false, tools: [WEATHER] }, /^parallel_tool_calls: /],
      [
        'ollama',
        { tools: [{ ...WEATHER, function: { ...WEATHER.function, strict: true } }] },
        /^tools\.0\.function\.strict: /,
      ],
      ['anthropic', { temperature: 1.5 }, /^temperature: an anthropic upstream takes 0 to 1/],
      ['anthropic', { reasoning_effort: 'low' }, /^reasoning_effort: /],
      ['ollama', { some_new_field: 1 }, /^some_new_field: is not a field graygate can convert/],
      [
        'ollama',
        {
          messages: [
            { role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://example.com/a.png' } }] },
          ],
        },
        /^messages\.0\.content\.0\.image_url\.url: an ollama upstream takes images as base64 data: URLs only/,
      ],
      [
        'anthropic',
        { messages: [{ role: 'user', content: [{ type: 'input_audio', input_audio: { data: '', format: 'wav' } }] }] },
        /^messages\.0\.content\.0: content parts of type "input_audio"/,
      ],
      [
        'anthropic',
        {
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'assistant', content: 'x', refusal: 'no' },
            { role: 'user', content: 'more' },
          ],
        },
        /^messages\.1\.refusal: is not supported by an anthropic upstream$/,
      ],
      [
        'ollama',
        {
          messages: [
            { role: 'user', content: 'hi' },
            { role: 'function', name: 'f', content: '1' },
          ],
        },
        /^messages\.1\.role: "function" is not supported by an ollama upstream \(use tools\)$/,
      ],
    ];
    for (const [format, extra, message] of cases) {
      const res = await fetch(`${gw.url}/v1/chat/completions?version=${format}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra }),
      });
      const body = (await res.json()) as { error: { code: string; message: string } };
      t.equal(res.status, 400, `${format} ${Object.keys(extra).join(',')}`);
      t.equal(body.error.code, 'invalid_request');
      t.match(body.error.message, message);
    }
    const client = new OpenAI({
      baseURL: `${gw.url}/v1`,
      apiKey: 'not-used',
      maxRetries: 0,
      defaultHeaders: { 'x-version': 'anthropic' },
    });
    await t.rejects(
      client.chat.completions.create({ model: 'm', messages: [{ role: 'user', content: 'hi' }], seed: 1 }),
      { status: 400, code: 'invalid_request' },
      'the openai client sees a 400 APIError',
    );
    // The same fields are the client's business on an OpenAI upstream.
    const openai = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-used', maxRetries: 0 });
    const completion = await openai.chat.completions.create({
      model: 'm',
      messages: [{ role: 'user', content: 'hi [mock tokens=2]' }],
      seed: 1,
      logit_bias: { '1': 1 },
    });
    t.equal(completion.choices[0]!.message.content, mockText(2));
    // Legacy function calling: a function_call answered with a `function` message, as the API still takes it.
    const legacy = await openai.chat.completions.create({
      model: 'm',
      functions: [{ name: 'f', parameters: { type: 'object' } }],
      messages: [
        { role: 'user', content: 'f?' },
        { role: 'assistant', content: null, function_call: { name: 'f', arguments: '{}' } },
        { role: 'function', name: 'f', content: '1' },
      ],
    });
    t.equal(legacy.object, 'chat.completion', 'a function message passes to an OpenAI upstream');
  });

  t.test('the mock answers tool calls whole too, in each format', async (t) => {
    const bodies: Record<MockFormat, Record<string, unknown>> = {
      openai: {
        model: 'm',
        messages: [{ role: 'user', content: `[mock tools=get_weather args=${ARGS}]` }],
        tools: [WEATHER],
      },
      ollama: {
        model: 'm',
        stream: false,
        messages: [{ role: 'user', content: `[mock tools=get_weather args=${ARGS}]` }],
        tools: [WEATHER],
      },
      anthropic: {
        model: 'm',
        max_tokens: 9,
        messages: [{ role: 'user', content: `[mock tools=get_weather args=${ARGS}]` }],
        tools: [{ name: 'get_weather', input_schema: WEATHER.function.parameters }],
      },
    };
    const calls: Record<MockFormat, (b: Record<string, unknown>) => unknown> = {
      openai: (b) =>
        (
          b['choices'] as Array<{ message: { tool_calls: Array<{ function: { name: string; arguments: string } }> } }>
        )[0]!.message.tool_calls.map((c) => [c.function.name, JSON.parse(c.function.arguments) as unknown]),
      ollama: (b) =>
        (b['message'] as { tool_calls: Array<{ function: { name: string; arguments: unknown } }> }).tool_calls.map(
          (c) => [c.function.name, c.function.arguments],
        ),
      anthropic: (b) => (b['content'] as Array<{ name: string; input: unknown }>).map((c) => [c.name, c.input]),
    };
    for (const format of FORMATS) {
      const res = await fetch(mock.url + CHAT_PATHS[format], { method: 'POST', body: JSON.stringify(bodies[format]) });
      t.same(
        calls[format]((await res.json()) as Record<string, unknown>),
        [['get_weather', { city: 'Paris' }]],
        format,
      );
      const unknown = await fetch(mock.url + CHAT_PATHS[format], {
        method: 'POST',
        body: JSON.stringify({ ...bodies[format], tools: [] }),
      });
      t.equal(unknown.status, 400, `${format}: a tool the request did not offer`);
    }
  });
});

t.test("upstream.defaultMaxTokens: an anthropic version's max_tokens when the client sends none", async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const upstream = { format: 'anthropic', url: mock.url + BASE_PATHS.anthropic };
  const gw = await startGateway(t, {
    versions: {
      fixed: { weight: 1, upstream },
      long: { weight: 0, upstream: { ...upstream, defaultMaxTokens: 64_000 } },
    },
    routing: { default: 'fixed' },
  });
  const ask = async (version: string, extra: Record<string, unknown> = {}): Promise<unknown> => {
    const sent = once(mock.events, 'stream').then(([s]) => (s as MockStream).body['max_tokens']);
    const res = await fetch(`${gw.url}/v1/chat/completions?version=${version}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }], ...extra }),
    });
    t.equal(res.status, 200, version);
    await res.arrayBuffer();
    return sent;
  };
  t.equal(await ask('fixed'), 4096, 'unset: 4096');
  t.equal(await ask('long'), 64_000, "the version's own default");
  t.equal(await ask('long', { max_tokens: 100 }), 100, "a client's own max_tokens still wins");
});

t.test('upstream.strictTools "unchecked": an ollama version takes strict tools as plain ones', async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const upstream = { format: 'ollama', url: mock.url + BASE_PATHS.ollama };
  const gw = await startGateway(t, {
    versions: {
      refuse: { weight: 1, upstream },
      unchecked: { weight: 0, upstream: { ...upstream, strictTools: 'unchecked' } },
    },
    routing: { default: 'refuse' },
  });
  // The OpenAI Agents SDK's default: `strict: true` on every tool.
  const strict = { ...WEATHER, function: { ...WEATHER.function, strict: true } };
  const ask = (version: string): Promise<Response> =>
    fetch(`${gw.url}/v1/chat/completions?version=${version}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'weather?' }], tools: [strict] }),
    });
  const refused = await ask('refuse');
  t.equal(refused.status, 400);
  t.match(((await refused.json()) as { error: { message: string } }).error.message, /upstream\.strictTools/);
  const taken = await ask('unchecked');
  t.equal(taken.status, 200);
  t.ok(((await taken.json()) as { choices: unknown[] }).choices.length > 0);
});

/** A streamed answer's content, its deltas joined, and its first finish_reason. */
async function contentOf(
  stream: AsyncIterable<OpenAI.ChatCompletionChunk>,
): Promise<{ content: string; finish: string | null | undefined }> {
  const parts: string[] = [];
  let finish: string | null | undefined;
  for await (const chunk of stream) {
    parts.push(chunk.choices[0]?.delta.content ?? '');
    finish ??= chunk.choices[0]?.finish_reason;
  }
  return { content: parts.join(''), finish };
}
