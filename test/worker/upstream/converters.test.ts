import t from 'tap';
import {
  checkUpstreamJson,
  checkWholeAnswerJson,
  MAX_UPSTREAM_JSON_VALUES,
  parseUpstreamJson,
  tokenCount,
  upstreamErrorIn,
  upstreamErrorMessage,
  upstreamErrorOf,
} from '../../../worker/upstream/format-adapter.js';
import { buildOpenAIRequest, convertOpenAIEvent } from '../../../worker/upstream/openai.js';
import { buildOllamaRequest, convertOllamaLine, mapOllamaDoneReason } from '../../../worker/upstream/ollama.js';
import {
  buildAnthropicRequest,
  anthropicAdapter,
  convertAnthropicEvent,
  mapAnthropicStopReason,
  DEFAULT_ANTHROPIC_MAX_TOKENS,
} from '../../../worker/upstream/anthropic.js';
import { createStreamState, type ChatCompletionChunk, type StreamState } from '../../../worker/types.js';
import type { ChatRequest } from '../../../worker/request/chat-request.js';

// The converters alone (issue 3 part 2): plain data in, plain data out.

const state = (): StreamState => createStreamState({ id: 'chatcmpl-x', created: 100, model: 'm' });
function run(
  convert: (
    s: StreamState,
    type: string,
    data: string,
    sink: { chunk(c: ChatCompletionChunk, raw?: string): void },
  ) => void,
  events: Array<[string, string]>,
): { chunks: ChatCompletionChunk[]; raws: Array<string | undefined>; s: StreamState } {
  const s = state();
  const chunks: ChatCompletionChunk[] = [];
  const raws: Array<string | undefined> = [];
  for (const [type, data] of events) convert(s, type, data, { chunk: (c, raw) => (chunks.push(c), raws.push(raw)) });
  return { chunks, raws, s };
}
const req = (extra: Partial<ChatRequest> = {}): ChatRequest => ({
  model: 'client-model',
  messages: [
    { role: 'system', content: 'Be brief.' },
    {
      role: 'user',
      content: [
        { type: 'text', text: 'Hi ' },
        { type: 'text', text: 'there' },
      ],
    },
    { role: 'assistant', content: 'Hello' },
    { role: 'user', content: 'More' },
  ],
  ...extra,
});

t.test('openai request: a stream asks for usage; key as bearer, config model wins', async (t) => {
  const r = buildOpenAIRequest(req({ temperature: 0.5, seed: 7, stream: true }), { model: 'gpt-x', apiKey: 'sk-1' });
  t.equal(r.path, '/chat/completions');
  t.equal(r.headers['authorization'], 'Bearer sk-1');
  const body = JSON.parse(r.body.toString()) as Record<string, unknown>;
  t.equal(body.model, 'gpt-x');
  t.equal(body.stream, true);
  t.same(body.stream_options, { include_usage: true });
  t.equal(body.seed, 7, 'unknown fields pass through');
  t.equal(body.temperature, 0.5);
  t.equal(r.headers['accept'], 'text/event-stream');
  // Not streamed: asked for as one answer (relayed as it comes), the client's body as it was but the model.
  const whole = buildOpenAIRequest(req({ stream: false, seed: 7, stream_options: { include_usage: true } }), {
    model: 'gpt-x',
    apiKey: undefined,
  });
  const wholeBody = JSON.parse(whole.body.toString()) as Record<string, unknown>;
  t.equal(wholeBody.stream, false);
  t.notOk('stream_options' in wholeBody, 'stream_options without a stream goes (OpenAI refuses it)');
  t.equal(wholeBody.model, 'gpt-x');
  t.equal(whole.headers['accept'], 'application/json');
  t.notOk('authorization' in buildOpenAIRequest(req(), { model: undefined, apiKey: undefined }).headers);
  t.throws(() => buildOpenAIRequest(req({ model: undefined }), { model: undefined, apiKey: undefined }), {
    code: 'invalid_request',
    message: 'model: is required',
    param: 'model',
  });
});

