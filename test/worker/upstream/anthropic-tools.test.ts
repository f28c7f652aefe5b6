import t from 'tap';
import { createHash } from 'node:crypto';
import {
  buildAnthropicRequest,
  convertAnthropicEvent,
  MAX_OPEN_TOOL_BLOCKS,
} from '../../../worker/upstream/anthropic.js';
import { JSON_ANSWER_TOOL } from '../../../worker/upstream/anthropic-tools.js';
import { withoutLoneSurrogates } from '../../../worker/upstream/anthropic-request.js';
import { createStreamState, type ChatCompletionChunk } from '../../../worker/types.js';
import type { ChatRequest } from '../../../worker/request/chat-request.js';

// SPEC §12, issue 12 part 1: the Anthropic converters alone, plain data in
// and out, as case tables.

const NO_KEY = { model: undefined, apiKey: undefined };
const user = { role: 'user' as const, content: 'hi' };
const body = (req: Partial<ChatRequest>): Record<string, unknown> =>
  JSON.parse(buildAnthropicRequest({ model: 'm', messages: [user], ...req }, NO_KEY).body.toString()) as Record<
    string,
    unknown
  >;
const params = { type: 'object', properties: { city: { type: 'string' } } };
/** A PDF's first bytes (`%PDF-1.4`), as the OpenAI SDK sends a file: a base64 data: URL. */
const PDF = 'data:application/pdf;base64,JVBERi0xLjQK';
const WEATHER = { type: 'function', function: { name: 'get_weather', description: 'd', parameters: params } };
const TOOL = { name: 'get_weather', input_schema: params, description: 'd' };
const ANSWER_TOOL = {
  name: JSON_ANSWER_TOOL,
  description: 'Give your whole answer as the input of this tool: one JSON object.',
  input_schema: { type: 'object', additionalProperties: true },
};
const sha256 = (text: string): string => createHash('sha256').update(text).digest('hex');
const SCHEMA = { type: 'object', properties: { a: { type: 'string' } }, additionalProperties: false };
const BOUNDED = { type: 'object', properties: { age: { type: 'integer', minimum: 0 } } };

t.test('a lone surrogate is sent as U+FFFD, which Anthropic takes (it refuses the body for one)', async (t) => {
  const sent = (content: string): string =>
    buildAnthropicRequest({ model: 'm', messages: [{ role: 'user', content }] }, NO_KEY).body.toString();
  t.match(sent('a\ud800b\udc00c'), /"a\\ufffdb\\ufffdc"/, 'a high and a low surrogate alone');
  t.match(sent('\ud800'), /"\\ufffd"/, 'one alone');
  t.match(sent('😀 \ud83d\ude00'), /"😀 😀"/, 'pairs are characters');
  t.match(sent('\\ud800 \\\ud800'), /"\\\\ud800 \\\\\\ufffd"/, 'a backslash before "ud800" is text');
  t.equal(withoutLoneSurrogates('{"a":"b"}'), '{"a":"b"}');
  // Against the language's own: random strings of surrogates, backslashes, quotes and `ud8…` text.
  let seed = 3;
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pieces = ['\ud800', '\udfff', '😀', '\\', '\\\\', '"', 'u', 'd8', 'ud800', '\\ud800', 'x', '\n'];
  const differing: string[] = [];
  for (let n = 0; n < 5000; n++) {
    const text = Array.from(
      { length: Math.floor(random() * 8) },
      () => pieces[Math.floor(random() * pieces.length)],
    ).join('');
    const wellFormed = (text as unknown as { toWellFormed(): string }).toWellFormed();
    const sent = JSON.parse(withoutLoneSurrogates(JSON.stringify({ [text]: text }))) as Record<string, string>;
    if (sent[wellFormed] !== wellFormed) differing.push(text);
  }
  t.same(differing, [], 'as toWellFormed() on every string, keys included');
});

