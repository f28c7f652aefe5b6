import t from 'tap';
import { buildOllamaRequest, convertOllamaLine, logprobsOf } from '../../../worker/upstream/ollama.js';
import {
  buildOllamaEmbedRequest,
  convertOllamaEmbedAnswer,
  toBase64Float32,
} from '../../../worker/upstream/ollama-embed.js';
import { createStreamState, type ChatCompletionChunk } from '../../../worker/types.js';
import { CompletionAggregator } from '../../../worker/chat/aggregate.js';
import type { ChatRequest, RequestToolCall } from '../../../worker/request/chat-request.js';

// SPEC §12, issue 12 part 1: the Ollama converters alone, plain data in and
// out, as case tables.

const NO_KEY = { model: undefined, apiKey: undefined };
const deep = `{"a":${'['.repeat(64)}${']'.repeat(64)}}`;
/** A tool call whose arguments hold 27 000 items: seven are within four bodies' 200 000, eight are not. */
const wide = (id: string): RequestToolCall => ({
  id,
  type: 'function',
  function: { name: 'f', arguments: `{${['a', 'b', 'c'].map((k) => `"${k}":[${'1,'.repeat(8_999)}1]`).join(',')}}` },
});
const user = { role: 'user' as const, content: 'hi' };
const body = (req: Partial<ChatRequest>): Record<string, unknown> =>
  JSON.parse(buildOllamaRequest({ model: 'm', messages: [user], ...req }, NO_KEY).body.toString()) as Record<
    string,
    unknown
  >;
const WEATHER = {
  type: 'function',
  function: {
    name: 'get_weather',
    description: 'd',
    parameters: { type: 'object', properties: { city: { type: 'string' } } },
  },
};

t.test('request fields → Ollama', async (t) => {
  const cases: Array<[string, Partial<ChatRequest>, Record<string, unknown>]> = [
    ['tools as OpenAI sends them', { tools: [WEATHER] }, { tools: [WEATHER] }],
    [
      'a tool without parameters gets an empty object schema',
      { tools: [{ type: 'function', function: { name: 'now' } }] },
      { tools: [{ type: 'function', function: { name: 'now', parameters: { type: 'object', properties: {} } } }] },
    ],
    ['tool_choice auto: tools sent', { tools: [WEATHER], tool_choice: 'auto' }, { tools: [WEATHER] }],
    ['tool_choice none: no tools sent', { tools: [WEATHER], tool_choice: 'none' }, { tools: undefined }],
    [
      'parallel_tool_calls true is what Ollama does',
      { tools: [WEATHER], parallel_tool_calls: true },
      { tools: [WEATHER] },
    ],
    ['json_object → format json', { response_format: { type: 'json_object' } }, { format: 'json' }],
    [
      'json_schema → the schema',
      {
        response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'object' }, strict: true } },
      },
      { format: { type: 'object' } },
    ],
    [
      'json_schema with a description: it becomes the schema’s, unless the schema has one',
      {
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'x', description: 'A pair', schema: { type: 'object', description: 'own' } },
        },
      },
      { format: { type: 'object', description: 'own' } },
    ],
    [
      'json_schema without a schema → json',
      { response_format: { type: 'json_schema', json_schema: { name: 'x' } } },
      { format: 'json' },
    ],
    ['text → no format', { response_format: { type: 'text' } }, { format: undefined }],
    ['logprobs', { logprobs: true, top_logprobs: 3 }, { logprobs: true, top_logprobs: 3 }],
    ['logprobs false → not sent', { logprobs: false }, { logprobs: undefined }],
    [
      'sampling options',
      { seed: 7, top_k: 40, frequency_penalty: 0.5, presence_penalty: 0.1, max_completion_tokens: 9 },
      { options: { seed: 7, top_k: 40, frequency_penalty: 0.5, presence_penalty: 0.1, num_predict: 9 } },
    ],
    [
      'user: the routing key, not sent',
      { user: 'alice', prompt_cache_key: 'k' },
      { user: undefined, prompt_cache_key: undefined },
    ],
    [
      'neutral values of fields Ollama lacks',
      { n: 1, logit_bias: {}, store: false, service_tier: 'auto', modalities: ['text'] },
      { n: undefined, logit_bias: undefined },
    ],
  ];
  for (const [name, req, expected] of cases) t.match(body(req), expected, name);
  t.notOk('tools' in body({ tools: [WEATHER], tool_choice: 'none' }));
  t.notOk('format' in body({ response_format: { type: 'text' } }));
});