t.test('openai events: passed through with their own text, [DONE] ends, errors and bad JSON throw', async (t) => {
  const first =
    '{"id":"u1","object":"chat.completion.chunk","created":5,"model":"g","system_fingerprint":"fp","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}';
  const last =
    '{"id":"u1","object":"chat.completion.chunk","created":5,"model":"g","choices":[{"index":0,"delta":{},"finish_reason":"length"}]}';
  const usage =
    '{"id":"u1","object":"chat.completion.chunk","created":5,"model":"g","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}';
  const { chunks, raws, s } = run(convertOpenAIEvent, [
    ['message', first],
    ['message', last],
    ['message', usage],
    ['message', '[DONE]'],
  ]);
  t.equal(chunks.length, 3);
  t.same(raws, [first, last, usage], 'the raw text is re-used, not re-serialised');
  t.equal(chunks[0]!['system_fingerprint'], 'fp');
  t.equal(s.finishReason, 'length');
  t.same(s.usage, { prompt_tokens: 3, completion_tokens: 4, total_tokens: 7 });
  t.equal(s.isDone, true);
  t.throws(() => run(convertOpenAIEvent, [['message', '{"choices":[{']]), { code: 'upstream_protocol_error' });
  t.throws(() => run(convertOpenAIEvent, [['message', '{"id":1}']]), { code: 'upstream_protocol_error' });
  t.throws(() => run(convertOpenAIEvent, [['message', '{"error":{"message":"overloaded"}}']]), {
    code: 'upstream_status',
    message: /overloaded/,
  });
  t.throws(() => run(convertOpenAIEvent, [['message', '{"error":"overloaded","choices":[]}']]), {
    code: 'upstream_status',
  });
  // vLLM's in-stream error before 0.6 (and FastChat's): the error object itself, without `error` or `choices`. Its
  // message was lost: "the upstream sent a chunk without a choices array".
  t.throws(
    () =>
      run(convertOpenAIEvent, [
        ['message', '{"object":"error","message":"prompt too long","type":"BadRequestError","param":null,"code":400}'],
      ]),
    { code: 'upstream_status', message: /prompt too long/ },
  );
  for (const none of ['null', 'false', '0', '""']) {
    const event = `{"error":${none},"choices":[{"index":0,"delta":{"content":"x"}}]}`;
    t.same(
      run(convertOpenAIEvent, [['message', event]]).chunks.map((c) => c.choices[0]?.delta),
      [{ content: 'x' }],
      `"error": ${none} is no error (a server that always sends the member)`,
    );
    t.equal(upstreamErrorIn(event), undefined);
  }
  t.match(upstreamErrorIn('{"error":true}'), { code: 'upstream_status' });
  // An encoding probe: after a byte-order mark a 200's error was relayed as an answer, an error status's message lost.
  t.match(upstreamErrorIn('\ufeff{"error":{"message":"Oops"}}'), { code: 'upstream_status', message: 'Oops' });
  t.same(upstreamErrorOf('\ufeff{"error":{"message":"Slow down","type":"requests","code":"rate_limit_exceeded"}}'), {
    message: 'Slow down',
    reported: { code: 'rate_limit_exceeded', type: 'requests' },
  });
});

t.test('upstream JSON of more than MAX_UPSTREAM_JSON_VALUES members and items is a protocol error', async (t) => {
  // An amplification audit: 64 MiB of `{},` in a non-streamed answer held 1.3 GB of the worker's heap, its loop 22 s.
  // Two containers and a comma a member after the first: `values` in all.
  const answer = (values: number): Buffer => Buffer.from(`{"choices":[${'0,'.repeat(values - 2)}0]}`);
  t.doesNotThrow(() => checkUpstreamJson(answer(MAX_UPSTREAM_JSON_VALUES), 'the upstream answered with JSON that'));
  t.throws(() => checkUpstreamJson(answer(MAX_UPSTREAM_JSON_VALUES + 1), 'the upstream answered with JSON that'), {
    code: 'upstream_protocol_error',
    message: /^the upstream answered with JSON that has more than 4000000 members and items in total/,
  });
  // A whole chat answer's: the client can ask for it as a stream (a reviewer: it blamed the upstream, a 502 of its).
  t.throws(() => checkWholeAnswerJson(answer(MAX_UPSTREAM_JSON_VALUES + 1), 'the answer'), {
    code: 'answer_too_large',
    shouldRetry: false,
    message: /ask for it with stream: true$/,
  });
});

