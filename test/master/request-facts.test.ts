import t from 'tap';
import { readRoutingFacts } from '../../master/request-facts.js';
import { DEFAULTS } from '../../shared/defaults.js';

const routing = DEFAULTS.routing;

t.test('reads facts and removes only the routing parameter', async (t) => {
  const cases: Array<[string, Record<string, string>, Record<string, unknown>]> = [
    ['/v1/models', {}, { forwardPath: '/v1/models', facts: { queryVersion: undefined } }],
    ['/v1/models?version=v2', {}, { forwardPath: '/v1/models', facts: { queryVersion: 'v2' } }],
    ['/x?a=1&version=v2&b=2', {}, { forwardPath: '/x?a=1&b=2', facts: { queryVersion: 'v2' } }],
    ['/x?a=1', {}, { forwardPath: '/x?a=1' }],
    ['/x?version=', {}, { forwardPath: '/x', facts: { queryVersion: '' } }],
    ['http://example.com/p?version=v1', {}, { forwardPath: '/p', facts: { queryVersion: 'v1' } }],
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
  t.match(
    readRoutingFacts('/x', { 'x-user-id': 'u' }, routing, () => t.fail('no id needed') as never),
    { ok: true, facts: { freshId: '' } },
  );
});
