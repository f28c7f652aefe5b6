import t from 'tap';
import { isEventStream, readCookie, stripHopByHop } from '../../shared/http-headers.js';

t.test('stripHopByHop removes the RFC 9110 list and Connection-named headers', async (t) => {
  const h: Record<string, string> = {
    connection: 'keep-alive, X-Custom-Hop',
    'x-custom-hop': '1',
    'keep-alive': 'timeout=5',
    'transfer-encoding': 'chunked',
    te: 'trailers',
    trailer: 'x',
    upgrade: 'h2c',
    'proxy-authorization': 'a',
    'proxy-authenticate': 'b',
    'proxy-connection': 'c',
    'content-type': 'text/plain',
    authorization: 'Bearer kept',
  };
  stripHopByHop(h);
  t.same(h, { 'content-type': 'text/plain', authorization: 'Bearer kept' });
});

t.test('isEventStream parses the media type with parameters', async (t) => {
  const cases: Array<[unknown, boolean]> = [
    ['text/event-stream', true],
    ['text/event-stream; charset=utf-8', true],
    [' Text/Event-Stream ;x=1', true],
    ['application/json', false],
    ['text/event-streams', false],
    [undefined, false],
    [['text/event-stream'], false],
  ];
  for (const [value, want] of cases) t.equal(isEventStream(value as string), want, JSON.stringify(value));
});

t.test('readCookie', async (t) => {
  const cases: Array<[string | undefined, string | undefined]> = [
    ['graygate_uid=abc', 'abc'],
    ['a=1; graygate_uid=abc; b=2', 'abc'],
    ['graygate_uid="q"', 'q'],
    ['xgraygate_uid=abc', undefined],
    [undefined, undefined],
    ['graygate_uid', undefined],
    ['graygate_uid=', ''],
  ];
  for (const [header, want] of cases) t.equal(readCookie(header, 'graygate_uid'), want, String(header));
});

t.test('withoutHopByHop and copyHeaders build a new object', async (t) => {
  const { withoutHopByHop, copyHeaders } = await import('../../shared/http-headers.js');
  const headers = {
    connection: 'keep-alive, X-Secret',
    'x-secret': '1',
    'keep-alive': 'timeout=5',
    te: 'trailers',
    'transfer-encoding': 'chunked',
    host: 'h',
    'x-keep': 'yes',
    'x-undef': undefined,
  };
  const out = withoutHopByHop(headers);
  t.same(out, { host: 'h', 'x-keep': 'yes' });
  t.not(out, headers, 'a copy');
  t.equal(headers['x-secret'], '1', 'the input is untouched');
  t.same(
    copyHeaders({ host: 'h', expect: '100-continue', 'content-length': '3' }, new Set(['expect', 'content-length'])),
    { host: 'h' },
  );
  // A client cannot strip the Host or what a proxy in front said of it by naming them in Connection.
  t.same(
    copyHeaders(
      {
        connection: 'host, x-forwarded-for, x-forwarded-prefix, forwarded, content-type, x-hop',
        host: 'h',
        'x-forwarded-for': 'a',
        'x-forwarded-prefix': '/p',
        forwarded: 'for=a',
        'content-type': 'text/plain',
        'x-hop': '1',
      },
      new Set(['connection']),
    ),
    { host: 'h', 'x-forwarded-for': 'a', 'x-forwarded-prefix': '/p', forwarded: 'for=a', 'content-type': 'text/plain' },
  );
});