t.test(
  'upstream JSON: depth 128 parses, deeper is a protocol error; long shallow events are not refused',
  async (t) => {
    const nested = (depth: number): string => `{"choices":[],"x":${'['.repeat(depth - 1)}${']'.repeat(depth - 1)}}`;
    // Padded past the length from which events are scanned (shorter ones are parsed as they are).
    const padded = (json: string): string => `{"pad":"${' '.repeat(20_000)}",${json.slice(1)}`;
    t.equal(parseUpstreamJson(padded(nested(128)))['choices'] !== undefined, true, 'depth 128');
    t.throws(() => parseUpstreamJson(padded(nested(129))), {
      code: 'upstream_protocol_error',
      message: 'the upstream sent JSON that is nested more than 128 levels deep (limit 128)',
    });
    const long = JSON.stringify({ choices: [{ index: 0, delta: { content: 'x'.repeat(1 << 20) } }] });
    t.equal(run(convertOpenAIEvent, [['message', long]]).chunks.length, 1, 'a 1 MiB token');
    t.equal(
      upstreamErrorMessage(padded(`{"error":${nested(200)}}`)).startsWith('{"pad"'),
      true,
      'an error body: its text',
    );
  },
);

t.test('ollama request: messages flattened, options mapped', async (t) => {
  const r = buildOllamaRequest(req({ max_tokens: 9, temperature: 0.1, top_p: 0.9, stop: 'END' }), {
    model: undefined,
    apiKey: undefined,
  });
  t.equal(r.path, '/api/chat');
  const body = JSON.parse(r.body.toString()) as Record<string, unknown>;
  t.same(body, {
    model: 'client-model',
    messages: [
      { role: 'system', content: 'Be brief.' },
      { role: 'user', content: 'Hi there' },
      { role: 'assistant', content: 'Hello' },
      { role: 'user', content: 'More' },
    ],
    stream: true,
    options: { temperature: 0.1, top_p: 0.9, num_predict: 9, stop: ['END'] },
  });
  t.throws(
    () =>
      buildOllamaRequest(req({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: {} }] }] }), {
        model: 'x',
        apiKey: undefined,
      }),
    { code: 'invalid_request' },
  );
});

