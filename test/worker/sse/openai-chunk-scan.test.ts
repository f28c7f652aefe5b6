import t from 'tap';
import { NOT_PLAIN, scanPlainChunk } from '../../../worker/sse/openai-chunk-scan.js';

// Issue 10: the scan that lets an OpenAI chunk through as bytes must never
// accept what the decoding path (JSON.parse, SPEC §5) would treat differently:
// whenever it answers a count, the payloads parse, are plain, and the count of
// content events is the one the decoding path finds.

/** The decoding path's view of one payload: NOT_PLAIN, or 1/0 for content. */
function reference(payload: string): number {
  let value: unknown;
  try {
    value = JSON.parse(payload);
  } catch {
    return NOT_PLAIN;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return NOT_PLAIN;
  const v = value as Record<string, unknown>;
  if ('error' in v) return NOT_PLAIN;
  if (v['usage'] !== undefined && v['usage'] !== null) return NOT_PLAIN;
  const choices = v['choices'];
  if (!Array.isArray(choices) || choices.length === 0) return NOT_PLAIN;
  // A choice that is not an object, or a delta neither an object nor null, is an upstream_protocol_error.
  const isObject = (x: unknown): x is Record<string, unknown> =>
    typeof x === 'object' && x !== null && !Array.isArray(x);
  for (const choice of choices as unknown[])
    if (!isObject(choice) || !(choice['delta'] === undefined || choice['delta'] === null || isObject(choice['delta'])))
      return NOT_PLAIN;
  const first = choices[0] as Record<string, unknown>;
  if (first['finish_reason'] !== undefined && first['finish_reason'] !== null) return NOT_PLAIN;
  const delta = first['delta'] as Record<string, unknown> | null | undefined;
  if (delta === undefined || delta === null) return 0;
  if ('tool_calls' in delta) return NOT_PLAIN;
  const isText = (x: unknown): boolean => typeof x === 'string' && x !== '';
  return isText(delta['content']) ||
    isText(delta['refusal']) ||
    isText(delta['reasoning_content']) ||
    isText(delta['reasoning'])
    ? 1
    : 0;
}

const event = (payload: string): Buffer => Buffer.from(`data: ${payload}\n\n`);
const chunk = (content: unknown, extra: Record<string, unknown> = {}): string =>
  JSON.stringify({
    id: 'chatcmpl-1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    ...extra,
    choices: [{ index: 0, delta: { content }, logprobs: null, finish_reason: null }],
  });

const PLAIN: Array<[string, string, number]> = [
  ['a text token', chunk('Hello'), 1],
  [
    'the role chunk',
    JSON.stringify({
      id: 'x',
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
    }),
    0,
  ],
  ['usage null', chunk('a', { usage: null }), 1],
  ['escapes and non-ASCII text', chunk('"quoted" \\ \n \t \u0001 日本 🎉 \u2028'), 1],
  [
    'numbers of every form',
    '{"choices":[{"delta":{"content":"x"}}],"a":[0,-1,1.5,-0.25e10,3e-2,1E+2,12345678901234567890]}',
    1,
  ],
  [
    'true, false, nested',
    JSON.stringify({ a: { b: [true, false, null, {}, []] }, choices: [{ delta: { refusal: 'no' } }] }),
    1,
  ],
  ['whitespace around tokens', ' { "choices" : [ { "delta" : { "content" : "x" } , "finish_reason" : null } ] } ', 1],
  ['reasoning as vLLM and DeepSeek stream it', '{"choices":[{"delta":{"content":null,"reasoning_content":"hm"}}]}', 1],
  ['reasoning as OpenRouter streams it', '{"choices":[{"delta":{"content":"","reasoning":"hm"}}]}', 1],
  ['empty reasoning', '{"choices":[{"delta":{"reasoning_content":"","reasoning":""}}]}', 0],
  ['an empty first choice', '{"choices":[{}]}', 0],
  ['a null delta (taken as an empty one)', '{"choices":[{"delta":null}]}', 0],
  ['an empty delta', '{"choices":[{"delta":{}}]}', 0],
  ['a duplicated content key: the last counts', '{"choices":[{"delta":{"content":"x","content":""}}]}', 0],
  ['a duplicated delta: the last counts', '{"choices":[{"delta":{"content":"x"},"delta":{"content":null}}]}', 0],
  ['content as a non-string', '{"choices":[{"delta":{"content":["x"]}}]}', 0],
];

t.test('plain events: counted like the decoding path', async (t) => {
  for (const [name, payload, expected] of PLAIN) {
    t.equal(reference(payload), expected, `${name}: reference`);
    t.equal(scanPlainChunk(event(payload)), expected, name);
  }
});

const NOT_PLAIN_PAYLOADS: Array<[string, string]> = [
  ['[DONE]', '[DONE]'],
  ['not JSON', 'hello'],
  ['an array', '[1]'],
  ['a string', '"x"'],
  ['an empty object', '{}'],
  ['no choices', '{"id":"x"}'],
  ['empty choices (a usage or dropped chunk)', '{"choices":[]}'],
  ['choices not an array', '{"choices":{}}'],
  ['choices twice', '{"choices":[{}],"choices":[{}]}'],
  ['a first choice that is not an object (a protocol error)', '{"choices":[null]}'],
  ['a delta that is not an object (a protocol error)', '{"choices":[{"delta":"text"}]}'],
  ['more than one choice (each checked by the decoding path)', '{"choices":[{"delta":{"content":"x"}},{}]}'],
  ['a later choice that is not an object', '{"choices":[{"delta":{"content":"x"}},1]}'],
  ['a usage object', chunk('a', { usage: { prompt_tokens: 1, completion_tokens: 2 } })],
  ['an error', '{"error":{"message":"x"},"choices":[{}]}'],
  ['error null (left to the decoding path)', '{"error":null,"choices":[{}]}'],
  ['a finish reason', '{"choices":[{"delta":{},"finish_reason":"stop"}]}'],
  ['tool calls', '{"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}'],
  ['an escaped key that may be a looked-at one', '{"\\u0063hoices":[{}],"choices":[{}]}'],
  ['any escaped key', '{"a\\"b":1,"choices":[{"delta":{"content":"x"}}]}'],
  ['trailing comma in an object', '{"choices":[{}],}'],
  ['trailing comma in an array', '{"choices":[{},]}'],
  ['missing colon', '{"choices" [{}]}'],
  ['missing value', '{"a":,"choices":[{}]}'],
  ['single quotes', "{'choices':[{}]}"],
  ['a raw control byte in a string', '{"a":"x\u0001y","choices":[{}]}'],
  ['a bad escape', '{"a":"\\x","choices":[{}]}'],
  ['a short \\u escape', '{"a":"\\u12","choices":[{}]}'],
  ['a non-hex \\u escape', '{"a":"\\u12g4","choices":[{}]}'],
  ['an unterminated string', '{"choices":[{}],"a":"x'],
  ['leading zero', '{"a":01,"choices":[{}]}'],
  ['a bare minus', '{"a":-,"choices":[{}]}'],
  ['a dot without digits', '{"a":1.,"choices":[{}]}'],
  ['an exponent without digits', '{"a":1e+,"choices":[{}]}'],
  ['a plus sign', '{"a":+1,"choices":[{}]}'],
  ['NaN', '{"a":NaN,"choices":[{}]}'],
  ['a misspelt literal', '{"a":tru,"choices":[{}]}'],
  ['nul', '{"a":nul,"choices":[{}]}'],
  ['usage not null', '{"usage":nulL,"choices":[{}]}'],
  ['two values', '{"choices":[{}]} {}'],
  ['unclosed object', '{"choices":[{}]'],
  ['unclosed array', '{"choices":[{}'],
  ['a CR inside', '{"choices":[{}]\r}'],
  ['too deep', `{"a":${'['.repeat(100)}${']'.repeat(100)},"choices":[{}]}`],
];

t.test('anything else is left to the decoding path', async (t) => {
  for (const [name, payload] of NOT_PLAIN_PAYLOADS) t.equal(scanPlainChunk(event(payload)), NOT_PLAIN, name);
});

t.test('framing: only whole `data: …\\n\\n` events, several per chunk counted together', async (t) => {
  const a = chunk('a');
  const empty = chunk('');
  t.equal(
    scanPlainChunk(Buffer.from(`data: ${a}\n\ndata: ${empty}\n\ndata: ${a}\n\n`)),
    2,
    'three events, two with content',
  );
  t.equal(scanPlainChunk(Buffer.alloc(0)), NOT_PLAIN, 'an empty chunk');
  t.equal(scanPlainChunk(Buffer.from(`data: ${a}\n`)), NOT_PLAIN, 'the blank line is in the next chunk');
  t.equal(scanPlainChunk(Buffer.from(`data: ${a}`)), NOT_PLAIN, 'the line is cut');
  t.equal(scanPlainChunk(Buffer.from(`data: ${a}\n\ndata: {"cho`)), NOT_PLAIN, 'a second event is cut');
  t.equal(scanPlainChunk(Buffer.from(`data: ${a}\r\n\r\n`)), NOT_PLAIN, 'CRLF line ends');
  t.equal(scanPlainChunk(Buffer.from(`data:${a}\n\n`)), NOT_PLAIN, 'no space after the colon');
  t.equal(scanPlainChunk(Buffer.from(`event: message\ndata: ${a}\n\n`)), NOT_PLAIN, 'an event field');
  t.equal(scanPlainChunk(Buffer.from(`: ping\n\ndata: ${a}\n\n`)), NOT_PLAIN, 'a comment');
  t.equal(scanPlainChunk(Buffer.from(`data: {"choices":\ndata: [{}]}\n\n`)), NOT_PLAIN, 'two data lines');
  t.equal(scanPlainChunk(Buffer.from(`data: ${a}\n\n\n`)), NOT_PLAIN, 'an extra line end');
  t.equal(scanPlainChunk(Buffer.from('dat')), NOT_PLAIN, 'shorter than the prefix');
});

t.test('UTF-8: valid multi-byte text passes, invalid bytes go to the decoding path', async (t) => {
  t.equal(scanPlainChunk(event(chunk('日本語 🎉'))), 1);
  const bad = Buffer.concat([
    Buffer.from('data: {"choices":[{"delta":{"content":"'),
    Buffer.from([0xc3, 0x28]),
    Buffer.from('"}}]}\n\n'),
  ]);
  t.equal(scanPlainChunk(bad), NOT_PLAIN, 'an invalid sequence');
  const cut = Buffer.from(`data: ${chunk('é')}\n\n`);
  const at = cut.indexOf(0xc3);
  t.equal(
    scanPlainChunk(Buffer.concat([cut.subarray(0, at + 1), Buffer.from('x'), cut.subarray(at + 2)])),
    NOT_PLAIN,
    'a sequence cut short',
  );
});

t.test('mutated events: whatever the scan accepts, JSON.parse accepts with the same facts', async (t) => {
  // A seeded generator: the same cases on every run.
  let seed = 42;
  const random = (n: number): number => {
    seed = (seed * 1103515245 + 12345) & 0x7fffffff;
    return seed % n;
  };
  const alphabet = '{}[]",:\\ 0123456789-+.eEtrufalsn"u\\x\tabc';
  const bases = [
    chunk('Hi'),
    chunk(''),
    chunk('a', { usage: null }),
    '{"choices":[{"delta":{"refusal":"no"},"finish_reason":null}],"n":-1.5e3}',
  ];
  let accepted = 0;
  for (let n = 0; n < 20_000; n++) {
    const base = bases[random(bases.length)]!;
    let text = base;
    for (let edits = 1 + random(3); edits > 0; edits--) {
      const at = random(text.length + 1);
      const c = alphabet[random(alphabet.length)]!;
      const op = random(3);
      text =
        op === 0
          ? text.slice(0, at) + c + text.slice(at)
          : op === 1
            ? text.slice(0, at) + text.slice(at + 1)
            : text.slice(0, at) + c + text.slice(at + 1);
    }
    if (text.includes('\n')) continue;
    const scanned = scanPlainChunk(event(text));
    if (scanned === NOT_PLAIN) continue;
    accepted++;
    if (reference(text) !== scanned)
      t.fail(`${JSON.stringify(text)}: scan ${scanned}, decoding path ${reference(text)}`);
  }
  t.ok(accepted > 100, `the scan accepted some mutated events (${accepted})`);
});
