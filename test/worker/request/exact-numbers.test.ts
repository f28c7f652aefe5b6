import t from 'tap';
import { isExactInteger, parseJsonExact, stringifyJsonExact } from '../../../worker/request/exact-numbers.js';
import { prepareCall } from '../../../worker/call/prepare.js';
import { openaiAdapter } from '../../../worker/upstream/openai.js';
import { ollamaAdapter } from '../../../worker/upstream/ollama.js';
import { anthropicAdapter } from '../../../worker/upstream/anthropic.js';

// SPEC §12, nothing changed silently: numbers a double cannot hold go upstream as the client wrote them.

const ID = '1234567890123456789';

t.test('parse and write back: inexact literals kept, everything else as JSON.parse/stringify have it', async (t) => {
  const text = `{"a":${ID},"s":"x 12345678901234567890 \\" 9","c":[-9223372036854775808,1e400,1.25,3],"d":9007199254740991}`;
  const value = parseJsonExact(text) as Record<string, unknown>;
  t.equal(stringifyJsonExact(value), text, 'the same text');
  t.equal(value['s'], 'x 12345678901234567890 " 9', 'digits inside strings untouched');
  t.equal(value['d'], 9007199254740991, 'a safe integer is a number');
  t.ok(isExactInteger(value['a']));
  t.notOk(isExactInteger((value['c'] as unknown[])[1]), '1e400 is kept, but no integer');
  t.notOk(isExactInteger(`${ID}`), "a client's string is not one");
  t.same(parseJsonExact('{"x":[1,2.5]}'), { x: [1, 2.5] });
  t.throws(
    () => parseJsonExact(`{"a":${ID}`),
    { message: /position 24/ },
    "JSON.parse's error, at the client's position",
  );
  t.throws(() => parseJsonExact(`{"a":0${ID}}`), SyntaxError, 'a leading zero is no JSON, however long');
  t.same(parseJsonExact(`{"a":"${ID}"}`), { a: ID }, 'digits in a string are a string');
});

t.test('through each format: arguments, tool schemas and a seed reach the upstream as sent', async (t) => {
  const build = { model: undefined, apiKey: undefined };
  const history = {
    model: 'm',
    messages: [
      { role: 'user', content: 'who?' },
      {
        role: 'assistant',
        content: null,
        tool_calls: [{ id: 'c1', type: 'function', function: { name: 'f', arguments: `{"user_id":${ID}}` } }],
      },
      { role: 'tool', tool_call_id: 'c1', content: 'ok' },
    ],
    tools: [
      {
        type: 'function',
        function: {
          name: 'f',
          parameters: { type: 'object', properties: { user_id: { type: 'integer', maximum: 0.5 } } },
        },
      },
    ],
  };
  const raw = JSON.stringify(history).replace('"maximum":0.5', '"maximum":9223372036854775807');
  for (const adapter of [openaiAdapter, ollamaAdapter, anthropicAdapter]) {
    const sent = prepareCall('chat', Buffer.from(raw), adapter, build).request.body.toString();
    t.match(sent, /"maximum":9223372036854775807\b/, `${adapter.format}: the schema's maximum`);
    if (adapter.format !== 'openai') t.match(sent, new RegExp(`"user_id":${ID}\\b`), `${adapter.format}: arguments`);
  }
  for (const adapter of [openaiAdapter, ollamaAdapter]) {
    const body = `{"model":"m","messages":[{"role":"user","content":"x"}],"seed":18446744073709551615}`;
    const sent = prepareCall('chat', Buffer.from(body), adapter, build).request.body.toString();
    t.match(sent, /"seed":18446744073709551615\b/, `${adapter.format}: a 64-bit seed`);
  }
  const system = `{"model":"m","messages":[{"role":"system","content":"be brief"},{"role":"system","content":${ID}}]}`;
  t.throws(
    () => prepareCall('chat', Buffer.from(system), anthropicAdapter, build),
    { message: /messages\.1\.content: must be a string/ },
    'a long number where a string goes is refused as any number is, never joined into text',
  );
  t.throws(
    () => prepareCall('chat', Buffer.from(`{"model":"m","messages":[],"temperature":1e400}`), openaiAdapter, build),
    { message: /temperature: must be a number/ },
    'a number past 1.8e308 where one is read is refused, not sent as null',
  );
});
