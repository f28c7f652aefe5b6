import t, { type Test } from 'tap';
import { startGateway, TEST_WORKER_ENTRY, type Gateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { openRaw } from '../helpers/raw-http.js';

// Issue 9 part 1, SPEC §4a: no byte the client sends reaches the worker except
// as the body of the request the master routed. Every variant that desynced
// the master → worker keep-alive socket before: a body on a method without
// one (chunked or with Content-Length), and a Content-Length the client named
// as hop-by-hop. One worker socket (maxSocketsPerWorker 1) so a smuggled
// request would land on the very socket the next client uses.

interface Echo {
  method: string;
  url: string;
  headers: Record<string, string>;
  bodyBytes: number;
  body: string;
}
interface Stats {
  total: number;
  seen: Array<{ method: string; url: string }>;
}

const SMUGGLED =
  'POST /smuggled HTTP/1.1\r\nHost: worker\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}';

function chunked(body: string): string {
  return `${Buffer.byteLength(body).toString(16)}\r\n${body}\r\n0\r\n\r\n`;
}

/** The test worker's counts (GET /stats, itself not counted). */
async function workerStats(url: string): Promise<Stats> {
  return json<Stats>(await httpRequest(`${url}/stats`));
}

/**
 * The requests the worker saw since it had seen `before` in all (its `total` then): a gateway shared by a group's tests
 * holds the tests before's too. The worker keeps its last 100.
 */
function seenSince(stats: Stats, before: number): Array<{ method: string; url: string }> {
  const count = stats.total - before;
  if (count > stats.seen.length) throw new Error(`${count} requests since, more than the worker keeps`);
  return count === 0 ? [] : stats.seen.slice(-count);
}

// One gateway for the tests of each group (a master and its worker's start were most of such a test's CPU): its
// worker's counts are the group's, and each test reads what it sent since it began (seenSince).
t.test('one worker socket (maxSocketsPerWorker 1)', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { maxSocketsPerWorker: 1, maxIdleSocketsPerWorker: 1 },
  });
  t.test('request smuggling through the master reaches nothing', (t) => smuggling(t, gw));
  t.test('a head of 2000 header lines or more is refused: Node dropped lines the master cannot see', (t) =>
    manyHeaderLines(t, gw),
  );
});

async function smuggling(t: Test, gw: Gateway): Promise<void> {
  const variants: Array<{ name: string; method: string; head: string; body: string }> = [];
  for (const method of ['GET', 'HEAD', 'DELETE', 'OPTIONS']) {
    variants.push({
      name: `${method} + Transfer-Encoding: chunked`,
      method,
      head: `${method} /echo?v=${method}-te HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n`,
      body: chunked(SMUGGLED),
    });
  }
  variants.push({
    name: 'GET + Content-Length + Connection: content-length',
    method: 'GET',
    head: `GET /echo?v=get-cl HTTP/1.1\r\nHost: gw\r\nConnection: keep-alive, content-length\r\nContent-Length: ${Buffer.byteLength(SMUGGLED)}\r\n\r\n`,
    body: SMUGGLED,
  });
  variants.push({
    name: 'POST + chunked body holding a second request',
    method: 'POST',
    head: 'POST /echo?v=post-te HTTP/1.1\r\nHost: gw\r\nTransfer-Encoding: chunked\r\n\r\n',
    body: chunked(SMUGGLED),
  });

  let expectedTotal = (await workerStats(gw.url)).total;
  for (const v of variants) {
    t.test(v.name, async (t) => {
      const attacker = await openRaw(gw.url, [v.method, 'GET']);
      attacker.write(v.head + v.body);
      const [first] = await attacker.waitFor(1);
      expectedTotal++;
      t.equal(first!.status, 200, 'one answer to the request the client sent');
      if (v.method !== 'HEAD') {
        const echo = JSON.parse(first!.body) as Echo;
        t.equal(echo.method, v.method);
        t.equal(echo.bodyBytes, Buffer.byteLength(SMUGGLED), 'the smuggled request arrived as the body, whole');
        t.equal(
          echo.headers['content-length'],
          String(Buffer.byteLength(SMUGGLED)),
          'framed by the master with a fresh Content-Length',
        );
        t.notOk(echo.headers['transfer-encoding'], 'never with the client framing');
        t.equal(echo.body, SMUGGLED);
      }
      // The attacker's next request on its connection gets its own answer.
      attacker.write('GET /echo?next=attacker HTTP/1.1\r\nHost: gw\r\n\r\n');
      const [, second] = await attacker.waitFor(2);
      expectedTotal++;
      t.equal((JSON.parse(second!.body) as Echo).url, '/echo?next=attacker', 'the attacker gets no one else’s answer');
      attacker.socket.destroy();
      // A victim on another connection, over the same worker socket, gets its own answer.
      const victim = json<Echo>(await httpRequest(`${gw.url}/echo?victim=1`));
      expectedTotal++;
      t.equal(victim.url, '/echo?victim=1', 'the victim gets its own answer');
      const stats = json<Stats>(await httpRequest(`${gw.url}/stats`));
      t.notOk(
        stats.seen.some((s) => s.url.startsWith('/smuggled')),
        'the worker never parsed the smuggled request',
      );
      t.equal(stats.total, expectedTotal, 'the worker saw exactly the requests the master routed');
    });
  }
}

