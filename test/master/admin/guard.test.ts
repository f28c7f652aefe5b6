import t from 'tap';
import { checkAdminRequest, hostOf, isJsonContentType } from '../../../master/admin/guard.js';
import { isLoopbackHost } from '../../../shared/config.js';

// SPEC §6 / issue 9 part 4 as case tables (STYLE §31).

t.test('isLoopbackHost: literal loopback addresses and localhost only', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['localhost', true],
    ['LOCALHOST', true],
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['[::1]', true],
    ['127.evil.example', false],
    ['127.0.0.1.nip.io', false],
    ['localhost.example', false],
    ['0.0.0.0', false],
    ['10.0.0.1', false],
    ['example.com', false],
    ['', false],
  ];
  for (const [host, want] of cases) t.equal(isLoopbackHost(host), want, host);
});

t.test('hostOf strips the port, keeps IPv6 brackets', async (t) => {
  t.equal(hostOf('127.0.0.1:9000'), '127.0.0.1');
  t.equal(hostOf('[::1]:9000'), '[::1]');
  t.equal(hostOf('LocalHost'), 'localhost');
  t.equal(hostOf('[::1]'), '[::1]');
  for (const bad of [
    'localhost:9000@evil.example',
    'localhost:x',
    '127.0.0.1:9000:1',
    '[::1]x',
    '[::1',
    '::1',
    ':9000',
  ])
    t.equal(hostOf(bad), '', `${bad}: no host`);
});

t.test('isJsonContentType', async (t) => {
  t.ok(isJsonContentType('application/json'));
  t.ok(isJsonContentType('Application/JSON; charset=utf-8'));
  t.notOk(isJsonContentType('text/plain'));
  t.notOk(isJsonContentType('application/x-www-form-urlencoded'));
  t.notOk(isJsonContentType('multipart/form-data; boundary=x'));
  t.notOk(isJsonContentType(undefined));
});

t.test('checkAdminRequest', async (t) => {
  const json = { 'content-type': 'application/json' };
  const cases: Array<[string, Parameters<typeof checkAdminRequest>[0], boolean]> = [
    ['curl to 127.0.0.1', { method: 'GET', headers: { host: '127.0.0.1:9000' }, hasToken: false }, true],
    ['no Host at all (HTTP/1.0)', { method: 'GET', headers: {}, hasToken: false }, false],
    ['rebinding Host', { method: 'GET', headers: { host: 'evil.example:9000' }, hasToken: false }, false],
    [
      'cross-origin',
      { method: 'GET', headers: { host: '127.0.0.1:9000', origin: 'http://evil.example' }, hasToken: false },
      false,
    ],
    [
      'Origin null (sandboxed page)',
      { method: 'GET', headers: { host: '127.0.0.1:9000', origin: 'null' }, hasToken: false },
      false,
    ],
    [
      'same origin',
      { method: 'PUT', headers: { host: '127.0.0.1:9000', origin: 'http://127.0.0.1:9000', ...json }, hasToken: false },
      true,
    ],
    [
      'simple POST',
      { method: 'POST', headers: { host: '127.0.0.1:9000', 'content-type': 'text/plain' }, hasToken: false },
      false,
    ],
    [
      'form POST',
      {
        method: 'POST',
        headers: { host: 'localhost:9000', 'content-type': 'application/x-www-form-urlencoded' },
        hasToken: false,
      },
      false,
    ],
    ['DELETE without type', { method: 'DELETE', headers: { host: 'localhost:9000' }, hasToken: false }, false],
    ['JSON POST', { method: 'POST', headers: { host: 'localhost:9000', ...json }, hasToken: false }, true],
    [
      "a page's <script> GET (no Origin, Sec-Fetch-Site cross-site)",
      { method: 'GET', headers: { host: '127.0.0.1:9000', 'sec-fetch-site': 'cross-site' }, hasToken: false },
      false,
    ],
    [
      'a page on another port of localhost (same-site)',
      { method: 'GET', headers: { host: 'localhost:9000', 'sec-fetch-site': 'same-site' }, hasToken: false },
      false,
    ],
    [
      'token: a cross-site page still learns nothing',
      { method: 'GET', headers: { host: 'admin.internal', 'sec-fetch-site': 'Cross-Site' }, hasToken: true },
      false,
    ],
    [
      'the operator typing the URL (Sec-Fetch-Site none)',
      { method: 'GET', headers: { host: '127.0.0.1:9000', 'sec-fetch-site': 'none' }, hasToken: false },
      true,
    ],
    [
      'token: any Host (a proxy in front)',
      { method: 'GET', headers: { host: 'admin.internal' }, hasToken: true },
      true,
    ],
    [
      'token: still JSON for changes',
      { method: 'POST', headers: { host: 'admin.internal', 'content-type': 'text/plain' }, hasToken: true },
      false,
    ],
  ];
  for (const [what, facts, isAllowed] of cases) {
    const err = checkAdminRequest(facts);
    t.equal(err === undefined, isAllowed, what);
    if (err !== undefined) t.equal(err.code, 'forbidden', what);
  }
});
