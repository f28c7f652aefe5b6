import t from 'tap';
import { once } from 'node:events';
import { request } from 'node:http';
import { createServer } from 'node:net';
import { startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { openRaw } from '../helpers/raw-http.js';
import { httpRequest, json } from '../helpers/http.js';

interface Echo {
  version: string;
  url: string;
  headers: Record<string, string>;
}

t.test('routing, proxy headers and errors through the real master', async (t) => {
  const gw = await startGateway(t, {
    versions: {
      v1: { entry: TEST_WORKER_ENTRY, weight: 90 },
      v2: { entry: TEST_WORKER_ENTRY, weight: 10 },
      dark: { entry: TEST_WORKER_ENTRY, weight: 0 },
    },
    limits: { maxBodyBytes: 1000 },
  });

  t.test('query parameter pins the version and is removed before proxying', async (t) => {
    const res = await httpRequest(`${gw.url}/echo?a=1&version=v2&b=2`);
    t.equal(res.status, 200);
    t.equal(res.headers['x-graygate-version'], 'v2');
    const echo = json<Echo>(res);
    t.equal(echo.version, 'v2');
    t.equal(echo.url, '/echo?a=1&b=2');
    t.equal(echo.headers['x-graygate-version'], 'v2', 'forwarded to the worker');
  });

  t.test('header pins the version; weight 0 reachable explicitly', async (t) => {
    t.equal(json<Echo>(await httpRequest(`${gw.url}/echo`, { headers: { 'x-version': 'v2' } })).version, 'v2');
    t.equal(json<Echo>(await httpRequest(`${gw.url}/echo?version=dark`)).version, 'dark');
  });

  t.test('sticky: x-user-id and cookie give the same version every time; a fresh id is set as cookie', async (t) => {
    const first = json<Echo>(await httpRequest(`${gw.url}/echo`, { headers: { 'x-user-id': 'alice' } })).version;
    for (let i = 0; i < 5; i++) {
      t.equal(json<Echo>(await httpRequest(`${gw.url}/echo`, { headers: { 'x-user-id': 'alice' } })).version, first);
    }
    const fresh = await httpRequest(`${gw.url}/echo`);
    const cookie = fresh.headers['set-cookie']?.[0] ?? '';
    t.match(cookie, /^graygate_uid=[0-9a-f-]{36}; Path=\/; HttpOnly; SameSite=Lax; Max-Age=31536000$/);
    const id = cookie.split(';')[0]!;
    const version = fresh.headers['x-graygate-version'];
    for (let i = 0; i < 5; i++) {
      const again = await httpRequest(`${gw.url}/echo`, { headers: { cookie: `other=1; ${id}` } });
      t.equal(again.headers['x-graygate-version'], version);
      t.notOk(again.headers['set-cookie'], 'no new cookie when one was sent');
    }
  });

  t.test('request ids, x-forwarded-*, hop-by-hop headers', async (t) => {
    const res = await httpRequest(`${gw.url}/echo?version=v1`, {
      headers: {
        'x-request-id': 'abc-123',
        connection: 'keep-alive, x-secret-hop',
        'x-secret-hop': '1',
        'keep-alive': 'timeout=9',
        te: 'trailers',
        'proxy-authorization': 'Basic x',
      },
    });
    t.equal(res.headers['x-request-id'], 'abc-123', 'the client id is kept');
    const h = json<Echo>(res).headers;
    t.equal(h['x-request-id'], 'abc-123', 'and forwarded');
    t.equal(h['x-forwarded-for'], '127.0.0.1');
    t.equal(h['x-forwarded-proto'], 'http');
    t.match(h['x-forwarded-host'], /^127\.0\.0\.1:\d+$/);
    t.equal(h['x-forwarded-port'], new URL(gw.url).port, "the listener's port");
    for (const name of ['x-secret-hop', 'keep-alive', 'te', 'proxy-authorization'])
      t.notOk(h[name], `${name} not forwarded`);
    // nginx's keepalive_timeout, above the 60 s of the load balancers put in front (Node's own is 5 s).
    t.equal(res.headers['keep-alive'], 'timeout=75', "the master's Keep-Alive, not the worker's (65 s)");
    // A front proxy's values first, the master's hop after; an empty X-Forwarded-Host is filled from Host.
    const behind = json<Echo>(
      await httpRequest(`${gw.url}/echo?version=v1`, {
        headers: { 'x-forwarded-port': '443', 'x-forwarded-proto': 'https', 'x-forwarded-host': '' },
      }),
    ).headers;
    t.equal(behind['x-forwarded-port'], `443,${new URL(gw.url).port}`);
    t.equal(behind['x-forwarded-proto'], 'https,http');
    t.match(behind['x-forwarded-host'], /^127\.0\.0\.1:\d+$/);
    const sneaky = json<Echo>(
      await httpRequest(`${gw.url}/echo?version=v1`, { headers: { connection: 'x-request-id, x-graygate-version' } }),
    ).headers;
    t.ok(
      sneaky['x-request-id'] && sneaky['x-graygate-version'] === 'v1',
      'a Connection header cannot remove the proxy headers',
    );
    const generated = await httpRequest(`${gw.url}/echo?version=v1`, {
      headers: { 'x-request-id': 'bad id with spaces' },
    });
    t.match(
      generated.headers['x-request-id'],
      /^[0-9a-f]{12}-[0-9a-z]+$/,
      'an unusable id is replaced by the master’s own',
    );
  });

  t.test('unknown and malformed versions', async (t) => {
    const unknown = await httpRequest(`${gw.url}/echo?version=v9`);
    t.equal(unknown.status, 404);
    t.same(json(unknown), {
      error: {
        message: 'unknown version "v9"; known versions: dark, v1, v2',
        type: 'invalid_request_error',
        code: 'unknown_version',
      },
    });
    const bad = await httpRequest(`${gw.url}/echo`, { headers: { 'x-version': 'Not A Version' } });
    t.equal(bad.status, 400);
    t.equal(json<{ error: { code: string; type: string } }>(bad).error.code, 'invalid_request');
  });

  t.test('bodies over maxBodyBytes: 413 by Content-Length and by counting a chunked body', async (t) => {
    const declared = await httpRequest(`${gw.url}/echo`, {
      method: 'POST',
      body: 'x'.repeat(1001),
      headers: { 'content-type': 'text/plain' },
    });
    t.equal(declared.status, 413);
    t.equal(declared.headers['connection'], 'close', 'the rest of a refused body is not read');
    t.equal(json<{ error: { code: string } }>(declared).error.code, 'body_too_large');
    const chunked = await new Promise<{ status: number; body: string }>((resolve, reject) => {
      const req = request(
        `${gw.url}/slow?ms=5000`,
        { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked' } },
        (res) => {
          let body = '';
          res.on('data', (d: Buffer) => (body += d.toString()));
          res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
        },
      );
      req.on('error', reject);
      for (let i = 0; i < 20; i++) req.write('y'.repeat(100));
      req.end();
    });
    t.equal(chunked.status, 413);
    t.equal((JSON.parse(chunked.body) as { error: { code: string } }).error.code, 'body_too_large');
    // With Expect: 100-continue the body is counted too.
    const continued = await new Promise<number>((resolve, reject) => {
      const req = request(
        `${gw.url}/slow?ms=5000`,
        { method: 'POST', agent: false, headers: { 'transfer-encoding': 'chunked', expect: '100-continue' } },
        (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        },
      );
      req.on('continue', () => {
        for (let i = 0; i < 20; i++) req.write('y'.repeat(100));
        req.end();
      });
      req.on('error', reject);
    });
    t.equal(continued, 413);
  });

  t.test('healthz and readyz', async (t) => {
    t.same(json(await httpRequest(`${gw.url}/healthz`)), { status: 'ok' });
    t.same(json(await httpRequest(`${gw.url}/readyz`)), {
      status: 'ready',
      versions: { dark: true, v1: true, v2: true },
    });
  });
});

t.test('unknownVersion fallback routes unknown names by weight', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    routing: { unknownVersion: 'fallback' },
  });
  const res = await httpRequest(`${gw.url}/echo?version=v9`);
  t.equal(res.status, 200);
  t.equal(res.headers['x-graygate-version'], 'v1');
  t.equal(json<Echo>(res).url, '/echo');
});