t.test('requests Ollama cannot express are 400s naming the field', async (t) => {
  const cases: Array<[string, Partial<ChatRequest>, RegExp]> = [
    ['required', { tools: [WEATHER], tool_choice: 'required' }, /^tool_choice: an ollama upstream cannot force/],
    [
      'a named tool',
      { tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'get_weather' } } },
      /^tool_choice: /,
    ],
    [
      'strict tools',
      { tools: [{ type: 'function', function: { name: 'f', strict: true } }] },
      /^tools\.0\.function\.strict: /,
    ],
    [
      'a key Ollama’s tools do not have',
      { tools: [{ ...WEATHER, cache_control: { type: 'ephemeral' } }] },
      /^tools\.0\.cache_control: is not a field graygate can convert for an ollama upstream$/,
    ],
    [
      'custom tools',
      { tools: [{ type: 'custom', function: { name: 'x' } }] },
      /^tools\.0\.type: an ollama upstream takes function tools only/,
    ],
    [
      'parallel_tool_calls false',
      { parallel_tool_calls: false },
      /^parallel_tool_calls: an ollama upstream cannot express it \(400 unless true\)/,
    ],
    ['n 2', { n: 2 }, /^n: /],
    [
      'top_logprobs without logprobs (OpenAI refuses it too)',
      { top_logprobs: 3 },
      /^top_logprobs: needs logprobs: true/,
    ],
    ['top_logprobs with logprobs false', { logprobs: false, top_logprobs: 0 }, /^top_logprobs: /],
    ['another format type', { response_format: { type: 'grammar' } }, /^response_format\.type: /],
    [
      'an http image',
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/y.png' } }] }] },
      /^messages\.0\.content\.0\.image_url\.url: /,
    ],
    [
      'an image in a system message',
      {
        messages: [
          { role: 'system', content: [{ type: 'image_url', image_url: { url: 'data:image/png;base64,AA' } }] },
          user,
        ],
      },
      /^messages\.0\.content\.0: content parts of type "image_url" are not supported in system messages/,
    ],
    [
      'arguments that are not an object',
      {
        messages: [
          { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '[1]' } }] },
          user,
        ],
      },
      /^messages\.0\.tool_calls\.0\.function\.arguments: must be a JSON object/,
    ],
    [
      'arguments that are not JSON',
      {
        messages: [
          { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: '{' } }] },
          user,
        ],
      },
      /not valid JSON/,
    ],
    [
      // To the body's own limits the arguments are a string: 20 KB nested 10 000 deep overflowed the stack (a 500).
      'arguments nested deeper than a request body may be',
      {
        messages: [
          { role: 'assistant', tool_calls: [{ id: 'c', type: 'function', function: { name: 'f', arguments: deep } }] },
          user,
        ],
      },
      /^messages\.0\.tool_calls\.0\.function\.arguments: is nested more than 64 levels deep \(limit 64\)$/,
    ],
    [
      'more members and items in the arguments of one request than four bodies may hold, counted over all its calls',
      { messages: [{ role: 'assistant', tool_calls: ['a', 'b', 'c', 'd', 'e', 'f', 'g', 'h'].map(wide) }, user] },
      /^the JSON of the request's tool-call arguments has more than 200000 members and items in total/,
    ],
    [
      'several at once',
      { seed: 1, audio: {}, logit_bias: { a: 1 }, verbosity: 'low' },
      /^audio: .*; logit_bias: .*; verbosity: /,
    ],
  ];
  for (const [name, req, message] of cases) t.throws(() => body(req), { code: 'invalid_request', message }, name);
});

