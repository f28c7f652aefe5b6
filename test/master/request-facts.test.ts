import t from 'tap';
import { originForm, targetAuthority, readRoutingFacts } from '../../master/request-facts.js';
import { DEFAULTS } from '../../shared/defaults.js';

const routing = DEFAULTS.routing;

t.test('reads facts and removes only the routing parameter', async (t) => {
  const cases: Array<[string, Record<string, string>, Record<string, unknown>]> = [
    ['/v1/models', {}, { forwardPath: '/v1/models', facts: { queryVersion: undefined } }],
    ['/v1/models?version=v2', {}, { forwardPath: '/v1/models', facts: { queryVersion: 'v2' } }],
    ['/x?a=1&version=v2&b=2', {}, { forwardPath: '/x?a=1&b=2', facts: { queryVersion: 'v2' } }],
    ['/x?a=1', {}, { forwardPath: '/x?a=1' }],
    ['/x?version=', {}, { forwardPath: '/x', facts: { queryVersion: '' } }],
    // The rest of the query as it was sent (re-serialised, it reached the upstream with `+` and `%3D`: a probe).
    [
      '/x?version=v1&q=a%20b&flag&k=1=2&&%76ersion=v2&versions=3',
      {},
      { forwardPath: '/x?q=a%20b&flag&k=1=2&&versions=3', facts: { queryVersion: 'v1' } },
    ],
    [
      '/x',
      { 'x-version': 'v3', 'x-user-id': 'u', cookie: 'graygate_uid=c' },
      { facts: { headerVersion: 'v3', stickyHeader: 'u', stickyCookie: 'c' } },
    ],
    ['/x', { 'x-version': '', 'x-user-id': '' }, { facts: { headerVersion: undefined, stickyHeader: undefined } }],
  ];
  for (const [target, headers, want] of cases) {
    const got = readRoutingFacts(target, headers, routing, () => 'fresh');
    t.match(got, { ok: true, ...want }, target);
  }
  t.match(
    readRoutingFacts('garbage target', {}, routing, () => 'f'),
    { ok: false },
  );
  // A fragment: the worker read `/p#x?version=v3` as a path whose query the master had read as a pin (a probe).
  for (const target of ['/echo#frag?version=v3', '/v1/models?a=1#x'])
    t.match(
      readRoutingFacts(target, {}, routing, () => 'f'),
      { ok: false, message: /no fragment/ },
      target,
    );
  t.match(
    readRoutingFacts('/x', { 'x-user-id': 'u' }, routing, () => t.fail('no id needed') as never),
    { ok: true, facts: { freshId: '' } },
  );
});

t.test('absolute-form targets become origin-form as they came; other forms and userinfo are refused', async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['/v1/models?version=v2', '/v1/models?version=v2'],
    ['http://example.com/p?version=v1', '/p?version=v1'],
    ['HTTPS://example.com:8443/healthz', '/healthz'],
    ['http://example.com/v1/chat/../models', '/v1/chat/../models'], // dot segments kept, as in origin-form
    ['http://example.com', '/'],
    ['http://example.com?a=1', '/?a=1'],
    ['http://user:pw@example.com/p', undefined],
    ['http:///p', undefined],
    ['http://[bad/echo', undefined],
    ['http://[::1]:8000/p', '/p'],
    ['ftp://example.com/p', undefined],
    ['example.com:443', undefined],
    ['*', undefined],
    ['http://example.com#x', undefined],
  ];
  for (const [target, want] of cases) t.equal(originForm(target), want, target);
  // RFC 9112 §3.2.2: the host of an absolute-form target replaces the Host header.
  t.equal(targetAuthority('http://example.com:8443/p'), 'example.com:8443');
  t.equal(targetAuthority('HTTP://[::1]:8000'), '[::1]:8000');
  t.equal(targetAuthority('/p'), undefined, 'origin-form: Host stands');
});
