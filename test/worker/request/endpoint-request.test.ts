import t from 'tap';
import { parseEndpointRequest } from '../../../worker/request/endpoint-request.js';
import type { RelayKind } from '../../../worker/types.js';

// SPEC §12: embeddings, completions and responses bodies: only what the
// gateway reads is checked; the rest is the upstream's to judge.

const parse = (kind: RelayKind, value: unknown): ReturnType<typeof parseEndpointRequest> =>
  parseEndpointRequest(kind, Buffer.from(JSON.stringify(value)));

t.test('what the gateway reads', async (t) => {
  t.same(parse('responses', { model: 'm', input: 'x', stream: true, anything: [1] }), {
    body: { model: 'm', input: 'x', stream: true, anything: [1] },
    isStream: true,
    includeUsage: false,
    encoding: 'float',
  });
  t.same(
    parse('completions', { model: 'm', prompt: 'x', stream: true, stream_options: { include_usage: true } })
      .includeUsage,
    true,
  );
  t.equal(parse('embeddings', { model: 'm', input: 'x', encoding_format: 'base64' }).encoding, 'base64');
  for (const input of ['x', ['a', 'b'], [1, 2], [[1], [2, 3]]])
    t.doesNotThrow(() => parse('embeddings', { model: 'm', input }), JSON.stringify(input));
});

t.test('bad bodies are 400s naming the field', async (t) => {
  const cases: Array<[RelayKind, string, RegExp]> = [
    ['responses', '{"model":', /not valid JSON/],
    ['embeddings', '\ufeff{"input":"x"}', /^the request body starts with a byte-order mark/],
    ['responses', '[]', /must be a JSON object/],
    ['completions', '{"model":1}', /^model: must be a string$/],
    ['completions', '{"stream":"yes"}', /^stream: must be a boolean$/],
    ['completions', '{"stream_options":{"include_usage":1}}', /^stream_options\.include_usage: must be a boolean$/],
    ['embeddings', '{"model":"m"}', /^input: must be a string/],
    ['embeddings', '{"input":[]}', /^input: /],
    ['embeddings', '{"input":["a",1]}', /^input: /],
    ['embeddings', '{"input":"x","encoding_format":"hex"}', /^encoding_format: must be "float" or "base64"$/],
    ['embeddings', '{"input":"x","dimensions":0}', /^dimensions: must be ≥ 1$/],
    ['embeddings', '{"input":"x","stream":true}', /^stream: embeddings are not streamed$/],
  ];
  for (const [kind, body, message] of cases)
    t.throws(
      () => parseEndpointRequest(kind, Buffer.from(body)),
      { code: 'invalid_request', message },
      `${kind} ${body}`,
    );
  // The first problem's field is the body's `param` (OpenAI's SDKs read `err.param`); JSON and limit errors have none.
  t.throws(() => parseEndpointRequest('completions', Buffer.from('{"model":1,"stream":"yes"}')), {
    code: 'invalid_request',
    param: 'model',
  });
  t.throws(() => parseEndpointRequest('completions', Buffer.from('{"stream_options":{"include_usage":1}}')), {
    code: 'invalid_request',
    param: 'stream_options.include_usage',
  });
  let unparsed: unknown;
  try {
    parseEndpointRequest('responses', Buffer.from('{"model":'));
  } catch (err) {
    unparsed = err;
  }
  t.equal((unparsed as { param?: string }).param, undefined, 'not JSON: no field to name');
  t.throws(() => parseEndpointRequest('responses', Buffer.from(`{"input":${'['.repeat(100)}${']'.repeat(100)}}`)), {
    message: /nested more than 64 levels/,
  });
});