t.test('messages: tool calls and results, images', async (t) => {
  const sent = body({
    messages: [
      { role: 'developer', content: 'Be brief.' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'What is ' },
          { type: 'text', text: 'this?' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBOR' } },
        ],
      },
      {
        role: 'assistant',
        content: null,
        tool_calls: [
          { id: 'call_1', type: 'function', function: { name: 'look', arguments: '{"zoom":2}' } },
          { id: 'call_2', type: 'function', function: { name: 'now', arguments: '' } },
        ],
      },
      { role: 'tool', tool_call_id: 'call_1', content: [{ type: 'text', text: 'a cat' }] },
      { role: 'tool', tool_call_id: 'call_2', content: 'noon' },
      { role: 'tool', tool_call_id: 'unknown', content: '?' },
      { role: 'tool', tool_call_id: 'other', content: '!', name: 'lookup' },
    ],
  });
  t.same(sent['messages'], [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'What is this?', images: ['iVBOR'] },
    {
      role: 'assistant',
      content: '',
      tool_calls: [
        { id: 'call_1', function: { index: 0, name: 'look', arguments: { zoom: 2 } } },
        { id: 'call_2', function: { index: 1, name: 'now', arguments: {} } },
      ],
    },
    { role: 'tool', content: 'a cat', tool_call_id: 'call_1', tool_name: 'look' },
    { role: 'tool', content: 'noon', tool_call_id: 'call_2', tool_name: 'now' },
    { role: 'tool', content: '?', tool_call_id: 'unknown' },
    { role: 'tool', content: '!', tool_call_id: 'other', tool_name: 'lookup' },
  ]);
  // A participant's name is not sent, as Ollama's own OpenAI-compatible endpoint ignores it: LangChain's agents name
  // every answer of theirs ("name":"model") and send it back as history.
  t.same(
    body({
      messages: [
        { role: 'user', content: 'x', name: 'alice' },
        { role: 'assistant', content: 'y', name: 'model' },
      ],
    })['messages'],
    [
      { role: 'user', content: 'x' },
      { role: 'assistant', content: 'y' },
    ],
  );
});

function run(lines: string[]): { chunks: ChatCompletionChunk[] } {
  const state = createStreamState({ id: 'chatcmpl-abc', created: 1, model: 'm' });
  const chunks: ChatCompletionChunk[] = [];
  for (const line of lines) convertOllamaLine(state, '', line, { chunk: (c) => chunks.push(c) });
  return { chunks };
}

