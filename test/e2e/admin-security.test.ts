import t from 'tap';
import { readFileSync, writeFileSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { admin, startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { status } from '../helpers/wait.js';
import { openRaw, rawRequest } from '../helpers/raw-http.js';
import { untilOutput } from '../helpers/output.js';

// Issue 9 part 4, SPEC §6: the admin API is never reachable from a web page
// the operator happens to visit (cross-site simple POST, DNS rebinding), and
// workers never inherit the admin token.

interface ErrorBody {
  error: { message: string; type: string; code: string };
}

t.test('admin without a token: only loopback Host, no cross-origin Origin, JSON for changes', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } });
  const port = new URL(gw.adminUrl).port;
  const status0 = (await status(gw)).v1!;

  const refused: Array<[string, Record<string, string>, string?, string?]> = [
    ['DNS rebinding: a foreign Host', { host: `attacker.example:${port}` }],
    ['a Host that only starts like a loopback address', { host: `127.evil.example:${port}` }],
    ['localhost as a subdomain', { host: `localhost.evil.example:${port}` }],
    ['a cross-origin Origin', { host: `127.0.0.1:${port}`, origin: 'http://evil.example' }],
    ['a loopback page on another port', { host: `127.0.0.1:${port}`, origin: 'http://127.0.0.1:3000' }],
    // A page's <script src=…/metrics> carries no Origin: its load or error event would fingerprint the port.
    ['a cross-site <script> GET', { host: `127.0.0.1:${port}`, 'sec-fetch-site': 'cross-site' }],
  ];
  for (const [what, headers] of refused) {
    const res = await httpRequest(`${gw.adminUrl}/admin/status`, { headers });
    t.equal(res.status, 403, what);
    t.same(json<ErrorBody>(res).error.code, 'forbidden', what);
    t.equal(json<ErrorBody>(res).error.type, 'invalid_request_error');
  }

  // The attack of the issue: a "simple" cross-site POST that needs no preflight.
  const simple = await httpRequest(`${gw.adminUrl}/admin/versions/v1/deploy`, {
    method: 'POST',
    headers: { host: `127.0.0.1:${port}`, origin: 'http://evil.example', 'content-type': 'text/plain' },
    body: JSON.stringify({ env: { NODE_OPTIONS: '--import=data:text/javascript,process.exit(9)' } }),
  });
  t.equal(simple.status, 403, 'a cross-site simple POST is refused');
  const plainLoopback = await httpRequest(`${gw.adminUrl}/admin/versions/v1/deploy`, {
    method: 'POST',
    headers: { 'content-type': 'text/plain' },
    body: '{}',
  });
  t.equal(plainLoopback.status, 403, 'a state change without application/json is refused even from loopback');
  t.match(json<ErrorBody>(plainLoopback).error.message, /Content-Type: application\/json/);
  const noType = await httpRequest(`${gw.adminUrl}/admin/reload`, { method: 'POST' });
  t.equal(noType.status, 403, 'a bodiless state change needs it too');
  const after = (await status(gw)).v1!;
  t.same(
    after.workers.map((w) => w.pid),
    status0.workers.map((w) => w.pid),
    'nothing was deployed',
  );

  // What curl and the CLI send.
  const plain = await httpRequest(`${gw.adminUrl}/admin/status`);
  t.equal(plain.status, 200, 'loopback Host, no Origin');
  t.equal(plain.headers['x-content-type-options'], 'nosniff', 'no page can run an answer as a script');
  t.equal(
    (await httpRequest(`${gw.adminUrl}/admin/status`, { headers: { host: `localhost:${port}` } })).status,
    200,
    'localhost',
  );
  t.equal(
    (
      await httpRequest(`${gw.adminUrl}/admin/status`, {
        headers: { host: `127.0.0.1:${port}`, origin: `http://127.0.0.1:${port}` },
      })
    ).status,
    200,
    'same-origin',
  );
  const weights = await httpRequest(`${gw.adminUrl}/admin/weights`, {
    method: 'PUT',
    headers: { 'content-type': 'application/json; charset=utf-8' },
    body: '{"v1":2}',
  });
  t.equal(weights.status, 200, 'JSON with parameters');
  t.equal(
    (await httpRequest(`${gw.adminUrl}/metrics`, { headers: { host: `evil.example:${port}` } })).status,
    403,
    '/metrics too',
  );
});

