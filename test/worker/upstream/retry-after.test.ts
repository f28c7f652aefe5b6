import t from 'tap';
import { readStatusError, retryAfterSeconds } from '../../../worker/upstream/pipeline.js';
import { toErrorResponse } from '../../../shared/errors.js';

/** An upstream body of these bytes, as readStatusError reads one. */
const bodyOf = (text: string): { readAll(): Promise<Buffer>; destroy(): void } => ({
  readAll: () => Promise.resolve(Buffer.from(text)),
  destroy: () => undefined,
});

// An upstream's 429 or 503 tells the client when to come back (SPEC §4: 4xx/429 kept, with Retry-After).

t.test('Retry-After: delay-seconds or an HTTP-date', async (t) => {
  const now = Date.parse('Wed, 02 Dec 2026 23:30:00 GMT');
  t.equal(retryAfterSeconds('120', now), 120);
  t.equal(retryAfterSeconds(' 0 ', now), 0);
  t.equal(retryAfterSeconds('Wed, 02 Dec 2026 23:31:30 GMT', now), 90, 'an HTTP-date, 90 s ahead');
  t.equal(retryAfterSeconds('Wed, 02 Dec 2026 23:29:00 GMT', now), 0, 'a date in the past: now');
  for (const bad of ['-5', '1.5', '', 'soon', '12abc', undefined, ['1', '2']])
    t.equal(retryAfterSeconds(bad, now), undefined, `not a Retry-After: ${JSON.stringify(bad)}`);
});

t.test('an upstream 429 with an HTTP-date Retry-After keeps it, in seconds', async (t) => {
  const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
  const err = await readStatusError(
    429,
    { 'retry-after': inAnHour },
    bodyOf('{"error":{"message":"slow down"}}'),
    1024,
  );
  t.equal(err.status, 429);
  // Seconds from now, so bounded below loosely: the test may run late, never early.
  t.ok(err.retryAfterS !== undefined && err.retryAfterS > 3000 && err.retryAfterS <= 3600, `${err.retryAfterS} s`);
});

t.test("a hostile upstream's retry hints are capped at a day, never echoed", async (t) => {
  const now = Date.parse('Wed, 02 Dec 2026 23:30:00 GMT');
  t.equal(retryAfterSeconds('999999999', now), 86_400);
  t.equal(retryAfterSeconds('1' + '0'.repeat(400), now), undefined, 'not a number this side of Infinity');
  t.equal(retryAfterSeconds('Fri, 01 Jan 9999 00:00:00 GMT', now), 86_400);
  const hinted = async (headers: Record<string, string>): Promise<number | undefined> =>
    (await readStatusError(429, headers, bodyOf('{}'), 1024)).retryAfterS;
  t.equal(await hinted({ 'retry-after-ms': '1500' }), 2, 'retry-after-ms, rounded up to seconds');
  t.equal(await hinted({ 'retry-after-ms': '1' + '0'.repeat(400) }), undefined);
  t.equal(await hinted({ 'retry-after-ms': String(10 ** 15) }), undefined, 'beyond 12 digits: not taken');
  t.equal(await hinted({ 'retry-after-ms': '999999999999' }), 86_400);
  t.equal(await hinted({ 'retry-after': '3', 'retry-after-ms': '9000' }), 3, 'Retry-After wins');
});

t.test("an upstream 4xx's own type, code and param: tokens only, for the client's body", async (t) => {
  const reported = async (status: number, error: unknown): Promise<unknown> => {
    const err = await readStatusError(status, {}, bodyOf(JSON.stringify({ error })), 4096);
    t.equal(err.code, 'upstream_status', 'graygate counts and logs it as its own');
    return toErrorResponse(err).body.error;
  };
  const openai = {
    message: 'too long',
    type: 'invalid_request_error',
    param: 'messages',
    code: 'context_length_exceeded',
  };
  t.same(await reported(400, openai), {
    message: 'upstream answered 400: too long',
    type: 'invalid_request_error',
    code: 'context_length_exceeded',
    param: 'messages',
  });
  const cases: Array<[string, number, unknown, { type: string; code: string; param?: string | null }]> = [
    [
      'param null is kept',
      429,
      { ...openai, param: null, code: 'insufficient_quota' },
      { type: 'invalid_request_error', code: 'insufficient_quota', param: null },
    ],
    [
      'no param: none',
      400,
      { type: 'invalid_request_error', code: 'invalid_value' },
      { type: 'invalid_request_error', code: 'invalid_value' },
    ],
    [
      'a 5xx is a bad gateway, graygate’s',
      500,
      { ...openai, code: 'server_error' },
      { type: 'upstream_error', code: 'upstream_status' },
    ],
    [
      'code null (api.openai.com’s, on many 400s): its type and param, graygate’s code',
      400,
      { ...openai, code: null },
      { type: 'invalid_request_error', code: 'upstream_status', param: 'messages' },
    ],
    [
      'code null and no type: graygate’s',
      400,
      { message: 'x', param: 'messages', code: null },
      { type: 'upstream_error', code: 'upstream_status' },
    ],
    [
      'code null and a type that is not a token: graygate’s',
      400,
      { ...openai, type: '<b>', code: null },
      { type: 'upstream_error', code: 'upstream_status' },
    ],
    [
      'no code at all: graygate’s',
      400,
      { type: 'invalid_request_error' },
      { type: 'upstream_error', code: 'upstream_status' },
    ],
    ['a number (vLLM, llama.cpp)', 400, { ...openai, code: 400 }, { type: 'upstream_error', code: 'upstream_status' }],
    ['not a token', 400, { ...openai, code: 'a b' }, { type: 'upstream_error', code: 'upstream_status' }],
    ['too long a token', 400, { ...openai, code: 'c'.repeat(65) }, { type: 'upstream_error', code: 'upstream_status' }],
    [
      'a type that is not a token',
      400,
      { ...openai, type: '<b>' },
      { type: 'upstream_error', code: 'context_length_exceeded', param: 'messages' },
    ],
    [
      'a param too long, or not a string',
      400,
      { ...openai, param: 'p'.repeat(257) },
      { type: 'invalid_request_error', code: 'context_length_exceeded' },
    ],
    [
      'a param not a string',
      400,
      { ...openai, param: { a: 1 } },
      { type: 'invalid_request_error', code: 'context_length_exceeded' },
    ],
    [
      'Anthropic’s shape',
      400,
      { type: 'invalid_request_error', message: 'x' },
      { type: 'upstream_error', code: 'upstream_status' },
    ],
    ['Ollama’s shape', 400, 'model "x" not found', { type: 'upstream_error', code: 'upstream_status' }],
  ];
  for (const [name, status, error, expected] of cases) {
    const body = (await reported(status, error)) as Record<string, unknown>;
    const { message: _message, ...rest } = body;
    t.same(rest, expected, name);
  }
  const notJson = await readStatusError(400, {}, bodyOf('<html>bad request</html>'), 4096);
  t.same(toErrorResponse(notJson).body.error.code, 'upstream_status', 'not JSON');
});