t.test('reasoning: thinking → delta.reasoning, reasoning_effort → think, history back as thinking', async (t) => {
  // Ollama's own OpenAI-compatible endpoint (openai/openai.go) is the model: `reasoning`, and the same effort map.
  const lines = [
    '{"model":"qwen3","message":{"role":"assistant","content":"","thinking":"Let me "}}',
    '{"model":"qwen3","message":{"role":"assistant","content":"","thinking":"think."}}',
    '{"model":"qwen3","message":{"role":"assistant","content":"Answer"}}',
    '{"model":"qwen3","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","eval_count":9}',
  ];
  const { chunks } = run(lines);
  t.same(
    chunks.map((c) => c.choices[0]?.delta),
    [
      { role: 'assistant', content: '' },
      { reasoning: 'Let me ' },
      { reasoning: 'think.' },
      { content: 'Answer' },
      {},
      undefined,
    ],
  );
  const whole = new CompletionAggregator();
  for (const chunk of chunks) whole.chunk(chunk);
  t.match(whole.toCompletion().choices[0]!.message, {
    role: 'assistant',
    content: 'Answer',
    reasoning: 'Let me think.',
  });
  t.equal(whole.contentChunks, 1, 'reasoning is not content');

  t.equal(body({ reasoning_effort: 'none' })['think'], false);
  for (const [effort, level] of [
    ['minimal', 'low'],
    ['low', 'low'],
    ['medium', 'medium'],
    ['high', 'high'],
    ['xhigh', 'high'],
  ] as const)
    t.equal(body({ reasoning_effort: effort })['think'], level, effort);
  t.notOk('think' in body({}), 'the model’s own default when not asked');
  for (const effort of ['extreme', 5, 'constructor'])
    t.throws(() => body({ reasoning_effort: effort }), {
      code: 'invalid_request',
      message: 'reasoning_effort: an ollama upstream takes "none", "minimal", "low", "medium", "high", "xhigh"',
    });
  const history = body({
    messages: [
      user,
      { role: 'assistant', content: 'Answer', reasoning: 'Let me think.' },
      { role: 'user', content: 'And?' },
    ],
  })['messages'] as Array<Record<string, unknown>>;
  t.same(history[1], { role: 'assistant', content: 'Answer', thinking: 'Let me think.' });
  // The AI SDK's openai-compatible provider sends what it read as reasoning back as `reasoning_content`.
  const aiSdk = body({
    messages: [
      user,
      { role: 'assistant', content: null, reasoning_content: 'Hmm.' },
      { role: 'user', content: 'And?' },
    ],
  })['messages'] as Array<Record<string, unknown>>;
  t.same(aiSdk[1], { role: 'assistant', content: '', thinking: 'Hmm.' });
});

