import t from 'tap';
import { codingProblem, isMarkupStart, notEventStream, printable } from '../../../worker/upstream/answer-checks.js';
import {
  hideInUpstreamText,
  upstreamErrorOf,
  upstreamStreamError,
  withoutSecrets,
} from '../../../worker/upstream/format-adapter.js';

// What an upstream's head says that graygate cannot read, a page where a stream was asked for, and the worker's own
// upstream key in every upstream text it passes on (probes' findings), as case tables.

t.test('codings: none said oddly is none; anything else is named', async (t) => {
  const cases: Array<[Record<string, string | string[]>, RegExp | undefined]> = [
    [{}, undefined],
    [{ 'content-encoding': '' }, undefined],
    [{ 'content-encoding': 'none' }, undefined],
    [{ 'content-encoding': 'Identity, identity' }, undefined],
    [{ 'transfer-encoding': 'chunked' }, undefined],
    [{ 'transfer-encoding': 'identity' }, undefined],
    [{ 'content-encoding': 'gzip' }, /^with Content-Encoding: gzip, though asked for none/],
    [{ 'content-encoding': 'identity, br' }, /Content-Encoding: identity, br/],
    [{ 'transfer-encoding': 'gzip, chunked' }, /^with Transfer-Encoding: gzip, chunked, which graygate does not/],
    [{ 'content-encoding': ['gzip', 'gzip'] }, /Content-Encoding: gzip,gzip/],
  ];
  for (const [headers, expected] of cases) {
    const problem = codingProblem(headers);
    if (expected === undefined) t.equal(problem, undefined, JSON.stringify(headers));
    else t.match(problem, expected, JSON.stringify(headers));
  }
});

t.test('a text/html body on a stream: markup is a page, anything else the stream it may be', async (t) => {
  t.equal(isMarkupStart(Buffer.from('\r\n  <!doctype html>')), true);
  t.equal(isMarkupStart(Buffer.from('data: {"a":1}\n\n')), false);
  t.equal(isMarkupStart(Buffer.from(': ping\n\n')), false);
  t.equal(isMarkupStart(Buffer.from(' \n')), undefined, 'only white space yet');
  t.equal(isMarkupStart(Buffer.from('\ufeff<!DOCTYPE html>')), true, 'after a byte-order mark');
  t.equal(isMarkupStart(Buffer.from('\ufeffdata: {}\n\n')), false);
  t.match(notEventStream(Buffer.from('<html><title>Access denied</title>')), {
    code: 'upstream_protocol_error',
    message:
      'the upstream answered a streaming request with text/html, not an event stream: "<html><title>Access denied</title>"',
  });
});

t.test("the worker's upstream key is hidden in every upstream text, before any cut", async (t) => {
  const key = 'sk-answer-checks-7d2e9f41a0c3';
  hideInUpstreamText(`${key} `); // a space left at the end of its variable: HTTP sends it trimmed
  hideInUpstreamText('short'); // under 8 characters: not a key to find in text
  t.equal(withoutSecrets(`Bearer ${key}`), 'Bearer [redacted]');
  t.equal(withoutSecrets('short answers'), 'short answers');
  const reported = upstreamErrorOf(
    JSON.stringify({ error: { message: `bad key ${key}`, type: 'invalid_request_error', code: null, param: key } }),
  );
  t.same(reported, {
    message: 'bad key [redacted]',
    reported: { code: 'upstream_status', type: 'invalid_request_error', param: '[redacted]' },
  });
  // FastAPI's detail is cut at 1,000 characters: a key across the cut showed its start.
  const detail = upstreamErrorOf(JSON.stringify({ detail: `${'x'.repeat(990)} ${key}` })).message;
  t.notOk(detail.includes('sk-answer'), 'no part of it');
  t.equal(upstreamErrorOf(`<html>${key}</html>`).message, '<html>[redacted]</html>');
  // JSON may escape it (PHP's json_encode writes `\/`; `\u0073` is any encoder's right), which decodes back to the key.
  const escaped = key.replace('s', '\\u0073');
  const decoded = upstreamErrorOf(
    `{"error":{"message":"${escaped}","type":"${escaped}","code":"${escaped}","param":"${escaped}"}}`,
  );
  t.same(decoded, {
    message: '[redacted]',
    reported: { code: 'upstream_status', type: 'upstream_error', param: '[redacted]' },
  });
  t.equal(upstreamStreamError(`Incorrect API key provided: ${key}`).message.endsWith('[redacted]'), true);
  t.equal(printable(`https://x/?k=${key}`), 'https://x/?k=[redacted]');
});
