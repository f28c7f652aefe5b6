import t from 'tap';
import { CHAT_REQUEST_LIMITS, parseChatRequest } from '../../../worker/request/chat-request.js';

// Request validation (issue 3 part 1, issue 9 part 5): every bad body is a 400
// invalid_request naming the field or the limit; a good one comes back as the
// very object JSON.parse made, unknown fields included.

const ok = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };
const parse = (value: unknown): ReturnType<typeof parseChatRequest> =>
  parseChatRequest(Buffer.from(JSON.stringify(value)));

t.test('valid bodies', async (t) => {
  t.equal(parse(ok).model, 'm');
  const full = parse({
    ...ok,
    stream: true,
    stream_options: { include_usage: true },
    max_tokens: 5,
    stop: ['x'],
    n: 1,
    tools: [],
    temperature: null,
  });
  t.equal(full.stream_options?.include_usage, true);
  t.same(full['tools'], [], 'fields kept for an OpenAI upstream');
  const other = parse({
    ...ok,
    tools: [{ type: 'custom', custom: { name: 'x' } }],
    tool_choice: { type: 'allowed_tools', allowed_tools: {} },
    response_format: { type: 'grammar' },
    n: 3,
    seed: 1,
  });
  t.same(
    other['tools'],
    [{ type: 'custom', custom: { name: 'x' } }],
    'tool and format types graygate does not convert pass for an OpenAI upstream',
  );
  t.equal(other.n, 3, 'n > 1: the upstream format decides');
  const legacy = parse({ ...ok, messages: [{ role: 'function', name: 'f', content: '1' }] });
  t.equal(legacy.messages[0]!.role, 'function', "legacy function calling's result message");
  const parts = parse({
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'a' },
          { type: 'image_url', image_url: { url: 'x' } },
        ],
        name: 'n',
      },
    ],
  });
  t.equal(parts.messages[0]?.name, 'n');
});

const BAD: Array<[string, string, RegExp]> = [
  ['not JSON', '{"model":', /not valid JSON/],
  ['an array', '[]', /must be a JSON object/],
  ['missing messages', '{"model":"m"}', /^messages: /],
  ['empty messages', '{"model":"m","messages":[]}', /messages: must contain at least one message/],
  ['a message that is not an object', '{"messages":["hi"]}', /messages\.0: must be an object/],
  ['bad role', '{"messages":[{"role":"robot","content":"x"}]}', /messages\.0\.role/],
  ['content number', '{"messages":[{"role":"user","content":5}]}', /messages\.0\.content/],
  ['a content part without type', '{"messages":[{"role":"user","content":[{"text":"x"}]}]}', /messages\.0\.content/],
  ['name number', '{"messages":[{"role":"user","content":"x","name":1}]}', /messages\.0\.name: must be a string/],
  ['empty model', '{"model":"","messages":[{"role":"user","content":"x"}]}', /model: must not be empty/],
  ['stream string', '{"messages":[{"role":"user","content":"x"}],"stream":"yes"}', /stream: must be a boolean/],
  [
    'stream_options string',
    '{"messages":[{"role":"user","content":"x"}],"stream_options":"x"}',
    /stream_options: must be an object/,
  ],
  [
    'include_usage string',
    '{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":1}}',
    /stream_options\.include_usage: must be a boolean/,
  ],
  [
    'stream_options without a stream (OpenAI refuses it too)',
    '{"messages":[{"role":"user","content":"x"}],"stream_options":{"include_usage":true}}',
    /stream_options: only allowed when stream is true/,
  ],
  ['n = 0', '{"messages":[{"role":"user","content":"x"}],"n":0}', /n: must be ≥ 1/],
  [
    'tools not an array',
    '{"messages":[{"role":"user","content":"x"}],"tools":{}}',
    /^tools: must be an array of tools$/,
  ],
  [
    'a function tool without a name',
    '{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{}}]}',
    /^tools\.0\.function\.name: must be a string$/,
  ],
  [
    'tool parameters not an object',
    '{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"function","function":{"name":"f","parameters":[]}}]}',
    /^tools\.0\.function\.parameters: must be an object$/,
  ],
  [
    'tool_choice a word it is not',
    '{"messages":[{"role":"user","content":"x"}],"tool_choice":"always"}',
    /^tool_choice: must be "none", "auto", "required"/,
  ],
  [
    'tool_choice function without name',
    '{"messages":[{"role":"user","content":"x"}],"tool_choice":{"type":"function","function":{}}}',
    /^tool_choice\.function\.name: /,
  ],
  [
    'parallel_tool_calls string',
    '{"messages":[{"role":"user","content":"x"}],"parallel_tool_calls":"no"}',
    /^parallel_tool_calls: must be a boolean$/,
  ],
  [
    'json_schema without name',
    '{"messages":[{"role":"user","content":"x"}],"response_format":{"type":"json_schema","json_schema":{"schema":{}}}}',
    /^response_format\.json_schema\.name: /,
  ],
  [
    'response_format without type',
    '{"messages":[{"role":"user","content":"x"}],"response_format":{}}',
    /^response_format: must be an object with a type$/,
  ],
  [
    'tool_calls on a user message',
    '{"messages":[{"role":"user","content":"x","tool_calls":[]}]}',
    /^messages\.0\.tool_calls: only assistant messages carry tool calls$/,
  ],
  [
    'a tool call without arguments',
    '{"messages":[{"role":"assistant","tool_calls":[{"id":"c","type":"function","function":{"name":"f"}}]}]}',
    /^messages\.0\.tool_calls\.0\.function\.arguments: is required$/,
  ],
  [
    'a tool call without id',
    '{"messages":[{"role":"assistant","tool_calls":[{"type":"function","function":{"name":"f","arguments":"{}"}}]}]}',
    /^messages\.0\.tool_calls\.0\.id: is required$/,
  ],
  [
    'a tool message without tool_call_id',
    '{"messages":[{"role":"tool","content":"r"}]}',
    /^messages\.0\.tool_call_id: must be a string$/,
  ],
  ['max_tokens 0', '{"messages":[{"role":"user","content":"x"}],"max_tokens":0}', /max_tokens: must be ≥ 1/],
  [
    'max_completion_tokens 1.5',
    '{"messages":[{"role":"user","content":"x"}],"max_completion_tokens":1.5}',
    /max_completion_tokens: must be an integer/,
  ],
  [
    'temperature 1e400',
    '{"messages":[{"role":"user","content":"x"}],"temperature":1e400}',
    /temperature: must be a number/,
  ],
  [
    'stop numbers',
    '{"messages":[{"role":"user","content":"x"}],"stop":[1]}',
    /stop: must be a string or an array of strings/,
  ],
  // Typed as OpenAI types them: a converter used to drop a string silently (top_k on Anthropic, logprobs on
  // Ollama) or send it on as it was (seed, the penalties and top_k into Ollama's options).
  ...(
    [
      ['top_k', '"5"', /^top_k: must be an integer$/],
      ['seed', '"abc"', /^seed: must be an integer$/],
      ['seed', '1.5', /^seed: must be an integer$/],
      ['frequency_penalty', '"high"', /^frequency_penalty: must be a number$/],
      ['presence_penalty', 'true', /^presence_penalty: must be a number$/],
      ['logprobs', '"true"', /^logprobs: must be a boolean$/],
      ['logprobs', '1', /^logprobs: must be a boolean$/],
      ['top_logprobs', '-1', /^top_logprobs: must be ≥ 0$/],
      ['top_logprobs', '"2"', /^top_logprobs: must be an integer$/],
    ] as const
  ).map(([field, value, message]): [string, string, RegExp] => [
    `${field} ${value}`,
    `{"messages":[{"role":"user","content":"x"}],"${field}":${value}}`,
    message,
  ]),
  [
    'every problem at once',
    '{"model":1,"messages":[],"stream":1}',
    /^model: must be a string; messages: must contain at least one message; stream: must be a boolean$/,
  ],
];

