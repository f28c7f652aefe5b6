import t from 'tap';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { Worker } from 'node:worker_threads';
import {
  ERROR_CATALOGUE,
  GraygateError,
  MAX_ERROR_MESSAGE_CHARS,
  toErrorResponse,
  type ErrorCode,
} from '../../shared/errors.js';
import { ROOT } from '../helpers/root.js';

// STYLE §10: the catalogue and the README error table agree, both ways.
t.test('README error table and catalogue are in sync', async (t) => {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Errors'), readme.indexOf('## Admin API'));
  const rows = new Map<string, { status: number; type: string }>();
  for (const m of section.matchAll(/^\| `([a-z_]+)` \| (\d{3}) \| ([a-z_]+) \|/gm))
    rows.set(m[1]!, { status: Number(m[2]), type: m[3]! });
  t.same([...rows.keys()].sort(), Object.keys(ERROR_CATALOGUE).sort(), 'same codes');
  for (const [code, entry] of Object.entries(ERROR_CATALOGUE)) {
    t.same(rows.get(code), { status: entry.status, type: entry.type }, code);
  }
});

t.test('toErrorResponse', async (t) => {
  const full = toErrorResponse(new GraygateError('queue_full', undefined, { retryAfterS: 2 }));
  t.same(full, {
    code: 'queue_full',
    status: 503,
    headers: { 'retry-after': '2' },
    body: { error: { message: ERROR_CATALOGUE.queue_full.message, type: 'overloaded_error', code: 'queue_full' } },
  });
  const passthrough = toErrorResponse(new GraygateError('upstream_status', 'rate limited', { status: 429 }));
  t.equal(passthrough.status, 429);
  const unknown = toErrorResponse(new Error('boom'));
  t.same(
    unknown.body.error,
    { message: 'internal error', type: 'gateway_error', code: 'internal_error' as ErrorCode },
    'unknown errors become 500 without leaking the message',
  );
  t.equal(unknown.status, 500);
  t.equal(unknown.code, 'internal_error');
  // graygate's own code, whatever an upstream's the body carries (what the master counts and logs).
  const reported = { type: 'invalid_request_error', code: 'context_length_exceeded', param: 'messages' };
  const upstream = toErrorResponse(new GraygateError('upstream_status', 'too long', { status: 400, reported }));
  t.same([upstream.code, upstream.body.error.code], ['upstream_status', 'context_length_exceeded']);
  // The field a check refused, where OpenAI's SDKs read it (`err.param`), bounded as the message is.
  const field = new GraygateError('invalid_request', 'seed: is not supported', { param: 'seed' });
  t.same(toErrorResponse(field).body.error, {
    message: 'seed: is not supported',
    type: 'invalid_request_error',
    code: 'invalid_request',
    param: 'seed',
  });
  // An array's index as api.openai.com writes it there (`messages.[2].content`): the SDK's `err.param` reads alike.
  const indexed = new GraygateError('invalid_request', 'x', { param: 'messages.0.content.12.cache_control' });
  t.equal(toErrorResponse(indexed).body.error.param, 'messages.[0].content.[12].cache_control');
  t.equal(toErrorResponse(new GraygateError('invalid_request', 'x', { param: 'n' })).body.error.param, 'n');
  t.equal(
    toErrorResponse(new GraygateError('invalid_request', 'x', { param: 'metadata.k2.v1' })).body.error.param,
    'metadata.k2.v1',
    'digits inside a key are not an index',
  );
  const long = toErrorResponse(
    new GraygateError('invalid_request', 'x', { param: 'k'.repeat(MAX_ERROR_MESSAGE_CHARS + 1) }),
  );
  t.equal(long.body.error.param?.length, MAX_ERROR_MESSAGE_CHARS);
  t.ok(long.body.error.param?.endsWith('k…'));
  t.equal(
    toErrorResponse(new GraygateError('invalid_request', 'x', { param: 'tools.12345678901234' })).body.error.param,
    'tools.12345678901234',
    'more digits than an index has: a key',
  );
  const near = toErrorResponse(
    new GraygateError('invalid_request', 'x', { param: `${'k'.repeat(MAX_ERROR_MESSAGE_CHARS - 10)}.0.1234567` }),
  );
  t.equal(
    near.body.error.param,
    `${'k'.repeat(MAX_ERROR_MESSAGE_CHARS - 10)}.[0].[123…`,
    'an index at the cut: converted, then cut',
  );
});

t.test('a key as long as a body, in `param`: converted as far as the answer shows it, not whole', async (t) => {
  // A probe: an unknown key `.1.1.1…` in a 10 MiB body (an anthropic version's 400) was converted whole to
  // api.openai.com's form, ~5 M replacements: seconds of the worker's loop (~5 s alone, ~25 s on a busy box) and a
  // heap past 256 MiB (a thread limited to that died of it). On a thread whose heap is under 5 times the key, which
  // the part the answer shows fits in many times over; the whole conversion does not.
  const errors = pathToFileURL(join(ROOT, 'dist/shared/errors.js')).href;
  const thread = new Worker(
    `const { parentPort } = require('node:worker_threads');
     import(${JSON.stringify(errors)}).then(({ GraygateError, toErrorResponse }) => {
       const e = new GraygateError('invalid_request', 'x', { param: 'metadata' + '.1'.repeat(5 * 1024 * 1024) });
       parentPort.postMessage(toErrorResponse(e).body.error.param);
     });`,
    { eval: true, resourceLimits: { maxOldGenerationSizeMb: 48 } },
  );
  t.teardown(() => thread.terminate());
  const [param] = (await once(thread, 'message')) as [string];
  t.equal(param, `${`metadata${'.[1]'.repeat(MAX_ERROR_MESSAGE_CHARS)}`.slice(0, MAX_ERROR_MESSAGE_CHARS - 1)}…`);
});

t.test(
  "an answer's message is at most MAX_ERROR_MESSAGE_CHARS: what a client sent is never echoed whole",
  async (t) => {
    const name = 'k'.repeat(9 * 1024 * 1024);
    const e = new GraygateError('invalid_request', `${name}: is not a field graygate can convert`);
    const message = (err: GraygateError): string => toErrorResponse(err).body.error.message;
    t.equal(message(e).length, MAX_ERROR_MESSAGE_CHARS);
    t.ok(message(e).endsWith('k…'));
    t.ok(
      e.message.startsWith(name) && e.message.length > name.length,
      'the error keeps it whole, for the log of a refused config',
    );
    const short = 'messages.0.name: is not supported';
    t.equal(message(new GraygateError('invalid_request', short)), short, 'a message within it is as it was');
    // Cut where an emoji's two halves meet: the first half goes too (a lone surrogate, strict JSON parsers refuse).
    const emoji = new GraygateError('invalid_request', `${'a'.repeat(MAX_ERROR_MESSAGE_CHARS - 2)}😀${'b'.repeat(9)}`);
    t.equal(message(emoji), `${'a'.repeat(MAX_ERROR_MESSAGE_CHARS - 2)}…`);
  },
);