t.test('limits.keepAliveTimeoutMs: answers say it, and an idle connection is closed after it', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { keepAliveTimeoutMs: 1000 },
  });
  const conn = await openRaw(gw.url);
  t.teardown(() => conn.socket.destroy());
  conn.write(`GET /echo HTTP/1.1\r\nHost: ${new URL(gw.url).host}\r\n\r\n`);
  const [res] = await conn.waitFor(1);
  t.equal(res?.status, 200);
  t.equal(res?.headers['keep-alive'], 'timeout=1', 'the answer says how long the connection is kept');
  await conn.closed;
  t.pass('the master closed the idle connection');
});

/** Whether this machine has an IPv6 loopback to listen on. */
async function hasIPv6Loopback(): Promise<boolean> {
  const server = createServer().listen(0, '::1');
  const isUp = await Promise.race([
    once(server, 'listening').then(() => true),
    once(server, 'error').then(() => false),
  ]);
  server.close();
  return isUp;
}

t.test(
  'listening on ::1: the master says where it is reached, [::1], and answers there',
  { skip: (await hasIPv6Loopback()) ? false : 'no IPv6 loopback here' },
  async (t) => {
    const gw = await startGateway(
      t,
      { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } },
      { env: { HOST: '::1' } },
    );
    t.match(gw.url, /^http:\/\/\[::1\]:\d+$/, 'not http://127.0.0.1, where nothing listens');
    const res = await httpRequest(`${gw.url}/echo`);
    t.equal(res.status, 200);
  },
);