t.test(
  'admin with a token: any-case bearer; workers never inherit secrets; entries bounded by entryRoots',
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'graygate-entry-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const outside = join(dir, 'outside.js');
    writeFileSync(outside, 'process.exit(0)\n');
    const gw = await startGateway(
      t,
      { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1, instances: 2 } }, admin: { redactEnv: ['MY_SECRET'] } },
      // debug: the most the master logs, for the check at the end that the token is in none of it.
      { env: { GRAYGATE_ADMIN_TOKEN: 'tok-3f9a', MY_SECRET: 'hush-71c2', LOG_LEVEL: 'debug' } },
    );
    const auth = { authorization: 'bearer tok-3f9a' };
    t.equal((await admin(gw, 'GET', '/admin/status', undefined, auth)).status, 200, 'lowercase bearer');
    t.equal(
      (await admin(gw, 'GET', '/admin/status', undefined, { authorization: 'BEARER tok-3f9a' })).status,
      200,
      'uppercase BEARER',
    );
    t.equal(
      (await admin(gw, 'GET', '/admin/status', undefined, { authorization: 'Basic tok-3f9a' })).status,
      401,
      'another scheme',
    );
    // A guessed token left no trace (an observability probe): a warn line, never the header.
    const refusedLine = await untilOutput(gw, () => gw.output().match(/^.*"msg":"admin call unauthorized.*$/m)?.[0]);
    t.match(refusedLine, /"level":40,.*"path":"\/admin\/status".*"refused":1/);

    const environOf = (pid: number): string => readFileSync(`/proc/${pid}/environ`, 'utf8');
    const checkWorkers = async (when: string): Promise<void> => {
      const { body } = await admin<{ versions: Record<string, { workers: Array<{ pid: number }> }> }>(
        gw,
        'GET',
        '/admin/status',
        undefined,
        auth,
      );
      for (const w of body.versions.v1!.workers) {
        const env = environOf(w.pid);
        t.notOk(env.includes('tok-3f9a'), `${when}: worker ${w.pid} has no admin token in its environment`);
        t.notOk(env.includes('GRAYGATE_ADMIN_TOKEN'), `${when}: nor the variable`);
        t.notOk(env.includes('hush-71c2'), `${when}: nor a variable named in admin.redactEnv`);
      }
    };
    t.ok(environOf(gw.pid).includes('tok-3f9a'), 'the master has it (the test would prove nothing otherwise)');
    await checkWorkers('at start');
    const deployed = await admin(gw, 'POST', '/admin/versions/v1/deploy', { env: { EXTRA: '1' } }, auth);
    t.equal(deployed.status, 200);
    await checkWorkers('after a deploy');

    const outsideDeploy = await admin<ErrorBody>(gw, 'POST', '/admin/versions/v1/deploy', { entry: outside }, auth);
    t.equal(outsideDeploy.status, 400, 'an entry outside admin.entryRoots is refused');
    t.match(outsideDeploy.body.error.message, /outside admin\.entryRoots/);
    const outsideAdd = await admin<ErrorBody>(gw, 'POST', '/admin/versions', { name: 'v9', entry: outside }, auth);
    t.equal(outsideAdd.status, 400);
    const escape = await admin<ErrorBody>(
      gw,
      'POST',
      '/admin/versions',
      { name: 'v9', entry: `${TEST_WORKER_ENTRY}/../../../../../../${outside}` },
      auth,
    );
    t.equal(escape.status, 400, 'no escape with ../');

    // A head the main port refuses, with the token in it: the master logs it at debug ('client error'), after every
    // line the authenticated calls above made it write, so once that line is in, the output holds them all. A header
    // line without a colon: node's parser refuses it on every supported node (llhttp 8, on node 20 before 20.19.2,
    // lets `Bad Header: x` through to the master's own check, which logs no 'client error').
    const malformed = `GET /slow HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer tok-3f9a\r\nNo-Colon-Here\r\n\r\n`;
    t.equal((await rawRequest(gw.url, malformed)).status, 400);
    const debugLine = await untilOutput(gw, () => gw.output().match(/^.*"msg":"client error".*$/m)?.[0]);
    t.match(debugLine, /"level":20,/, 'the master logs at debug level');
    t.match(gw.output(), /"msg":"admin call refused"/, 'and logged the authenticated calls');
    t.notOk(gw.output().includes('tok-3f9a'), 'the admin token is in none of the log lines');
  },
);