t.test('tools, tool_choice, parallel_tool_calls and JSON mode → Anthropic', async (t) => {
  const cases: Array<[string, Partial<ChatRequest>, Record<string, unknown>]> = [
    ['tools → input_schema, auto', { tools: [WEATHER] }, { tools: [TOOL], tool_choice: { type: 'auto' } }],
    [
      'a tool without parameters',
      { tools: [{ type: 'function', function: { name: 'now' } }] },
      { tools: [{ name: 'now', input_schema: { type: 'object', properties: {} } }] },
    ],
    [
      'parameters without a type ({} included) are an object of those properties, as OpenAI reads them',
      {
        tools: [
          { type: 'function', function: { name: 'now', parameters: {} } },
          { type: 'function', function: { name: 'f', parameters: { properties: { a: { type: 'string' } } } } },
        ],
      },
      {
        tools: [
          { name: 'now', input_schema: { type: 'object' } },
          { name: 'f', input_schema: { type: 'object', properties: { a: { type: 'string' } } } },
        ],
      },
    ],
    [
      'strict is honoured',
      { tools: [{ type: 'function', function: { name: 'f', parameters: params, strict: true } }] },
      { tools: [{ name: 'f', input_schema: params, strict: true }] },
    ],
    ['none', { tools: [WEATHER], tool_choice: 'none' }, { tools: [TOOL], tool_choice: { type: 'none' } }],
    ['required → any', { tools: [WEATHER], tool_choice: 'required' }, { tool_choice: { type: 'any' } }],
    [
      'named → tool',
      { tools: [WEATHER], tool_choice: { type: 'function', function: { name: 'get_weather' } } },
      { tool_choice: { type: 'tool', name: 'get_weather' } },
    ],
    [
      'parallel_tool_calls false',
      { tools: [WEATHER], parallel_tool_calls: false },
      { tool_choice: { type: 'auto', disable_parallel_tool_use: true } },
    ],
    [
      'parallel_tool_calls false with required',
      { tools: [WEATHER], tool_choice: 'required', parallel_tool_calls: false },
      { tool_choice: { type: 'any', disable_parallel_tool_use: true } },
    ],
    [
      'json_schema with a description: it becomes the schema’s',
      {
        response_format: {
          type: 'json_schema',
          json_schema: { name: 'x', description: 'A pair', schema: SCHEMA, strict: true },
        },
      },
      { output_config: { format: { type: 'json_schema', schema: { ...SCHEMA, description: 'A pair' } } } },
    ],
    [
      'json_schema, strict → output_config',
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: SCHEMA, strict: true } } },
      { output_config: { format: { type: 'json_schema', schema: SCHEMA } } },
    ],
    [
      'json_schema not strict → the forced answer tool, the schema its input’s (bounds Anthropic’s structured outputs refuse)',
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: BOUNDED, strict: false } } },
      {
        tools: [{ ...ANSWER_TOOL, input_schema: BOUNDED }],
        tool_choice: { type: 'tool', name: JSON_ANSWER_TOOL, disable_parallel_tool_use: true },
      },
    ],
    [
      'json_schema not strict with a description and tools → the answer tool among them, any',
      {
        tools: [WEATHER],
        response_format: { type: 'json_schema', json_schema: { name: 'x', description: 'A pair', schema: SCHEMA } },
      },
      {
        tools: [TOOL, { ...ANSWER_TOOL, input_schema: { ...SCHEMA, description: 'A pair' } }],
        tool_choice: { type: 'any' },
      },
    ],
    [
      'json_schema not strict of something other than an object → output_config (a tool’s input is an object)',
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: { type: 'array' } } } },
      { output_config: { format: { type: 'json_schema', schema: { type: 'array' } } } },
    ],
    [
      'json_object → the forced answer tool',
      { response_format: { type: 'json_object' } },
      { tools: [ANSWER_TOOL], tool_choice: { type: 'tool', name: JSON_ANSWER_TOOL, disable_parallel_tool_use: true } },
    ],
    [
      'json_object with tools → any',
      { tools: [WEATHER], response_format: { type: 'json_object' } },
      { tools: [TOOL, ANSWER_TOOL], tool_choice: { type: 'any' } },
    ],
    [
      'json_object with tools and none → the answer tool forced',
      { tools: [WEATHER], tool_choice: 'none', response_format: { type: 'json_object' } },
      {
        tools: [TOOL, ANSWER_TOOL],
        tool_choice: { type: 'tool', name: JSON_ANSWER_TOOL, disable_parallel_tool_use: true },
      },
    ],
    [
      'json_object with a forced tool: the forced call is the answer',
      { tools: [WEATHER], tool_choice: 'required', response_format: { type: 'json_object' } },
      { tools: [TOOL], tool_choice: { type: 'any' } },
    ],
    // Anthropic refuses an email address or over 256 characters there: an opaque id, the same for the same user.
    ['user → metadata.user_id, hashed', { user: 'alice' }, { metadata: { user_id: sha256('alice') } }],
    [
      'an email address is sent hashed',
      { user: 'alice@example.com' },
      { metadata: { user_id: sha256('alice@example.com') } },
    ],
    ['safety_identifier wins', { user: 'alice', safety_identifier: 'sid' }, { metadata: { user_id: sha256('sid') } }],
    ['top_k', { top_k: 5, temperature: 1 }, { top_k: 5, temperature: 1 }],
  ];
  for (const [name, req, expected] of cases) t.match(body(req), expected, name);
  const plain = body({ tool_choice: 'auto', response_format: { type: 'text' } });
  t.notOk(
    'tools' in plain || 'tool_choice' in plain || 'output_config' in plain,
    'nothing when there is nothing to say',
  );
  t.same((body({ response_format: { type: 'json_object' } })['tools'] as unknown[]).length, 1);
});

t.test('json_schema not strict, its root without a type but with properties: the answer tool, an object', async (t) => {
  // OpenAI reads such a schema as an object's, as it does a tool's parameters without a type; structured outputs would
  // refuse its bounds and its objects without `additionalProperties: false`, and models before Claude 4.5 refuse them.
  const untyped = { properties: { age: { type: 'integer', minimum: 0 } }, required: ['age'] };
  const sent = body({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: untyped } } });
  t.same(sent['tools'], [{ ...ANSWER_TOOL, input_schema: { type: 'object', ...untyped } }]);
  t.same(sent['tool_choice'], { type: 'tool', name: JSON_ANSWER_TOOL, disable_parallel_tool_use: true });
  t.equal(sent['output_config'], undefined, 'not structured outputs');
  const ref = { $ref: '#/$defs/A', $defs: { A: SCHEMA } };
  t.same(
    body({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema: ref } } })['output_config'],
    { format: { type: 'json_schema', schema: ref } },
    'a $ref at the root is not read as an object: structured outputs, as before',
  );
});