for (const [name, body, message] of BAD) {
  t.test(name, async (t) => {
    t.throws(() => parseChatRequest(Buffer.from(body)), { code: 'invalid_request', status: 400, message });
    // The first problem's field is the body's `param` (OpenAI's SDKs read `err.param`), as its message starts.
    let thrown: unknown;
    try {
      parseChatRequest(Buffer.from(body));
    } catch (err) {
      thrown = err;
    }
    const { message: said, param } = thrown as { message: string; param?: string };
    // (a body that is not JSON, or not an object, names no field: no param)
    t.equal(param, /^([\w.]+): /.exec(said)?.[1], "param names the first problem's field");
  });
}

t.test(
  'a body that is not UTF-8, or starts with a byte-order mark, is a 400 saying so (it was U+FFFD upstream)',
  async (t) => {
    const chat = (text: string): Buffer => Buffer.from(`{"messages":[{"role":"user","content":"${text}"}]}`);
    t.throws(() => parseChatRequest(Buffer.concat([Buffer.from([0xef, 0xbb, 0xbf]), chat('x')])), {
      code: 'invalid_request',
      message: /^the request body starts with a byte-order mark \(U\+FEFF\)/,
    });
    const latin1 = Buffer.from('{"messages":[{"role":"user","content":"café"}]}', 'latin1');
    for (const body of [latin1, Buffer.concat([chat('a').subarray(0, 40), Buffer.from([0x80, 0xc0, 0xaf]), chat('b')])])
      t.throws(() => parseChatRequest(body), {
        code: 'invalid_request',
        message: 'the request body is not valid UTF-8, which JSON must be (RFC 8259 §8.1)',
      });
    t.equal(parseChatRequest(chat('café 😀')).messages[0]!.content, 'café 😀', 'UTF-8 is taken');
    t.equal(parseChatRequest(chat('\\ud800')).messages[0]!.content, '\ud800', 'an escaped lone surrogate is JSON');
  },
);

t.test('many problems: the first ten, then a count', async (t) => {
  const messages = Array.from({ length: 25 }, () => ({ role: 'robot' }));
  t.throws(() => parse({ messages }), { message: /messages\.9\.role: [^;]+; and 15 more$/ });
});

t.test('limits: deep and wide bodies are 400s naming the limit', async (t) => {
  const deep = `{"messages":[{"role":"user","content":"x"}],"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}`;
  t.throws(() => parseChatRequest(Buffer.from(deep)), {
    code: 'invalid_request',
    message: /nested more than 64 levels deep \(limit 64\)/,
  });
  const keys = Array.from({ length: CHAT_REQUEST_LIMITS.maxMembers + 1 }, (_, i) => `"k${i}":1`).join(',');
  t.throws(() => parseChatRequest(Buffer.from(`{"messages":[{"role":"user","content":"x"}],"metadata":{${keys}}}`)), {
    message: /more than 10000 members \(limit 10000\)/,
  });
  const history = Array.from({ length: 5000 }, (_, i) => ({
    role: i % 2 === 0 ? 'user' : 'assistant',
    content: `turn ${i}`,
    name: 'n',
  }));
  t.equal(parse({ messages: history }).messages.length, 5000, 'a 5 000-message history fits');
});