async function manyHeaderLines(t: Test, gw: Gateway): Promise<void> {
  // Node keeps 2000 header lines and drops the rest, a Content-Length at the end among them, while its parser
  // still frames the body by it: the master forwarded the request with no body (a 200 MiB body passed a 1 MiB
  // limit unseen), and with the cut lifted alone the worker would drop the master's Content-Length instead.
  const before = (await workerStats(gw.url)).total;
  const conn = await openRaw(gw.url, ['POST', 'GET']);
  conn.write(
    `POST /echo?many HTTP/1.1\r\nHost: gw\r\n${'a:1\r\n'.repeat(2000)}Content-Length: ${Buffer.byteLength(SMUGGLED)}\r\n\r\n${SMUGGLED}`,
  );
  const [refused] = await conn.waitFor(1);
  t.equal(refused!.status, 431);
  t.match(refused!.body, /"code":"headers_too_large"/);
  t.equal(refused!.headers['connection'], 'close', 'and the connection closes: its framing is not one the master saw');
  await conn.closed;
  t.same(
    seenSince(await workerStats(gw.url), before).map((s) => s.url),
    [],
    'the worker saw nothing of it',
  );
  conn.socket.destroy();
  // Exactly 2000 lines: all Node keeps, so one more may have been dropped unseen.
  const atCap = await openRaw(gw.url, ['GET']);
  atCap.write(`GET /echo?cap HTTP/1.1\r\nHost: gw\r\n${'a:1\r\n'.repeat(1999)}\r\n`);
  const [capped] = await atCap.waitFor(1);
  t.equal(capped!.status, 431, 'exactly 2000 lines');
  atCap.socket.destroy();
  // 1999 lines are forwarded whole, framing included.
  const ok = await openRaw(gw.url, ['POST']);
  ok.write(`POST /echo?fewer HTTP/1.1\r\nHost: gw\r\n${'a:1\r\n'.repeat(1997)}Content-Length: 2\r\n\r\n{}`);
  const [echo] = await ok.waitFor(1);
  t.equal(echo!.status, 200);
  t.equal((JSON.parse(echo!.body) as Echo).bodyBytes, 2);
  ok.socket.destroy();
}

t.test('the default limits', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } });
  t.test('the worker gets the request target the master read, byte for byte', (t) => targets(t, gw));
  t.test('an absolute-form target is its path as sent; the master answers its own paths in that form too', (t) =>
    absoluteForm(t, gw),
  );
  t.test('what nginx refuses in a head, and what a Connection header cannot remove (a front-proxy probe)', (t) =>
    frontProxyProbe(t, gw),
  );
  t.test("an absolute-form target's Host is checked as any other before the target's host replaces it", (t) =>
    absoluteFormHost(t, gw),
  );
});

async function targets(t: Test, gw: Gateway): Promise<void> {
  // http-proxy-3 rebuilt the path through `new URL`, which resolves dot segments, `%2e%2e` among them, and turns
  // backslashes into slashes: the worker answered a path the master never saw (`/v1/%2e%2e/v1/chat/completions`
  // was a chat call). nginx's `proxy_pass` without a URI forwards the target unchanged; so does the master.
  const before = (await workerStats(gw.url)).total;
  const targets = ['/x/%2e%2e/echo?a=1', '/x/../echo', '/x/%2E%2e/%2e/echo?b=%2e%2e', '//echo', '/x\\..\\echo'];
  const conn = await openRaw(
    gw.url,
    targets.map(() => 'GET'),
  );
  for (const target of targets) conn.write(`GET ${target} HTTP/1.1\r\nHost: gw\r\n\r\n`);
  const answers = await conn.waitFor(targets.length);
  conn.socket.destroy();
  t.same(
    seenSince(await workerStats(gw.url), before).map((s) => s.url),
    targets,
    'each target reached the worker as sent',
  );
  t.equal(answers.length, targets.length, 'each answered in turn');
}

