import t from 'tap';
import { createServer, type ServerResponse } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { forbiddenHint, requestAdmin } from '../../../scripts/cli/admin-client.js';

// Issue 12 part 6, SPEC §6: what to do about a 403 `forbidden` follows from
// where the CLI was pointed and whether it has a token.

t.test('forbiddenHint by address and token', async (t) => {
  const cases: Array<[string, string, string | undefined, boolean, RegExp]> = [
    [
      'a remote host without a token',
      'http://gw.example:9000',
      undefined,
      false,
      /^run graygate on the gateway's machine \(e\.g\. over ssh\) with --admin 127\.0\.0\.1:9000, or start the gateway with GRAYGATE_ADMIN_TOKEN/,
    ],
    [
      'an empty token is none',
      'http://10.0.0.5:9100',
      '',
      false,
      /with --admin 127\.0\.0\.1:9100, or start the gateway with GRAYGATE_ADMIN_TOKEN/,
    ],
    [
      'a remote host with a token the gateway lacks',
      'http://gw.example:9000',
      'tok',
      false,
      /^the gateway runs without GRAYGATE_ADMIN_TOKEN, so a token does not lift this/,
    ],
    ['https without a port', 'https://gw.example', undefined, false, /--admin 127\.0\.0\.1:443/],
    ['http without a port', 'http://gw.example', undefined, false, /--admin 127\.0\.0\.1:80,/],
    [
      'loopback: a proxy in between',
      'http://127.0.0.1:9000',
      undefined,
      true,
      /^graygate itself sends a loopback Host and Content-Type: application\/json; if a proxy/,
    ],
    ['loopback with a token', 'http://localhost:9000', 'tok', true, /^graygate itself sends/],
  ];
  for (const [what, adminUrl, token, isLoopback, want] of cases)
    t.match(forbiddenHint({ adminUrl, token, isLoopback }), want, what);
});

t.test('an error listing problems on lines of their own is one line', async (t) => {
  // A README walk-through: `graygate reload` printed `the running config stays:; limits.nope: …`.
  const message =
    'config not reloaded, the running config stays:\nlimits.nope: unknown key\nversions.v2.weight: must be ≥ 0';
  const server = createServer((_req, res) => {
    res.writeHead(400, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'invalid_config', message } }));
  }).listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const adminUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  await t.rejects(requestAdmin({ adminUrl, token: undefined }, { method: 'POST', path: '/admin/reload' }), {
    message:
      '400 invalid_config: config not reloaded, the running config stays: limits.nope: unknown key; ' +
      'versions.v2.weight: must be ≥ 0',
  });
});

t.test('an answer that is not a graygate admin API says so; the main port is named as a likely mix-up', async (t) => {
  // An operator probe: another server's HTML 404 was printed whole as the error; the main port's 404 had no hint.
  const serve = async (answer: (res: ServerResponse) => void): Promise<string> => {
    const server = createServer((_req, res) => answer(res)).listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.teardown(() => server.close());
    return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  };
  const other = await serve((res) => {
    res.writeHead(404, { 'content-type': 'text/html' });
    res.end('<!DOCTYPE HTML>\n<html><body>Not found</body></html>');
  });
  await t.rejects(requestAdmin({ adminUrl: other, token: undefined }, { method: 'GET', path: '/admin/status' }), {
    message: new RegExp(`^404 from ${other}, which does not answer as a graygate admin API \\("<!DOCTYPE HTML>`),
  });
  const main = await serve((res) => {
    res.writeHead(404, { 'content-type': 'application/json', 'x-graygate-version': 'v1' });
    res.end(JSON.stringify({ error: { code: 'not_found', message: 'no route for GET /admin/status' } }));
  });
  await t.rejects(requestAdmin({ adminUrl: main, token: undefined }, { method: 'GET', path: '/admin/status' }), {
    message: /^404 not_found: no route for GET \/admin\/status; hint: is that the main port\?/,
  });
  // The admin API's own 404 (a probe: `canary abort` with no canary running was told it had reached the main port).
  const adminPort = await serve((res) => {
    res.writeHead(404, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ error: { code: 'not_found', message: 'version "c1" has no running or held canary' } }));
  });
  const noCanary = { method: 'DELETE', path: '/admin/versions/c1/canary' } as const;
  await t.rejects(requestAdmin({ adminUrl: adminPort, token: undefined }, noCanary), {
    message: /^404 not_found: version "c1" has no running or held canary$/,
  });
});