t.test('json_schema not strict with anyOf, oneOf or allOf at its root: structured outputs, as before', async (t) => {
  // A tool's input_schema refuses them there (Anthropic's 400 "input_schema does not support oneOf, allOf, or anyOf at
  // the top level"): as the answer tool's input, every such request failed.
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    const schema = { type: 'object', properties: { a: { type: 'string' } }, [key]: [{ required: ['a'] }] };
    const sent = body({ response_format: { type: 'json_schema', json_schema: { name: 'x', schema } } });
    t.same(sent['output_config'], { format: { type: 'json_schema', schema } }, key);
    t.equal(sent['tools'], undefined, `${key}: no answer tool`);
  }
});

t.test('a history of tool calls with no tools defined: its tools are sent, none callable', async (t) => {
  // OpenAI takes a last call without tools after the results (to sum them up); Anthropic refuses one whose messages
  // hold tool_use or tool_result blocks unless it defines tools.
  const history: ChatRequest['messages'] = [
    user,
    {
      role: 'assistant',
      content: null,
      tool_calls: [
        { id: 'toolu_1', type: 'function', function: { name: 'get_weather', arguments: '{"city":"P"}' } },
        { id: 'toolu_2', type: 'function', function: { name: 'now', arguments: '' } },
      ],
    },
    { role: 'tool', tool_call_id: 'toolu_1', content: 'sunny' },
    { role: 'tool', tool_call_id: 'toolu_2', content: 'noon' },
    {
      role: 'assistant',
      content: null,
      tool_calls: [{ id: 'toolu_3', type: 'function', function: { name: 'now', arguments: '{}' } }],
    },
    { role: 'tool', tool_call_id: 'toolu_3', content: 'one' },
  ];
  const sent = body({ messages: history });
  t.same(sent['tools'], [
    { name: 'get_weather', input_schema: { type: 'object' } },
    { name: 'now', input_schema: { type: 'object' } },
  ]);
  t.same(sent['tool_choice'], { type: 'none' }, 'the model calls none, as OpenAI without tools');
  t.match(
    body({
      messages: history,
      response_format: { type: 'json_schema', json_schema: { name: 'x', schema: SCHEMA, strict: true } },
    }),
    { tool_choice: { type: 'none' }, output_config: { format: { type: 'json_schema', schema: SCHEMA } } },
    'beside structured outputs',
  );
  t.match(
    body({ messages: history, tools: [WEATHER] }),
    { tools: [TOOL], tool_choice: { type: 'auto' } },
    "the client's own tools when it sends them",
  );
  t.match(
    body({ messages: history, response_format: { type: 'json_object' } }),
    { tools: [ANSWER_TOOL], tool_choice: { type: 'tool', name: JSON_ANSWER_TOOL } },
    'JSON mode defines its own tool',
  );
});