t.test('a worker inherits its own version’s upstream key, not the other versions’', async (t) => {
  // Least privilege: a version's entry can be any build; the keys of other versions are none of its business. A key
  // variable two versions share is each one's own.
  const upstream = (apiKeyEnv: string): Record<string, unknown> => ({ format: 'openai', url: 'mock:', apiKeyEnv });
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: { weight: 1, upstream: upstream('KEY_ONE') },
        v2: { weight: 1, upstream: upstream('KEY_TWO') },
        v3: { weight: 0, upstream: upstream('KEY_ONE') },
        // Its own env sets a variable named like another version's key: its own value, not redacted.
        v4: { weight: 0, upstream: upstream('KEY_FOUR'), env: { KEY_ONE: 'own-77aa' } },
      },
    },
    { env: { KEY_ONE: 'one-5d1e', KEY_TWO: 'two-8c4b' } },
  );
  const rows = await status(gw);
  const keysOf = (version: string): string[] => {
    const env = readFileSync(`/proc/${rows[version]!.workers[0]!.pid}/environ`, 'utf8');
    return ['one-5d1e', 'two-8c4b', 'own-77aa'].filter((value) => env.includes(value));
  };
  t.same(
    { v1: keysOf('v1'), v2: keysOf('v2'), v3: keysOf('v3'), v4: keysOf('v4') },
    { v1: ['one-5d1e'], v2: ['two-8c4b'], v3: ['one-5d1e'], v4: ['own-77aa'] },
  );
});

t.test('a worker inherits its own version’s proxy credentials, not the other versions’', async (t) => {
  // upstream.proxyAuthEnv (user:password for the egress proxy) came after the keys were redacted, and was not: every
  // other version's workers had it in their environment (/proc/PID/environ), a helper's probe.
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: {
          weight: 1,
          upstream: {
            format: 'openai',
            url: 'https://upstream.invalid/v1',
            proxy: 'http://proxy.invalid:3128',
            proxyAuthEnv: 'PROXY_ONE',
          },
        },
        v2: { weight: 1, upstream: { format: 'openai', url: 'mock:' } },
      },
    },
    { env: { PROXY_ONE: 'corp:pw-6e0b' } },
  );
  const rows = await status(gw);
  const hasCredentials = (version: string): boolean =>
    readFileSync(`/proc/${rows[version]!.workers[0]!.pid}/environ`, 'utf8').includes('pw-6e0b');
  t.same({ v1: hasCredentials('v1'), v2: hasCredentials('v2') }, { v1: true, v2: false });
});

