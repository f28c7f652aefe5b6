import t from 'tap';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  CHAT_FIELDS,
  MESSAGE_FIELDS,
  checkChatFields,
  type ConvertedFormat,
} from '../../../worker/upstream/field-support.js';
import { ROOT } from '../../helpers/root.js';

// SPEC §12: the field table is the README's, cell by cell and both ways
// (as test/shared/errors.test.ts holds the error table), and it decides
// which requests are 400s.

function readmeRows(heading: string): Map<string, [string, string]> {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const start = readme.indexOf(`### ${heading}`);
  const end = readme.indexOf('\n#', start + 4);
  const rows = new Map<string, [string, string]>();
  for (const m of readme.slice(start, end).matchAll(/^\| `([a-z_]+)` \| (.+?) \| (.+?) \|$/gm))
    rows.set(m[1]!, [m[2]!, m[3]!]);
  return rows;
}

for (const [heading, table] of [
  ['Chat Completions fields', CHAT_FIELDS],
  ['Message fields', MESSAGE_FIELDS],
] as const) {
  t.test(`README "${heading}" and the table agree`, async (t) => {
    const rows = readmeRows(heading);
    t.same([...rows.keys()], Object.keys(table), 'same fields, same order');
    for (const [field, support] of Object.entries(table))
      t.same(rows.get(field), [support.ollama.cell, support.anthropic.cell], field);
  });
}

t.test('checkChatFields: every field a format cannot take, in one 400', async (t) => {
  const messages = [{ role: 'user', content: 'hi' }];
  const cases: Array<[ConvertedFormat, Record<string, unknown>, RegExp | undefined]> = [
    ['ollama', { model: 'm', messages, seed: 1, top_k: 3, user: 'u', n: 1, logprobs: true }, undefined],
    [
      'anthropic',
      {
        model: 'm',
        messages,
        n: null,
        seed: null,
        presence_penalty: 0,
        store: false,
        metadata: {},
        modalities: ['text'],
        service_tier: 'auto',
      },
      undefined,
    ],
    [
      'anthropic',
      { messages, seed: 1, n: 2, whatever: true },
      /^seed: is not supported by an anthropic upstream; n: an anthropic upstream cannot express it \(400 unless 1\); whatever: is not a field graygate can convert for an anthropic upstream$/,
    ],
    [
      'ollama',
      { messages: [{ role: 'user', content: 'x', name: 'n', extra: 1 }] },
      /^messages\.0\.extra: is not a field graygate can convert for an ollama upstream$/,
    ],
    [
      'anthropic',
      { messages: [...messages, { role: 'function', name: 'get_weather', content: '{"t":21}' }] },
      /^messages\.1\.role: "function" is not supported by an anthropic upstream \(use tools\)$/,
    ],
    [
      'ollama',
      { messages, store: true, metadata: { a: '1' }, service_tier: 'flex', modalities: ['text', 'audio'] },
      /^store: .*; metadata: .*; service_tier: .*; modalities: /,
    ],
  ];
  // An assistant message exactly as api.openai.com returns it, pushed back as history.
  const history = [...messages, { role: 'assistant', content: 'hello', refusal: null, annotations: [] }, ...messages];
  for (const format of ['ollama', 'anthropic'] as const) cases.push([format, { messages: history }, undefined]);
  // The message the OpenAI SDK's chat.completions.parse() returns for a json_schema answer, pushed back as history.
  const parsed = { role: 'assistant', content: '{"a":"x"}', refusal: null, parsed: { a: 'x' } };
  for (const format of ['ollama', 'anthropic'] as const)
    cases.push([format, { messages: [...messages, parsed, ...messages] }, undefined]);
  for (const [format, req, message] of cases) {
    if (message === undefined) t.doesNotThrow(() => checkChatFields(req, format), JSON.stringify(req));
    else t.throws(() => checkChatFields(req, format), { code: 'invalid_request', message }, JSON.stringify(req));
  }
  const many = Object.fromEntries(Array.from({ length: 13 }, (_, i) => [`x${i}`, 1]));
  t.throws(() => checkChatFields({ messages, ...many }, 'ollama'), { message: /; and 3 more$/ });
  // The first field refused is the body's `param`, which OpenAI's SDKs read as `err.param`.
  t.throws(() => checkChatFields({ messages, seed: 1, n: 2 }, 'anthropic'), { code: 'invalid_request', param: 'seed' });
  t.throws(() => checkChatFields({ messages: [{ role: 'user', content: 'x', extra: 1 }] }, 'ollama'), {
    code: 'invalid_request',
    param: 'messages.0.extra',
  });
});