async function absoluteForm(t: Test, gw: Gateway): Promise<void> {
  // RFC 9112 §3.2.2: a server must accept `GET http://host/path`. Its path was rebuilt through `new URL` (dot segments
  // resolved: not the path origin-form sends) and `http://gw/healthz` went to a worker (404), past the master's own.
  const before = (await workerStats(gw.url)).total;
  const conn = await openRaw(gw.url, ['GET', 'GET']);
  conn.write(
    'GET http://api.example:8443/x/../echo?c=1 HTTP/1.1\r\nHost: gw\r\n\r\nGET http://gw/healthz HTTP/1.1\r\nHost: gw\r\n\r\n',
  );
  const [echo, health] = await conn.waitFor(2);
  conn.socket.destroy();
  t.equal(echo!.status, 200);
  // RFC 9112 §3.2.2: the target's host replaces Host (it reached the worker as `gw`).
  const { headers } = JSON.parse(echo!.body) as Echo;
  t.equal(headers['host'], 'api.example:8443', "the worker's Host is the target's");
  t.equal(headers['x-forwarded-host'], 'api.example:8443');
  t.equal(headers['x-forwarded-port'], new URL(gw.url).port, "the listener's port, not the target's or Host's");
  t.same(JSON.parse(health!.body), { status: 'ok' }, "the master's /healthz");
  t.same(
    seenSince(await workerStats(gw.url), before).map((s) => s.url),
    ['/x/../echo?c=1'],
    'the worker saw the path as sent, and no /healthz',
  );
  const userinfo = await openRaw(gw.url, ['GET', 'GET']);
  // As every refused head: what follows is not read (a README walk-through's pipelined request was answered).
  userinfo.write(
    'GET http://user:secret@gw/echo HTTP/1.1\r\nHost: gw\r\n\r\nGET /echo?after HTTP/1.1\r\nHost: gw\r\n\r\n',
  );
  await userinfo.closed;
  const [refused, ...after] = userinfo.responses;
  t.same(after, [], 'the connection closes after it');
  t.equal(refused!.headers['connection'], 'close');
  t.equal(refused!.status, 400, 'userinfo in the target: 400');
  t.match(JSON.parse(refused!.body), { error: { code: 'invalid_request', message: /malformed request target/ } });
  t.ok(refused!.headers['x-request-id'], 'with its request id, as every refusal of the gateway');
  // A head that is refused and closed for its headers is, whatever its target (the target's 400 came first).
  const both = await openRaw(gw.url, ['GET']);
  both.write('GET * HTTP/1.1\r\nHost: gw\r\nHost: other\r\n\r\nGET /echo HTTP/1.1\r\nHost: gw\r\n\r\n');
  const [first] = await both.waitFor(1);
  t.match(JSON.parse(first!.body), { error: { message: /needs one Host header/ } });
  await both.closed;
}

