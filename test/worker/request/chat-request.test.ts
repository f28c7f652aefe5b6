import t from 'tap';
import { parseChatRequest } from '../../../worker/request/chat-request.js';

// Request validation (issue 3 part 1): every bad body is a 400 invalid_request naming the field.

const ok = { model: 'm', messages: [{ role: 'user', content: 'hi' }] };

t.test('valid bodies', async (t) => {
  t.equal(parseChatRequest(Buffer.from(JSON.stringify(ok))).model, 'm');
  const full = parseChatRequest(Buffer.from(JSON.stringify({ ...ok, stream: true, stream_options: { include_usage: true }, max_tokens: 5, stop: ['x'], n: 1, tools: [] })));
  t.equal(full.stream_options?.include_usage, true);
  t.same(full['tools'], [], 'unknown fields kept for an OpenAI upstream');
});

const BAD: Array<[string, string, RegExp]> = [
  ['not JSON', '{"model":', /not valid JSON/],
  ['an array', '[]', /must be a JSON object/],
  ['missing messages', '{"model":"m"}', /^messages: /],
  ['empty messages', '{"model":"m","messages":[]}', /messages: must contain at least one message/],
  ['bad role', '{"messages":[{"role":"robot","content":"x"}]}', /messages\.0\.role/],
  ['content number', '{"messages":[{"role":"user","content":5}]}', /messages\.0\.content/],
  ['stream string', '{"messages":[{"role":"user","content":"x"}],"stream":"yes"}', /stream: must be a boolean/],
  ['n = 2', '{"messages":[{"role":"user","content":"x"}],"n":2}', /only n = 1/],
  ['max_tokens 0', '{"messages":[{"role":"user","content":"x"}],"max_tokens":0}', /max_tokens/],
];

for (const [name, body, message] of BAD) {
  t.test(name, async (t) => {
    t.throws(() => parseChatRequest(Buffer.from(body)), { code: 'invalid_request', status: 400, message });
  });
}