t.test('streamed tool calls → OpenAI fragments, finish_reason tool_calls', async (t) => {
  const { chunks } = run([
    '{"message":{"role":"assistant","content":"Let me look."},"done":false}',
    '{"message":{"role":"assistant","content":"","tool_calls":[{"id":"call_x","function":{"index":0,"name":"get_weather","arguments":{"city":"Paris"}}},{"function":{"index":1,"name":"now","arguments":{}}}]},"done":false}',
    '{"message":{"role":"assistant","content":""},"done":true,"done_reason":"stop","prompt_eval_count":5,"eval_count":7}',
  ]);
  t.same(
    chunks.map((c) => c.choices[0]?.delta ?? 'usage'),
    [
      { role: 'assistant', content: '' },
      { content: 'Let me look.' },
      { tool_calls: [{ index: 0, id: 'call_x', type: 'function', function: { name: 'get_weather', arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{"city":"Paris"}' } }] },
      { tool_calls: [{ index: 1, id: 'call_abc_1', type: 'function', function: { name: 'now', arguments: '' } }] },
      { tool_calls: [{ index: 1, function: { arguments: '{}' } }] },
      {},
      'usage',
    ],
    'whole calls become a first fragment and one arguments fragment; a call without an id gets one',
  );
  t.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'tool_calls');
  // An answer that is a tool call, after a line of nothing: its role chunk says `content: null` before it, as
  // OpenAI's does (`""` opened an empty text part in the AI SDK), and goes once, first.
  const callOnly = run([
    '{"model":"qwen3","message":{"role":"assistant","content":""},"done":false}',
    '{"model":"qwen3","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"now","arguments":{}}}]},"done":false}',
    '{"model":"qwen3","message":{"role":"assistant","content":""},"done":true,"done_reason":"stop"}',
  ]).chunks;
  t.same(
    callOnly.map((c) => c.choices[0]?.delta ?? 'usage'),
    [
      { role: 'assistant', content: null },
      { tool_calls: [{ index: 0, id: 'call_abc_0', type: 'function', function: { name: 'now', arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{}' } }] },
      {},
      'usage',
    ],
  );
  const whole = new CompletionAggregator();
  for (const chunk of callOnly) whole.chunk(chunk);
  t.equal(whole.toCompletion().choices[0]!.message.content, null, 'whole: content null, as OpenAI answers a call');
  t.throws(() => run(['{"message":{"tool_calls":[{"function":{"arguments":{}}}]},"done":false}']), {
    code: 'upstream_protocol_error',
  });
  const length = run([
    '{"message":{"content":"","tool_calls":[{"function":{"name":"f","arguments":{}}}]},"done":false}',
    '{"message":{"content":""},"done":true,"done_reason":"length"}',
  ]);
  t.equal(length.chunks.at(-2)!.choices[0]!.finish_reason, 'length', 'length wins');
});

t.test('a call without arguments gets {}; arguments sent as JSON text go out as they are', async (t) => {
  const args = (line: string): string =>
    run([line])
      .chunks.map((c) => c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '')
      .join('');
  t.equal(args('{"message":{"content":"","tool_calls":[{"function":{"name":"now"}}]},"done":false}'), '{}');
  t.equal(
    args('{"message":{"content":"","tool_calls":[{"function":{"name":"f","arguments":"{\\"a\\":1}"}}]},"done":false}'),
    '{"a":1}',
    'a server in front of Ollama that sends OpenAI-style text: not quoted a second time',
  );
});

t.test('a line holds at most 1,024 tool calls and log probabilities, 20 top_logprobs each', async (t) => {
  // An amplification audit: a 1 MiB line of tiny calls was 42.7 MB of SSE in one batch, of `{}` log probabilities 19.6.
  const calls = (n: number): string =>
    JSON.stringify({
      message: { content: '', tool_calls: Array.from({ length: n }, () => ({ function: { name: 'a' } })) },
    });
  t.equal(run([calls(1024)]).chunks.length, 1 + 2 * 1024, 'the role chunk, and two a call');
  t.throws(() => run([calls(1025)]), {
    code: 'upstream_protocol_error',
    message: 'the upstream sent more than 1024 tool calls in one line',
  });
  const entry = (top: number): object => ({ token: 'a', logprob: -1, top_logprobs: Array(top).fill({ token: 'b' }) });
  t.equal(logprobsOf(Array(1024).fill(entry(20)))!.content!.length, 1024);
  for (const value of [Array(1025).fill(entry(0)), [entry(21)]])
    t.throws(() => logprobsOf(value), {
      code: 'upstream_protocol_error',
      message: /^the upstream sent more than 1024/,
    });
});

t.test('logprobs → OpenAI logprobs.content', async (t) => {
  const { chunks } = run([
    '{"message":{"content":"Hi"},"logprobs":[{"token":"Hi","logprob":-0.1,"bytes":[72,105],"top_logprobs":[{"token":"Hi","logprob":-0.1},{"token":"Yo","logprob":-2}]}],"done":false}',
  ]);
  t.same(chunks[1]!.choices[0]!.logprobs, {
    content: [
      {
        token: 'Hi',
        logprob: -0.1,
        bytes: [72, 105],
        top_logprobs: [
          { token: 'Hi', logprob: -0.1, bytes: null },
          { token: 'Yo', logprob: -2, bytes: null },
        ],
      },
    ],
    refusal: null,
  });
  t.equal(logprobsOf(undefined), undefined);
  t.equal(logprobsOf([]), undefined);
  t.same(
    logprobsOf([{ token: '\ufffd', logprob: -1, bytes: [0, 255] }])!.content![0]!.bytes,
    [0, 255],
    'bytes 0 and 255 pass',
  );
  const odd = logprobsOf([{ token: 'x', logprob: -1, bytes: ['x'.repeat(1000)], top_logprobs: [{ bytes: [256] }] }]);
  t.same(
    [odd!.content![0]!.bytes, odd!.content![0]!.top_logprobs[0]!.bytes],
    [null, null],
    'bytes other than integers 0-255 are not passed on (nor held)',
  );
});

t.test('embeddings: request and answer', async (t) => {
  const req = buildOllamaEmbedRequest(
    'embeddings',
    { model: 'e', input: ['a', 'b'], dimensions: 4, encoding_format: 'base64', user: 'u' },
    { model: 'pinned', apiKey: 'k' },
  );
  t.equal(req.path, '/api/embed');
  t.equal(req.headers['authorization'], 'Bearer k');
  t.same(JSON.parse(req.body.toString()), { model: 'pinned', input: ['a', 'b'], dimensions: 4 });
  t.throws(() => buildOllamaEmbedRequest('embeddings', { model: 'e', input: [1, 2] }, NO_KEY), {
    code: 'invalid_request',
    message: /^input: /,
  });
  t.throws(() => buildOllamaEmbedRequest('embeddings', { model: 'e', input: 'x', truncate: true }, NO_KEY), {
    code: 'invalid_request',
    message: /^truncate: /,
  });
  const many = Object.fromEntries(Array.from({ length: 10_000 }, (_, i) => [`f${i}`, 0]));
  t.throws(() => buildOllamaEmbedRequest('embeddings', { model: 'e', input: 'x', ...many }, NO_KEY), {
    code: 'invalid_request',
    message: /^f0: is not a field .*; f9: is not a field graygate can convert for an ollama upstream; and 9990 more$/,
  });
  const answer = Buffer.from('{"model":"e","embeddings":[[0.5,-1],[0.25,2]],"prompt_eval_count":3}');
  const floats = convertOllamaEmbedAnswer('embeddings', answer, { encoding: 'float', inputs: 2 });
  t.same(JSON.parse(floats.body.toString()), {
    object: 'list',
    data: [
      { object: 'embedding', index: 0, embedding: [0.5, -1] },
      { object: 'embedding', index: 1, embedding: [0.25, 2] },
    ],
    model: 'e',
    usage: { prompt_tokens: 3, total_tokens: 3 },
  });
  t.same(floats.usage, { prompt_tokens: 3, completion_tokens: 0 });
  const marked = convertOllamaEmbedAnswer('embeddings', Buffer.concat([Buffer.from('\ufeff'), answer]), {
    encoding: 'float',
    inputs: 2,
  });
  t.same(marked.body, floats.body, 'a byte-order mark before the answer is not part of it (it was a 502)');
  const base64 = JSON.parse(
    convertOllamaEmbedAnswer('embeddings', answer, { encoding: 'base64', inputs: 2 }).body.toString(),
  ) as {
    data: Array<{ embedding: string }>;
  };
  t.same(
    Array.from(new Float32Array(Uint8Array.from(Buffer.from(base64.data[0]!.embedding, 'base64')).buffer)),
    [0.5, -1],
    'little-endian float32s',
  );
  t.equal(toBase64Float32([1]), Buffer.from([0, 0, 0x80, 0x3f]).toString('base64'));
  const hints = { encoding: 'float', inputs: 1 } as const;
  t.throws(() => convertOllamaEmbedAnswer('embeddings', Buffer.from('{"embeddings":"x"}'), hints), {
    code: 'upstream_protocol_error',
  });
  // A vector an input: a hostile upstream's 21 million empty vectors (64 MiB) were 1.1 GiB of answer, 2.5 GiB of RSS.
  const vectors = Buffer.from(`{"embeddings":[${'[],'.repeat(1_000_000)}[]]}`);
  t.throws(() => convertOllamaEmbedAnswer('embeddings', vectors, hints), {
    code: 'upstream_protocol_error',
    message: 'the upstream answered more than 1 embeddings for 1 inputs',
  });
  t.throws(() => convertOllamaEmbedAnswer('embeddings', answer, hints), {
    code: 'upstream_protocol_error',
    message: 'the upstream answered more than 1 embeddings for 1 inputs',
  });
  t.throws(() => convertOllamaEmbedAnswer('embeddings', answer, { ...hints, inputs: 3 }), {
    message: 'the upstream answered 2 embeddings for 3 inputs',
  });
  const escaped = Buffer.from('{"embe\\u0064dings":[[1],[2]]}'); // another shape: read whole, counted too
  t.throws(() => convertOllamaEmbedAnswer('embeddings', escaped, hints), {
    message: 'the upstream answered 2 embeddings for 1 inputs',
  });
});