t.test('requests Anthropic cannot express are 400s naming the field', async (t) => {
  const cases: Array<[string, Partial<ChatRequest>, RegExp]> = [
    ['required without tools', { tool_choice: 'required' }, /^tool_choice: forcing a tool call needs tools/],
    ['another tool_choice type', { tools: [WEATHER], tool_choice: { type: 'allowed_tools' } }, /^tool_choice\.type: /],
    [
      'the reserved tool name',
      { tools: [{ type: 'function', function: { name: JSON_ANSWER_TOOL } }] },
      /^tools\.0\.function\.name: "respond_with_json" is reserved/,
    ],
    ['seed', { seed: 1 }, /^seed: is not supported by an anthropic upstream$/],
    ['n', { n: 3 }, /^n: an anthropic upstream cannot express it \(400 unless 1\)$/],
    ['temperature over 1', { temperature: 1.2 }, /^temperature: /],
    [
      'a gif with no media type',
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'data:;base64,AA' } }] }] },
      /image_url\.url: an anthropic upstream takes images of type/,
    ],
    [
      'an image URL that is neither http(s) nor a data: URL',
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'file:///etc/passwd' } }] }] },
      /^messages\.0\.content\.0\.image_url\.url: must be an http\(s\) URL or a base64 data: URL$/,
    ],
    [
      'a file part without its data',
      { messages: [{ role: 'user', content: [{ type: 'file', file: {} }] }] },
      /^messages\.0\.content\.0\.file\.file_data: must be a string$/,
    ],
    [
      'a file stored at OpenAI, by its id',
      { messages: [{ role: 'user', content: [{ type: 'file', file: { file_id: 'file-abc' } }] }] },
      /^messages\.0\.content\.0\.file\.file_id: names a file stored at OpenAI/,
    ],
    [
      'a file not a PDF',
      { messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'data:text/csv;base64,YSxi' } }] }] },
      /^messages\.0\.content\.0\.file\.file_data: an anthropic upstream takes files of type application\/pdf, not text\/csv$/,
    ],
    [
      'a file whose data is no data: URL',
      { messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: 'JVBERi0xLjQ=' } }] }] },
      /^messages\.0\.content\.0\.file\.file_data: must be a base64 data: URL/,
    ],
    [
      'a file in a system message',
      { messages: [{ role: 'system', content: [{ type: 'file', file: { file_data: PDF } }] }, user] },
      /^messages\.0\.content\.0: content parts of type "file"/,
    ],
    [
      'a key on a file',
      { messages: [{ role: 'user', content: [{ type: 'file', file: { file_data: PDF, pages: [1] } }] }] },
      /^messages\.0\.content\.0\.file\.pages: /,
    ],
    [
      'a refusal in history',
      { messages: [user, { role: 'assistant', content: 'no', refusal: 'no' }] },
      /^messages\.1\.refusal: /,
    ],
    [
      'tool-call arguments nested deeper than a request body may be (a 500 for 10 000 levels before)',
      {
        messages: [
          user,
          {
            role: 'assistant',
            tool_calls: [
              { id: 'c', type: 'function', function: { name: 'f', arguments: `${'['.repeat(65)}${']'.repeat(65)}` } },
            ],
          },
        ],
      },
      /^messages\.1\.tool_calls\.0\.function\.arguments: is nested more than 64 levels deep/,
    ],
    // Nested keys the converter does not read are named too, never dropped (cache_control: LiteLLM's extension).
    [
      'a key on a text part',
      {
        messages: [{ role: 'user', content: [{ type: 'text', text: 'doc', cache_control: { type: 'ephemeral' } }] }],
      },
      /^messages\.0\.content\.0\.cache_control: is not a field graygate can convert for an anthropic upstream$/,
    ],
    [
      'a key on an image part',
      { messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url: 'https://x/a.png', fmt: 1 } }] }] },
      /^messages\.0\.content\.0\.image_url\.fmt: /,
    ],
    [
      'a key on a tool',
      { tools: [{ ...WEATHER, cache_control: { type: 'ephemeral' } }] },
      /^tools\.0\.cache_control: is not a field graygate can convert for an anthropic upstream$/,
    ],
    [
      'a key on a function',
      { tools: [{ type: 'function', function: { name: 'f', ...{ examples: [] } } }] },
      /^tools\.0\.function\.examples: /,
    ],
    [
      'a key on a JSON schema format',
      { response_format: { type: 'json_schema', json_schema: { name: 'x', schema: SCHEMA, ...{ extra: 1 } } } },
      /^response_format\.json_schema\.extra: /,
    ],
  ];
  for (const [name, req, message] of cases) t.throws(() => body(req), { code: 'invalid_request', message }, name);
  // The field refused is the body's `param` too, where OpenAI's SDKs read it (`err.param`).
  const part = { type: 'text', text: 'doc', cache_control: { type: 'ephemeral' } };
  t.throws(() => body({ messages: [{ role: 'user', content: [part] }] }), {
    code: 'invalid_request',
    param: 'messages.0.content.0.cache_control',
  });
  t.throws(() => body({ temperature: 1.5 }), { code: 'invalid_request', param: 'temperature' });
  t.same(
    body({
      messages: [
        {
          role: 'user',
          content: [
            { type: 'text', text: 'a', cache_control: null },
            { type: 'image_url', image_url: { url: 'https://x/a.png', detail: 'low' } },
          ],
        },
      ],
    })['messages'],
    [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'a' },
          { type: 'image', source: { type: 'url', url: 'https://x/a.png' } },
        ],
      },
    ],
    'null counts as absent; detail is read (and not sent)',
  );
  t.same(
    body({ frequency_penalty: 0, presence_penalty: 0, logprobs: false, n: 1 })['model'],
    'm',
    'neutral values pass',
  );
});

t.test('messages: tool_use blocks, tool_result turns, images', async (t) => {
  const sent = body({
    messages: [
      { role: 'system', content: 'A' },
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Look ' },
          { type: 'text', text: 'here' },
          { type: 'image_url', image_url: { url: 'data:image/png;base64,iVBOR' } },
          { type: 'image_url', image_url: { url: 'https://x/y.jpg' } },
        ],
      },
      {
        role: 'assistant',
        content: 'Checking.',
        tool_calls: [
          { id: 'toolu_1', type: 'function', function: { name: 'look', arguments: '{"zoom":2}' } },
          { id: 'toolu_2', type: 'function', function: { name: 'now', arguments: '{}' } },
        ],
      },
      { role: 'tool', tool_call_id: 'toolu_1', content: 'a cat' },
      { role: 'tool', tool_call_id: 'toolu_2', content: [{ type: 'text', text: 'noon' }] },
      { role: 'user', content: 'And?' },
      { role: 'developer', content: 'B' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'toolu_3', type: 'function', function: { name: 'now', arguments: '' } }],
      },
      { role: 'tool', tool_call_id: 'toolu_3', content: 'one', name: 'now' },
    ],
  });
  t.equal(sent['system'], 'A\n\nB');
  t.same(sent['messages'], [
    {
      role: 'user',
      content: [
        { type: 'text', text: 'Look here' },
        { type: 'image', source: { type: 'base64', media_type: 'image/png', data: 'iVBOR' } },
        { type: 'image', source: { type: 'url', url: 'https://x/y.jpg' } },
      ],
    },
    {
      role: 'assistant',
      content: [
        { type: 'text', text: 'Checking.' },
        { type: 'tool_use', id: 'toolu_1', name: 'look', input: { zoom: 2 } },
        { type: 'tool_use', id: 'toolu_2', name: 'now', input: {} },
      ],
    },
    {
      role: 'user',
      content: [
        { type: 'tool_result', tool_use_id: 'toolu_1', content: 'a cat' },
        { type: 'tool_result', tool_use_id: 'toolu_2', content: 'noon' },
        { type: 'text', text: 'And?' },
      ],
    },
    { role: 'assistant', content: [{ type: 'tool_use', id: 'toolu_3', name: 'now', input: {} }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 'toolu_3', content: 'one' }] },
  ]);
});