t.test("the admin port refuses the heads the main port does, in the API's error shape", async (t) => {
  // A differential probe against nginx: the admin port took two Hosts, read `Transfer-Encoding: gzip, chunked` as
  // chunked, answered HEAD with 405 and refused bad heads with node's bare `400 Bad Request` (no JSON).
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } });
  const host = new URL(gw.adminUrl).host;
  const cases: Array<[string, string, number, RegExp]> = [
    ['two Hosts', `GET /admin/status HTTP/1.1\r\nHost: ${host}\r\nHost: ${host}\r\n\r\n`, 400, /one Host header/],
    [
      'a transfer-coding other than chunked',
      `POST /admin/reload HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
        'Transfer-Encoding: gzip, chunked\r\n\r\n2\r\n{}\r\n0\r\n\r\n',
      501,
      /only chunked/,
    ],
    [
      'a coded body',
      `POST /admin/reload HTTP/1.1\r\nHost: ${host}\r\nContent-Type: application/json\r\n` +
        'Content-Encoding: gzip\r\nContent-Length: 2\r\n\r\n{}',
      415,
      /Content-Encoding "gzip" is not supported/,
    ],
    // Node's parser fails on it after the head: its 400 followed the 501 on the same connection (a probe).
    [
      'gzip alone',
      `GET /admin/status HTTP/1.1\r\nHost: ${host}\r\nTransfer-Encoding: gzip\r\n\r\n`,
      501,
      /only chunked/,
    ],
    ['an unknown Expect', `GET /admin/status HTTP/1.1\r\nHost: ${host}\r\nExpect: 200-ok\r\n\r\n`, 417, /100-continue/],
    // Node closed a CONNECT without a word (a probe).
    ['CONNECT', `CONNECT 127.0.0.1:22 HTTP/1.1\r\nHost: 127.0.0.1:22\r\n\r\n`, 400, /not a forward proxy/],
    ['HTTP/2.0 in the request line', `GET /admin/status HTTP/2.0\r\nHost: ${host}\r\n\r\n`, 505, /send HTTP\/1\.1/],
    [
      'a head node cannot parse',
      `GET /admin/status HTTP/1.1\r\nHost: ${host}\r\nBad Header: x\r\n\r\n`,
      400,
      /malformed/,
    ],
  ];
  for (const [what, head, code, message] of cases) {
    const conn = await openRaw(gw.adminUrl, ['GET']);
    conn.write(head);
    const [res] = await conn.waitFor(1);
    t.equal(res!.status, code, what);
    t.match(JSON.parse(res!.body), { error: { message } }, `${what}: in the error shape`);
    await conn.closed;
    t.equal(conn.responses.length, 1, `${what}: one answer, then closed`);
    // Node's parser's refusals and CONNECT are written on the socket: they lacked it.
    t.equal(res!.headers['x-content-type-options'], 'nosniff', `${what}: nosniff, as every admin answer`);
  }
  // Bytes node cannot parse behind a request answered and kept alive: their own refusal, after its answer.
  const behind = await openRaw(gw.adminUrl, ['GET', 'GET']);
  behind.write(`GET /admin/nope HTTP/1.1\r\nHost: ${host}\r\n\r\nGARBAGE\r\n\r\n`);
  t.same(
    (await behind.waitFor(2)).map((r) => r.status),
    [404, 400],
  );
  await behind.closed;
  // Behind answers still being made (a status, /metrics): the refusal was written at once and their answers lost.
  const afterAsync = await openRaw(gw.adminUrl, ['GET', 'GET', 'GET']);
  afterAsync.write(
    `GET /admin/status HTTP/1.1\r\nHost: ${host}\r\n\r\nGET /metrics HTTP/1.1\r\nHost: ${host}\r\n\r\n` +
      'GARBAGE\r\n\r\n',
  );
  t.same(
    (await afterAsync.waitFor(3)).map((r) => r.status),
    [200, 200, 400],
    'the refusal after the answers of the requests before it',
  );
  await afterAsync.closed;
  // Absolute-form, which a server must accept (RFC 9112 §3.2.2): it was a 404 (a probe).
  const absolute = await openRaw(gw.adminUrl, ['GET']);
  absolute.write(`GET http://${host}/admin/status HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  t.equal((await absolute.waitFor(1))[0]!.status, 200, 'an absolute-form target is served');
  const notOrigin = await openRaw(gw.adminUrl, ['OPTIONS']);
  notOrigin.write(`OPTIONS * HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  t.equal((await notOrigin.waitFor(1))[0]!.status, 400, 'asterisk-form is no target here');
  const head = await openRaw(gw.adminUrl, ['HEAD']);
  head.write(`HEAD /admin/status HTTP/1.1\r\nHost: ${host}\r\nConnection: close\r\n\r\n`);
  const [res] = await head.waitFor(1);
  t.equal(res!.status, 200, 'HEAD is a GET without its body');
  t.equal(res!.body, '');
  // node's parser drops what follows an upgrade request: the connection ends after its answer (as the main port's
  // does) instead of leaving the request behind it unanswered until the keep-alive timeout.
  const upgrade = await openRaw(gw.adminUrl, ['GET', 'GET']);
  upgrade.write(
    `GET /admin/status HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n` +
      `GET /admin/status HTTP/1.1\r\nHost: ${host}\r\n\r\n`,
  );
  const [answer] = await upgrade.waitFor(1);
  t.same([answer!.status, answer!.headers['connection']], [200, 'close'], 'an Upgrade is answered, then closed');
  await upgrade.closed;
  t.equal(upgrade.responses.length, 1);
});