t.test('ollama lines: role chunk, deltas, final chunk with done_reason and usage', async (t) => {
  const { chunks, s } = run(convertOllamaLine, [
    ['', '{"model":"m","message":{"role":"assistant","content":"Hé"},"done":false}'],
    ['', '   '],
    ['', '{"model":"m","message":{"role":"assistant","content":"llo"},"done":false}'],
    [
      '',
      '{"model":"m","message":{"role":"assistant","content":""},"done":true,"done_reason":"length","prompt_eval_count":12,"eval_count":2}',
    ],
  ]);
  t.same(
    chunks.map((c) => c.choices[0]?.delta ?? 'usage'),
    [{ role: 'assistant', content: '' }, { content: 'Hé' }, { content: 'llo' }, {}, 'usage'],
  );
  t.equal(chunks[3]!.choices[0]!.finish_reason, 'length');
  t.same(chunks[4]!.usage, { prompt_tokens: 12, completion_tokens: 2, total_tokens: 14 });
  t.same(chunks[4]!.choices, []);
  t.equal(chunks[0]!.id, 'chatcmpl-x');
  t.equal(s.isDone, true);
  t.throws(() => run(convertOllamaLine, [['', '{"error":"model not found"}']]), {
    code: 'upstream_status',
    message: /model not found/,
  });
  t.throws(() => run(convertOllamaLine, [['', '{"message":']]), { code: 'upstream_protocol_error' });
  t.throws(
    () => run(convertOllamaLine, [['', '{"error":{"message":"model is overloaded"}}']]),
    { code: 'upstream_status', message: 'the upstream reported an error: model is overloaded' },
    "a proxy's object-shaped error in front of Ollama: its message, not a stream cut short",
  );
  t.same(
    run(convertOllamaLine, [
      ['', '{"error":"","model":"m","message":{"role":"assistant","content":"a"},"done":false}'],
    ]).chunks.at(-1)!.choices[0]!.delta,
    { content: 'a' },
    'an empty "error" is no error, as on the other formats',
  );
  const exact = run(convertOllamaLine, [
    [
      '',
      '{"model":"m","message":{"role":"assistant","content":"","tool_calls":[{"function":{"name":"f",' +
        '"arguments":{"id":12345678901234567890,"big":1e400,"ok":1.5}}}]},"done":true,"eval_count":99999999999999999999}',
    ],
  ]);
  t.equal(exact.s.completionTokens, 0, 'a count past what an integer holds exactly is nonsense, counted 0');
  t.equal(
    exact.chunks.map((c) => c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '').join(''),
    '{"id":12345678901234567890,"big":1e400,"ok":1.5}',
    "tool-call arguments keep numbers a double cannot hold (rounded and null before), as requests' do",
  );
  const bom = run(convertOllamaLine, [
    ['', '\ufeff{"model":"m","message":{"role":"assistant","content":"a"},"done":false}'],
  ]);
  t.same(bom.chunks.at(-1)!.choices[0]!.delta, { content: 'a' }, 'a byte-order mark before the first line is dropped');
  for (const [reason, expected] of [
    ['stop', 'stop'],
    ['length', 'length'],
    ['load', 'stop'],
    [undefined, 'stop'],
  ] as const) {
    t.equal(mapOllamaDoneReason(reason), expected, `done_reason ${reason}`);
  }
});

t.test('anthropic request: system moved out, max_tokens defaulted, headers', async (t) => {
  const r = buildAnthropicRequest(req({ stop: ['x', 'y'] }), { model: 'claude-x', apiKey: 'ak' });
  t.equal(r.path, '/v1/messages');
  t.equal(r.headers['x-api-key'], 'ak');
  t.equal(r.headers['anthropic-version'], '2023-06-01');
  t.notOk('authorization' in r.headers);
  const body = JSON.parse(r.body.toString()) as Record<string, unknown>;
  t.same(body, {
    model: 'claude-x',
    max_tokens: DEFAULT_ANTHROPIC_MAX_TOKENS,
    messages: [
      { role: 'user', content: 'Hi there' },
      { role: 'assistant', content: 'Hello' },
      { role: 'user', content: 'More' },
    ],
    stream: true,
    system: 'Be brief.',
    stop_sequences: ['x', 'y'],
  });
  t.equal(
    (
      JSON.parse(
        buildAnthropicRequest(req({ max_completion_tokens: 5 }), { model: 'c', apiKey: undefined }).body.toString(),
      ) as { max_tokens: number }
    ).max_tokens,
    5,
  );
  // upstream.defaultMaxTokens: the version's default when the client sends none; a client's own still wins.
  const maxTokens = (extra: Partial<ChatRequest>): unknown =>
    (
      JSON.parse(
        buildAnthropicRequest(req(extra), { model: 'c', apiKey: undefined, defaultMaxTokens: 64_000 }).body.toString(),
      ) as { max_tokens: unknown }
    ).max_tokens;
  t.equal(maxTokens({}), 64_000);
  t.equal(maxTokens({ max_tokens: 10 }), 10);
  t.equal(maxTokens({ max_completion_tokens: 7 }), 7);
  t.equal(maxTokens({ max_tokens: 10, max_completion_tokens: 7 }), 7, 'max_completion_tokens, the newer name, wins');
  t.throws(
    () =>
      buildAnthropicRequest(req({ messages: [{ role: 'system', content: 'only' }] }), {
        model: 'c',
        apiKey: undefined,
      }),
    { code: 'invalid_request', param: 'messages' },
  );
});