t.test('an image is sent as the type its bytes are, as OpenAI reads it, whatever its data: URL says', async (t) => {
  const png = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a, 0, 0, 0, 13]).toString('base64');
  const jpeg = Buffer.from([0xff, 0xd8, 0xff, 0xe0, 0, 16]).toString('base64');
  const gif = Buffer.from('GIF89a\x01\x00\x01\x00', 'latin1').toString('base64');
  const webp = Buffer.from('RIFF\x24\x00\x00\x00WEBPVP8 ', 'latin1').toString('base64');
  const cases: Array<[string, string, string]> = [
    ['image/jpg, the common misnomer', `data:image/jpg;base64,${jpeg}`, 'image/jpeg'],
    ['a PNG labelled image/jpeg', `data:image/jpeg;base64,${png}`, 'image/png'],
    ['no media type', `data:;base64,${gif}`, 'image/gif'],
    ['application/octet-stream', `data:application/octet-stream;base64,${webp}`, 'image/webp'],
    ['bytes not read: image/jpg is image/jpeg', 'data:image/jpg;base64,AAAA', 'image/jpeg'],
    ['bytes not read: the label is kept', 'data:image/webp;base64,AAAA', 'image/webp'],
  ];
  for (const [name, url, mediaType] of cases) {
    const sent = body({ messages: [{ role: 'user', content: [{ type: 'image_url', image_url: { url } }] }] });
    const [message] = sent['messages'] as Array<{ content: Array<{ source: { media_type: string } }> }>;
    t.equal(message!.content[0]!.source.media_type, mediaType, name);
  }
});

t.test(
  'empty or blank text, an empty system and empty turns are not sent: Anthropic refuses them, OpenAI takes them',
  async (t) => {
    // graygate answers an empty end_turn or a refusal with `content: ""`; a client pushes that answer back.
    const sent = body({
      messages: [
        { role: 'system', content: '' },
        { role: 'user', content: 'Hi' },
        { role: 'assistant', content: '' },
        { role: 'assistant', content: ' \n' },
        { role: 'user', content: [{ type: 'text', text: '  ' }] },
        {
          role: 'user',
          content: [
            { type: 'text', text: '' },
            { type: 'image_url', image_url: { url: 'https://x/y.png' } },
          ],
        },
        { role: 'assistant', content: null },
        { role: 'user', content: '' },
        {
          role: 'assistant',
          content: 'Ok.',
          tool_calls: [{ id: 't1', type: 'function', function: { name: 'now', arguments: '{}' } }],
        },
        { role: 'tool', tool_call_id: 't1', content: 'noon' },
        { role: 'assistant', content: '' },
        {
          role: 'user',
          content: [
            { type: 'text', text: '' },
            { type: 'text', text: 'And?' },
          ],
        },
      ],
    });
    t.equal(sent['system'], undefined, 'no empty system');
    t.same(sent['messages'], [
      { role: 'user', content: 'Hi' },
      { role: 'user', content: [{ type: 'image', source: { type: 'url', url: 'https://x/y.png' } }] },
      {
        role: 'assistant',
        content: [
          { type: 'text', text: 'Ok.' },
          { type: 'tool_use', id: 't1', name: 'now', input: {} },
        ],
      },
      {
        role: 'user',
        content: [
          { type: 'tool_result', tool_use_id: 't1', content: 'noon' },
          { type: 'text', text: 'And?' },
        ],
      },
    ]);
  },
);

t.test('an empty tool result is sent without content: a tool that printed nothing', async (t) => {
  const call = { id: 't1', type: 'function', function: { name: 'now', arguments: '{}' } };
  const sent = body({
    messages: [
      user,
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: 't1', content: '' },
    ],
  });
  t.same((sent['messages'] as unknown[]).at(-1), {
    role: 'user',
    content: [{ type: 'tool_result', tool_use_id: 't1' }],
  });
});