async function frontProxyProbe(t: Test, gw: Gateway): Promise<void> {
  const worker = (): Promise<Stats> => workerStats(gw.url);

  t.test('a Host no host has: 400, and the connection closes', async (t) => {
    const before = (await worker()).total;
    for (const host of ['a b', 'evil.example/x@y', 'gw, other']) {
      const conn = await openRaw(gw.url, ['GET']);
      conn.write(`GET /echo?host HTTP/1.1\r\nHost: ${host}\r\n\r\nGET /echo?after HTTP/1.1\r\nHost: gw\r\n\r\n`);
      const [res] = await conn.waitFor(1);
      t.equal(res!.status, 400, host);
      await conn.closed;
    }
    t.equal((await worker()).total, before, 'none reached the worker');
    for (const host of [
      'gw',
      'gw:8000',
      'GW.example.:8000',
      '127.0.0.1:1',
      '[::1]:8000',
      '[fe80::1%25eth0]:8000',
      'xn--bcher-kva.example',
      'b\u00fccher.example',
      'under_score.example',
    ])
      t.equal((await httpRequest(`${gw.url}/echo`, { headers: { host } })).status, 200, host);
  });

  t.test('a request line of HTTP/2.0 or HTTP/0.9: 505 and closed, health paths too (nginx: 505)', async (t) => {
    // Node's parser takes both with headers; they were answered as HTTP/1.1.
    const before = (await worker()).total;
    for (const version of ['2.0', '0.9']) {
      for (const target of ['/echo', '/healthz']) {
        const conn = await openRaw(gw.url, ['GET']);
        conn.write(`GET ${target} HTTP/${version}\r\nHost: gw\r\n\r\nGET /echo?after HTTP/1.1\r\nHost: gw\r\n\r\n`);
        const [res] = await conn.waitFor(1);
        t.equal(res!.status, 505, `HTTP/${version} ${target}`);
        t.match(JSON.parse(res!.body), { error: { code: 'invalid_request', message: /send HTTP\/1\.1/ } });
        await conn.closed;
      }
    }
    t.equal((await worker()).total, before, 'nothing reached the worker');
  });

  t.test('a health path meets the same checks: refused and closed, nothing after it served', async (t) => {
    // /healthz and /readyz were answered before the head's checks: 200, kept alive, and what followed the head (a
    // gzip-coded body never read) was served as a request of its own.
    const before = (await worker()).total;
    for (const [head, status] of [
      ['Host: gw\r\nHost: other', 400],
      ['Host: gw\r\nTransfer-Encoding: gzip', 501],
      ['Host: gw\r\nExpect: tea', 417],
    ] as const) {
      for (const target of ['/healthz', '/readyz']) {
        const conn = await openRaw(gw.url, ['GET']);
        conn.write(`GET ${target} HTTP/1.1\r\n${head}\r\n\r\nGET /echo?after HTTP/1.1\r\nHost: gw\r\n\r\n`);
        const [res] = await conn.waitFor(1);
        t.equal(res!.status, status, `${target} with ${JSON.stringify(head)}`);
        await conn.closed;
      }
    }
    t.equal((await worker()).total, before, 'nothing after them reached the worker');
  });

  t.test('HTTP/1.0 with Transfer-Encoding: 400 and closed, nothing after it served (RFC 9112 §6.1)', async (t) => {
    const before = (await worker()).total;
    const conn = await openRaw(gw.url, ['POST']);
    conn.write(
      'POST /echo?h10 HTTP/1.0\r\nHost: gw\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n' +
        '5\r\nhello\r\n0\r\n\r\nGET /echo?after HTTP/1.1\r\nHost: gw\r\n\r\n',
    );
    const [res] = await conn.waitFor(1);
    t.equal(res!.status, 400);
    await conn.closed;
    t.equal((await worker()).total, before, 'neither reached the worker');
  });

  t.test('Connection naming Host or X-Forwarded-For removes neither; a custom hop header goes', async (t) => {
    const res = await httpRequest(`${gw.url}/echo`, {
      headers: {
        host: 'api.example',
        'x-forwarded-for': '203.0.113.7',
        'x-hop': '1',
        connection: 'keep-alive, host, x-forwarded-for, x-hop',
      },
    });
    const echo = json<Echo>(res).headers;
    t.equal(echo['host'], 'api.example');
    t.match(echo['x-forwarded-for'], /^203\.0\.113\.7,/, "the front's address first, the master's peer after it");
    t.notOk(echo['x-hop']);
  });
}

async function absoluteFormHost(t: Test, gw: Gateway): Promise<void> {
  // RFC 9112 §3.2: a Host of no host's value is a 400 whatever the target's form (nginx too); it was replaced, unread.
  const before = (await workerStats(gw.url)).total;
  for (const target of ['/echo', 'http://gw/echo']) {
    const conn = await openRaw(gw.url, ['GET']);
    conn.write(`GET ${target} HTTP/1.1\r\nHost: a b\r\n\r\n`);
    const [refused] = await conn.waitFor(1);
    conn.socket.destroy();
    t.equal(refused!.status, 400, target);
    t.match(JSON.parse(refused!.body), { error: { message: /the Host header is not a host name/ } }, target);
  }
  t.same(seenSince(await workerStats(gw.url), before), [], 'neither reached the worker');
}