t.test('converted chunks name the model the upstream says answered, as OpenAI names its snapshot', async (t) => {
  const anthropic = run(convertAnthropicEvent, [
    ['message_start', '{"type":"message_start","message":{"id":"msg_1","model":"claude-sonnet-4-20250514"}}'],
    ['content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"a"}}'],
    ['message_stop', '{"type":"message_stop"}'],
  ]);
  t.same(new Set(anthropic.chunks.map((c) => c.model)), new Set(['claude-sonnet-4-20250514']));
  const ollama = run(convertOllamaLine, [
    ['', '{"model":"llama3.2:latest","message":{"role":"assistant","content":"a"},"done":true}'],
  ]);
  t.same(new Set(ollama.chunks.map((c) => c.model)), new Set(['llama3.2:latest']));
  const odd = run(convertAnthropicEvent, [
    ['message_start', '{"type":"message_start","message":{"id":"msg_1","model":"bad\\nname"}}'],
    ['content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":"a"}}'],
  ]);
  t.equal(odd.chunks[0]!.model, 'm', 'a name with a control byte is not taken');
});

t.test('anthropic events → chunks', async (t) => {
  const { chunks, s } = run(convertAnthropicEvent, [
    [
      'message_start',
      '{"type":"message_start","message":{"id":"msg_1","usage":{"input_tokens":11,"output_tokens":1}}}',
    ],
    ['content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":""}}'],
    ['ping', '{"type":"ping"}'],
    ['content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"日本"}}'],
    [
      'content_block_delta',
      '{"type":"content_block_delta","index":0,"delta":{"type":"thinking_delta","thinking":"hmm"}}',
    ],
    ['content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"語"}}'],
    ['content_block_stop', '{"type":"content_block_stop","index":0}'],
    ['message_delta', '{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":2}}'],
    ['message_stop', '{"type":"message_stop"}'],
  ]);
  t.same(
    chunks.map((c) => c.choices[0]?.delta ?? 'usage'),
    [{ role: 'assistant', content: '' }, { content: '日本' }, { content: '語' }, {}, 'usage'],
  );
  t.equal(chunks[3]!.choices[0]!.finish_reason, 'length');
  t.same(chunks[4]!.usage, { prompt_tokens: 11, completion_tokens: 2, total_tokens: 13 });
  t.equal(s.isDone, true);
  t.throws(
    () =>
      run(convertAnthropicEvent, [
        ['error', '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}'],
      ]),
    { code: 'upstream_status', status: 502, message: /Overloaded/ },
    'as the same error answered as HTTP 529',
  );
  t.throws(
    () =>
      run(convertAnthropicEvent, [['error', '{"type":"error","error":{"type":"rate_limit_error","message":"Slow"}}']]),
    { code: 'upstream_status', status: 429 },
  );
  const cached = run(convertAnthropicEvent, [
    [
      'message_start',
      '{"type":"message_start","message":{"usage":{"input_tokens":5,"cache_creation_input_tokens":100,' +
        '"cache_read_input_tokens":2000,"output_tokens":1}}}',
    ],
    ['message_delta', '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":3}}'],
    ['message_stop', '{"type":"message_stop"}'],
  ]);
  t.same(
    cached.chunks.at(-1)!.usage,
    { prompt_tokens: 2105, completion_tokens: 3, total_tokens: 2108, prompt_tokens_details: { cached_tokens: 2000 } },
    'prompt tokens written to and read from the prompt cache count, as OpenAI counts cached tokens; those read are its cached_tokens',
  );
  t.throws(() => run(convertAnthropicEvent, [['content_block_delta', '{"type":']]), {
    code: 'upstream_protocol_error',
  });
  // A text block's first text is a text fragment too: one of another type was left out, as a text_delta's was.
  t.throws(
    () =>
      run(convertAnthropicEvent, [
        [
          'content_block_start',
          '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":["hi"]}}',
        ],
      ]),
    { code: 'upstream_protocol_error', message: "the upstream sent a text block's text as an array, not a string" },
  );
  t.same(
    run(convertAnthropicEvent, [
      ['content_block_start', '{"type":"content_block_start","index":0,"content_block":{"type":"text","text":null}}'],
    ]).chunks,
    [],
    "a text block's null text is none, and no error",
  );
  for (const [reason, expected] of [
    ['end_turn', 'stop'],
    ['max_tokens', 'length'],
    ['stop_sequence', 'stop'],
    ['tool_use', 'tool_calls'],
    ['refusal', 'content_filter'],
    ['model_context_window_exceeded', 'length'],
    ['pause_turn', 'stop'],
  ] as const) {
    t.equal(mapAnthropicStopReason(reason), expected, `stop_reason ${reason}`);
  }
});