t.test(
  'parallel_tool_calls: false is not put on tool_choice none, whose object Anthropic takes with type only',
  async (t) => {
    t.same(body({ tools: [WEATHER], tool_choice: 'none', parallel_tool_calls: false })['tool_choice'], {
      type: 'none',
    });
    t.same(body({ tools: [WEATHER], tool_choice: 'auto', parallel_tool_calls: false })['tool_choice'], {
      type: 'auto',
      disable_parallel_tool_use: true,
    });
  },
);

t.test('an assistant turn closes the tool results before it: a later user message is a turn of its own', async (t) => {
  const call = { id: 't1', type: 'function', function: { name: 'now', arguments: '{}' } };
  const sent = body({
    messages: [
      user,
      { role: 'assistant', content: null, tool_calls: [call] },
      { role: 'tool', tool_call_id: 't1', content: 'noon' },
      { role: 'assistant', content: 'It is noon.' },
      { role: 'user', content: 'Thanks' },
    ],
  });
  t.same(sent['messages'], [
    { role: 'user', content: 'hi' },
    { role: 'assistant', content: [{ type: 'tool_use', id: 't1', name: 'now', input: {} }] },
    { role: 'user', content: [{ type: 'tool_result', tool_use_id: 't1', content: 'noon' }] },
    { role: 'assistant', content: 'It is noon.' },
    { role: 'user', content: 'Thanks' },
  ]);
});

t.test('a conversation ending on the assistant is a prefill Anthropic takes, never one graygate makes', async (t) => {
  // Anthropic: "final assistant content cannot end with trailing whitespace".
  const prefill = body({ messages: [user, { role: 'assistant', content: 'Sure, here it is:\n ' }] });
  t.same(prefill['messages'], [user, { role: 'assistant', content: 'Sure, here it is:' }]);
  const parts = body({
    messages: [
      user,
      {
        role: 'assistant',
        content: [{ type: 'text', text: 'Step 1: ' }],
        tool_calls: undefined,
      },
    ],
  });
  t.same((parts['messages'] as unknown[]).at(-1), { role: 'assistant', content: 'Step 1:' });
  const earlier = body({
    messages: [user, { role: 'assistant', content: 'Hello! ' }, { role: 'user', content: 'More' }],
  });
  t.same((earlier['messages'] as unknown[])[1], { role: 'assistant', content: 'Hello! ' }, 'only the last turn');
  // An empty last user message left out would make the assistant's turn the last: refused instead.
  t.throws(() => body({ messages: [user, { role: 'assistant', content: 'Hello!' }, { role: 'user', content: '' }] }), {
    code: 'invalid_request',
    message: /^messages\.2\.content: an anthropic upstream takes no empty last user message/,
  });
  t.throws(
    () =>
      body({
        messages: [
          user,
          { role: 'assistant', content: 'Hello!' },
          { role: 'user', content: '' },
          { role: 'system', content: 'Be brief.' },
        ],
      }),
    { message: /^messages\.2\.content: an anthropic upstream takes no empty last user message/ },
    'a system message after it is not a turn',
  );
  t.same(
    body({ messages: [{ role: 'user', content: ' ' }, user] })['messages'],
    [user],
    'an empty user message elsewhere is still left out',
  );
});

t.test('what changes nothing is not sent: top_p 1, names, reasoning pushed back', async (t) => {
  // LlamaIndex sends top_p: 1 with every call; newer Claude models refuse top_p beside temperature.
  t.notOk('top_p' in body({ temperature: 0.1, top_p: 1 }));
  t.equal(body({ top_p: 0.9 })['top_p'], 0.9);
  const sent = body({
    messages: [
      { role: 'user', content: 'x', name: 'alice' },
      { role: 'assistant', content: 'y', name: 'model', reasoning: 'r', reasoning_content: 'r' },
      { role: 'user', content: 'z' },
    ],
  });
  t.same(sent['messages'], [
    { role: 'user', content: 'x' },
    { role: 'assistant', content: 'y' },
    { role: 'user', content: 'z' },
  ]);
});

t.test('stop: an empty or whitespace-only sequence is a 400 naming it (Anthropic refuses it)', async (t) => {
  t.same(body({ stop: ['END', '###'] })['stop_sequences'], ['END', '###']);
  t.same(body({ stop: 'END' })['stop_sequences'], ['END']);
  for (const [stop, path] of [
    ['\n', 'stop'],
    ['', 'stop'],
    [['END', ' \n'], 'stop.1'],
    [[''], 'stop.0'],
  ] as const) {
    t.throws(() => body({ stop: stop as string | string[] }), {
      code: 'invalid_request',
      message: `${path}: an anthropic upstream takes only stop sequences with non-whitespace text`,
    });
  }
});

function run(events: Array<Record<string, unknown>>): ChatCompletionChunk[] {
  const state = createStreamState({ id: 'chatcmpl-x', created: 1, model: 'm' });
  const chunks: ChatCompletionChunk[] = [];
  for (const e of events)
    convertAnthropicEvent(state, e['type'] as string, JSON.stringify(e), { chunk: (c) => chunks.push(c) });
  return chunks;
}

const start = { type: 'message_start', message: { usage: { input_tokens: 3, output_tokens: 1 } } };
const stop = (reason: string): Array<Record<string, unknown>> => [
  { type: 'message_delta', delta: { stop_reason: reason }, usage: { output_tokens: 9 } },
  { type: 'message_stop' },
];
const toolBlock = (index: number, id: string, name: string): Record<string, unknown> => ({
  type: 'content_block_start',
  index,
  content_block: { type: 'tool_use', id, name, input: {} },
});
const stopBlock = (index: number): Record<string, unknown> => ({ type: 'content_block_stop', index });
const json = (index: number, partial: string): Record<string, unknown> => ({
  type: 'content_block_delta',
  index,
  delta: { type: 'input_json_delta', partial_json: partial },
});

t.test('tool_use blocks → OpenAI fragments', async (t) => {
  const chunks = run([
    start,
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } },
    { type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'Sure.' } },
    { type: 'content_block_stop', index: 0 },
    toolBlock(1, 'toolu_a', 'get_weather'),
    json(1, ''),
    json(1, '{"city":'),
    toolBlock(2, 'toolu_b', 'now'),
    json(1, '"Paris"}'),
    { type: 'content_block_stop', index: 1 },
    { type: 'content_block_stop', index: 2 },
    ...stop('tool_use'),
  ]);
  t.same(
    chunks.map((c) => c.choices[0]?.delta ?? 'usage'),
    [
      { role: 'assistant', content: '' },
      { content: 'Sure.' },
      { tool_calls: [{ index: 0, id: 'toolu_a', type: 'function', function: { name: 'get_weather', arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{"city":' } }] },
      { tool_calls: [{ index: 1, id: 'toolu_b', type: 'function', function: { name: 'now', arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '"Paris"}' } }] },
      { tool_calls: [{ index: 1, function: { arguments: '{}' } }] },
      {},
      'usage',
    ],
    'blocks map to call indexes, interleaved fragments included; empty fragments dropped; a call without input gets {}',
  );
  t.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'tool_calls');
  t.throws(
    () => run([start, { type: 'content_block_start', index: 0, content_block: { type: 'tool_use', name: 'x' } }]),
    { code: 'upstream_protocol_error' },
  );
});

t.test('the JSON-answer tool is re-emitted as content, and ends as a plain stop', async (t) => {
  const chunks = run([
    start,
    toolBlock(0, 'toolu_j', JSON_ANSWER_TOOL),
    json(0, '{"answer":'),
    json(0, '"yes"}'),
    ...stop('tool_use'),
  ]);
  t.same(
    chunks.map((c) => c.choices[0]?.delta ?? 'usage'),
    [{ role: 'assistant', content: '' }, { content: '{"answer":' }, { content: '"yes"}' }, {}, 'usage'],
  );
  t.equal(chunks.at(-2)!.choices[0]!.finish_reason, 'stop');
});

t.test('a tool called without arguments gets the JSON object {}, as OpenAI sends it', async (t) => {
  // What Anthropic streams for a tool with no input: the block starts with `input: {}`, then one empty
  // fragment (or none) and its stop. `arguments: ""` made the openai SDK's runTools fail to parse it.
  const args = (events: Array<Record<string, unknown>>): string[] =>
    run(events).flatMap((c) => c.choices[0]?.delta.tool_calls?.map((call) => call.function?.arguments ?? '') ?? []);
  t.same(args([start, toolBlock(0, 'toolu_n', 'now'), json(0, ''), stopBlock(0), ...stop('tool_use')]), ['', '{}']);
  t.same(
    args([start, toolBlock(0, 'toolu_n', 'now'), stopBlock(0), ...stop('tool_use')]),
    ['', '{}'],
    'no fragment at all',
  );
  t.same(
    args([
      start,
      toolBlock(0, 'toolu_c', 'get_weather'),
      json(0, '{"city":"Oslo"}'),
      stopBlock(0),
      ...stop('tool_use'),
    ]),
    ['', '{"city":"Oslo"}'],
    'a call with input gets nothing more at its stop',
  );
  const filled = {
    type: 'content_block_start',
    index: 0,
    content_block: { type: 'tool_use', id: 'toolu_f', name: 'get_weather', input: { city: 'Rome' } },
  };
  t.same(
    args([start, filled, stopBlock(0), ...stop('tool_use')]),
    ['', '{"city":"Rome"}'],
    'an upstream that puts the whole input in the block start (Anthropic-compatible servers do)',
  );
  t.same(
    args([start, filled, json(0, '{"city":"Rome"}'), stopBlock(0), ...stop('tool_use')]),
    ['', '{"city":"Rome"}'],
    'and sends it again as fragments: once',
  );
  const answer = run([start, toolBlock(0, 'toolu_j', JSON_ANSWER_TOOL), stopBlock(0), ...stop('tool_use')]);
  t.same(
    answer.map((c) => c.choices[0]?.delta.content),
    ['', '{}', undefined, undefined],
    'a JSON-mode answer of an empty object is the content {}',
  );
});

t.test('a message that ends with a block open, or says its stop reason twice: {} and one finish', async (t) => {
  // A fuzz probe's hostile shapes: a tool_use block with no content_block_stop kept arguments "" (the {} waited for
  // the stop), and a second message_delta with a stop_reason sent a second finish chunk.
  const openBlock = run([start, toolBlock(0, 'toolu_o', 'now'), ...stop('tool_use')]);
  t.same(
    openBlock.map((c) => c.choices[0]?.delta ?? 'usage'),
    [
      // Before a tool call, `content: null`, as OpenAI's: `""` opened an empty text part in the AI SDK.
      { role: 'assistant', content: null },
      { tool_calls: [{ index: 0, id: 'toolu_o', type: 'function', function: { name: 'now', arguments: '' } }] },
      { tool_calls: [{ index: 0, function: { arguments: '{}' } }] },
      {},
      'usage',
    ],
  );
  t.equal(openBlock.at(-2)!.choices[0]!.finish_reason, 'tool_calls');
  const noDelta = run([start, toolBlock(0, 'toolu_o', 'now'), { type: 'message_stop' }]);
  t.same(
    noDelta.map((c) => c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments),
    [undefined, '', '{}', undefined, undefined],
    'no message_delta at all: {} before the finish message_stop sends',
  );
  const twice = run([
    start,
    { type: 'content_block_start', index: 0, content_block: { type: 'text', text: 'Hi' } },
    { type: 'content_block_stop', index: 0 },
    { type: 'message_delta', delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 3 } },
    { type: 'message_delta', delta: { stop_reason: 'max_tokens' }, usage: { output_tokens: 5 } },
    { type: 'message_stop' },
  ]);
  t.same(
    twice.filter((c) => c.choices[0]?.finish_reason != null).map((c) => c.choices[0]!.finish_reason),
    ['stop'],
    'one finish chunk, the first reason',
  );
  t.equal(twice.at(-1)!.usage?.completion_tokens, 5, 'the last usage counts');
});

t.test(
  'at most MAX_OPEN_TOOL_BLOCKS tool_use blocks open: what they owe goes out at the finish, one more is refused',
  async (t) => {
    // A hostile upstream's 400,000 blocks never stopped went out at message_delta, one event holding the loop 1.3 s.
    const blocks = Array.from({ length: MAX_OPEN_TOOL_BLOCKS }, (_, i) => toolBlock(i, `toolu_${i}`, 'now'));
    const chunks = run([start, ...blocks, ...stop('tool_use')]);
    t.equal(
      chunks.filter((c) => c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments === '{}').length,
      MAX_OPEN_TOOL_BLOCKS,
      'each open block owes {}',
    );
    t.throws(() => run([start, ...blocks, toolBlock(MAX_OPEN_TOOL_BLOCKS, 'toolu_x', 'now')]), {
      code: 'upstream_protocol_error',
      message: /more than 1024 tool_use blocks open/,
    });
    const stopped = blocks.flatMap((block, i) => [block, stopBlock(i)]);
    t.doesNotThrow(
      () => run([start, ...stopped, toolBlock(MAX_OPEN_TOOL_BLOCKS, 'toolu_x', 'now'), ...stop('tool_use')]),
      'blocks that stopped are not open',
    );
  },
);

t.test('a whole input in the block start keeps numbers a double cannot hold, as fragments and Ollama do', async (t) => {
  const state = createStreamState({ id: 'chatcmpl-x', created: 1, model: 'm' });
  const chunks: ChatCompletionChunk[] = [];
  const sink = { chunk: (c: ChatCompletionChunk): void => void chunks.push(c) };
  const events: Array<[string, string]> = [
    ['message_start', JSON.stringify(start)],
    [
      'content_block_start',
      '{"type":"content_block_start","index":0,"content_block":{"type":"tool_use","id":"toolu_x","name":"f",' +
        '"input":{"id":12345678901234567890,"big":1e400,"ok":1.5,"s":"1e400"}}}',
    ],
    ['content_block_stop', '{"type":"content_block_stop","index":0}'],
  ];
  for (const [type, data] of events) convertAnthropicEvent(state, type, data, sink);
  t.equal(
    chunks.map((c) => c.choices[0]?.delta.tool_calls?.[0]?.function?.arguments ?? '').join(''),
    '{"id":12345678901234567890,"big":1e400,"ok":1.5,"s":"1e400"}',
    'written as the model wrote them (rounded, and null, before)',
  );
});

t.test('a PDF file part is a document block, its file name the title (it was a 400)', async (t) => {
  // What the OpenAI SDK sends for a PDF (and LiteLLM converts so): a file part with a base64 data: URL.
  const unlabelled = 'data:application/octet-stream;base64,JVBERi0xLjcK';
  const sent = body({
    messages: [
      {
        role: 'user',
        content: [
          { type: 'text', text: 'Sum these up' },
          { type: 'file', file: { file_data: PDF, filename: 'report.pdf' } },
          { type: 'file', file: { file_data: unlabelled } },
        ],
      },
    ],
  });
  t.same(sent['messages'], [
    {
      role: 'user',
      content: [
        { type: 'text', text: 'Sum these up' },
        {
          type: 'document',
          source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjQK' },
          title: 'report.pdf',
        },
        // Labelled otherwise, a PDF by its first bytes, as images are read.
        { type: 'document', source: { type: 'base64', media_type: 'application/pdf', data: 'JVBERi0xLjcK' } },
      ],
    },
  ]);
});