t.test("anthropic usage: message_delta's counts are the final ones; without them, message_start's stand", async (t) => {
  // message_delta's usage is cumulative, and its input_tokens may differ from message_start's (server tools).
  const later = run(convertAnthropicEvent, [
    ['message_start', '{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}'],
    [
      'message_delta',
      '{"type":"message_delta","delta":{"stop_reason":"end_turn"},' +
        '"usage":{"input_tokens":40,"cache_read_input_tokens":8,"output_tokens":6}}',
    ],
    ['message_stop', '{"type":"message_stop"}'],
  ]);
  t.same(later.chunks.at(-1)!.usage, {
    prompt_tokens: 48,
    completion_tokens: 6,
    total_tokens: 54,
    prompt_tokens_details: { cached_tokens: 8 },
  });
  const startOnly = run(convertAnthropicEvent, [
    ['message_start', '{"type":"message_start","message":{"usage":{"input_tokens":7,"output_tokens":3}}}'],
    ['message_delta', '{"type":"message_delta","delta":{"stop_reason":"end_turn"}}'],
    ['message_stop', '{"type":"message_stop"}'],
  ]);
  t.same(startOnly.chunks.at(-1)!.usage, { prompt_tokens: 7, completion_tokens: 3, total_tokens: 10 });
  // A count message_delta leaves out keeps message_start's (a probe: a proxy repeating only input_tokens there dropped
  // the cache's 5 written and 8 read from prompt_tokens).
  const partial = run(convertAnthropicEvent, [
    [
      'message_start',
      '{"type":"message_start","message":{"usage":{"input_tokens":3,"cache_creation_input_tokens":5,' +
        '"cache_read_input_tokens":8,"output_tokens":1}}}',
    ],
    [
      'message_delta',
      '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"input_tokens":4,"output_tokens":6}}',
    ],
    ['message_stop', '{"type":"message_stop"}'],
  ]);
  t.same(partial.chunks.at(-1)!.usage, {
    prompt_tokens: 17,
    completion_tokens: 6,
    total_tokens: 23,
    prompt_tokens_details: { cached_tokens: 8 },
  });
  const cacheOnly = run(convertAnthropicEvent, [
    ['message_start', '{"type":"message_start","message":{"usage":{"input_tokens":3,"output_tokens":1}}}'],
    [
      'message_delta',
      '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"cache_read_input_tokens":9}}',
    ],
    ['message_stop', '{"type":"message_stop"}'],
  ]);
  t.same(
    cacheOnly.chunks.at(-1)!.usage,
    { prompt_tokens: 12, completion_tokens: 1, total_tokens: 13, prompt_tokens_details: { cached_tokens: 9 } },
    'a cache count alone updates that count',
  );
});

t.test('anthropic: a message_stop with no stop_reason before it finishes as a plain stop', async (t) => {
  const { chunks } = run(convertAnthropicEvent, [
    ['message_start', '{"type":"message_start","message":{"usage":{"input_tokens":2,"output_tokens":1}}}'],
    ['content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}'],
    ['message_stop', '{"type":"message_stop"}'],
  ]);
  t.same(
    chunks.map((c) => (c.choices.length === 0 ? 'usage' : c.choices[0]!.finish_reason)),
    [null, null, 'stop', 'usage'],
  );
});

t.test('anthropic: a stream cut after its stop_reason, before message_stop, is whole; before it, cut', async (t) => {
  const events: Array<[string, string]> = [
    ['message_start', '{"type":"message_start","message":{"usage":{"input_tokens":4,"output_tokens":1}}}'],
    ['content_block_delta', '{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"Hi"}}'],
  ];
  const cut = run(convertAnthropicEvent, events);
  t.throws(() => anthropicAdapter.convertEnd!(cut.s, { chunk: () => undefined }), {
    code: 'upstream_protocol_error',
    message: 'the upstream response ended before its final event',
  });
  const stopped = run(convertAnthropicEvent, [
    ...events,
    ['message_delta', '{"type":"message_delta","delta":{"stop_reason":"end_turn"},"usage":{"output_tokens":2}}'],
  ]);
  anthropicAdapter.convertEnd!(stopped.s, { chunk: (c) => stopped.chunks.push(c) });
  t.equal(stopped.s.isDone, true);
  t.equal(stopped.chunks.at(-2)!.choices[0]!.finish_reason, 'stop');
  t.same(stopped.chunks.at(-1)!.usage, { prompt_tokens: 4, completion_tokens: 2, total_tokens: 6 }, 'then usage');
});

t.test('token counts: non-negative integers up to a billion a call; anything else from an upstream is 0', async (t) => {
  for (const good of [0, 1, 128_000, 1_000_000_000]) t.equal(tokenCount(good), good);
  for (const bad of [1e300, -5, 2.5, '7', null, NaN, Infinity, 1_000_000_001]) t.equal(tokenCount(bad), 0, String(bad));
  const huge = run(convertOllamaLine, [
    ['', '{"message":{"role":"assistant","content":""},"done":true,"prompt_eval_count":1e300,"eval_count":-3}'],
  ]);
  t.same(huge.chunks.at(-1)!.usage, { prompt_tokens: 0, completion_tokens: 0, total_tokens: 0 }, 'what a client gets');
});

t.test('an error preview never ends in half an emoji (a lone surrogate strict JSON parsers refuse)', async (t) => {
  t.equal(upstreamErrorMessage(`${'x'.repeat(79)}😀tail`), `${'x'.repeat(79)}…`);
  t.equal(upstreamErrorMessage(`${'x'.repeat(78)}😀tail`), `${'x'.repeat(78)}😀…`);
});

t.test('upstream error bodies of every format → their message', async (t) => {
  const cases: Array<[string, string]> = [
    ['{"error":{"message":"Rate limit reached","type":"requests"}}', 'Rate limit reached'],
    ['{"type":"error","error":{"type":"rate_limit_error","message":"Slow down"}}', 'Slow down'],
    ['{"error":"model \\"x\\" not found"}', 'model "x" not found'],
    // llama.cpp's in-stream error (an `error:` line), FastAPI's (vLLM) and Mistral's validation errors.
    [
      '{"code":400,"message":"the request exceeds the available context size","type":"exceed_context_size_error"}',
      'the request exceeds the available context size',
    ],
    ['{"detail":"Not Found"}', 'Not Found'],
    [
      '{"detail":[{"type":"missing","loc":["body","messages"],"msg":"Field required"},{"loc":["body","n"],"msg":"must be ≥ 1"}]}',
      'body.messages: Field required; body.n: must be ≥ 1',
    ],
    [
      '{"object":"error","message":{"detail":[{"type":"extra_forbidden","loc":["body","foo"],"msg":"Extra inputs are not permitted"}]},"type":"invalid_request_message_error"}',
      'body.foo: Extra inputs are not permitted',
    ],
    ['{"error":{"type":"server_error"}}', '{"error":{"type":"server_error"}}'],
    ['Bad Gateway', 'Bad Gateway'],
    ['', 'the upstream answered with an error status'],
  ];
  for (const [body, message] of cases) t.equal(upstreamErrorMessage(body), message, body);
});
