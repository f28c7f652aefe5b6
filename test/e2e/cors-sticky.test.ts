import t from 'tap';
import { startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';

// SPEC §12 CORS (issue 12 part 4) and the body's `user` as sticky key
// (issue 12 part 5), through the real master.

interface Stats {
  total: number;
}

t.test('CORS and body-user stickiness', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 50 }, v2: { entry: TEST_WORKER_ENTRY, weight: 50 } },
    cors: { origins: ['https://app.example'] },
  });
  const total = async (): Promise<number> =>
    json<Stats>(await httpRequest(`${gw.url}/stats?version=v1`)).total +
    json<Stats>(await httpRequest(`${gw.url}/stats?version=v2`)).total;

  t.test('a preflight from an allowed origin is answered by the master', async (t) => {
    const before = await total();
    const res = await httpRequest(`${gw.url}/v1/chat/completions`, {
      method: 'OPTIONS',
      headers: {
        origin: 'https://app.example',
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'content-type, authorization, x-stainless-os',
      },
    });
    t.equal(res.status, 204);
    t.equal(res.headers['access-control-allow-origin'], 'https://app.example');
    const allowed = String(res.headers['access-control-allow-headers']).split(', ');
    for (const h of ['authorization', 'content-type', 'x-version', 'x-user-id', 'x-stainless-os'])
      t.ok(allowed.includes(h), `allows ${h}`);
    t.match(String(res.headers['access-control-allow-methods']), /POST/);
    t.equal(res.headers['vary'], 'Origin');
    t.equal(await total(), before, 'no worker saw the preflight');
  });

  t.test('answers to an allowed origin carry Access-Control-Allow-Origin and expose graygate headers', async (t) => {
    const res = await httpRequest(`${gw.url}/echo`, {
      method: 'POST',
      headers: { origin: 'https://app.example', 'content-type': 'application/json' },
      body: '{}',
    });
    t.equal(res.status, 200);
    t.equal(res.headers['access-control-allow-origin'], 'https://app.example');
    t.match(String(res.headers['access-control-expose-headers']), /x-graygate-version/);
    t.match(String(res.headers['access-control-expose-headers']), /x-request-id/);
    // What the openai SDK reads of an upstream's answer (relayed by the worker), readable by the page too.
    t.match(String(res.headers['access-control-expose-headers']), /x-ratelimit-remaining-requests/);
    const refused = await httpRequest(`${gw.url}/echo?version=nope`, { headers: { origin: 'https://app.example' } });
    t.equal(refused.status, 404);
    t.equal(
      refused.headers['access-control-allow-origin'],
      'https://app.example',
      'errors too, so the page can read them',
    );
  });

  t.test('a refusal of the head is readable by an allowed page too', async (t) => {
    // A browser probe: a page gzipping its prompt (CompressionStream, Content-Encoding: gzip) saw only "TypeError:
    // Failed to fetch", not the 415 saying to send the body as is: the head's refusals came before the CORS headers.
    const res = await httpRequest(`${gw.url}/echo`, {
      method: 'POST',
      headers: { origin: 'https://app.example', 'content-type': 'application/json', 'content-encoding': 'gzip' },
      body: '{}',
    });
    t.equal(res.status, 415);
    t.equal(res.headers['access-control-allow-origin'], 'https://app.example');
    t.match(String(res.headers['access-control-expose-headers']), /x-request-id/);
    t.equal(res.headers['vary'], 'Origin');
  });

  t.test('a request from an origin not allowed never reaches a worker', async (t) => {
    const before = await total();
    const simple = await httpRequest(`${gw.url}/echo`, {
      method: 'POST',
      headers: { origin: 'https://evil.example', 'content-type': 'text/plain' },
      body: '{"messages":[]}',
    });
    t.equal(simple.status, 403);
    t.equal(json<{ error: { code: string } }>(simple).error.code, 'forbidden');
    t.notOk(simple.headers['access-control-allow-origin']);
    t.equal(simple.headers['vary'], 'Origin', 'a cache must not serve this answer to an allowed page');
    const preflight = await httpRequest(`${gw.url}/echo`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    t.equal(preflight.status, 403);
    t.equal(await total(), before, 'nothing was forwarded');
  });

  t.test(
    'an answer to a request without Origin says Vary: Origin, so no shared cache serves it to a page',
    async (t) => {
      const res = await httpRequest(`${gw.url}/echo`, { method: 'POST', body: '{}' });
      t.equal(res.status, 200);
      t.notOk(res.headers['access-control-allow-origin']);
      t.equal(res.headers['vary'], 'Origin');
    },
  );

  t.test('the body `user` keeps one user on one version over 40 calls with no cookie', async (t) => {
    const seen = new Set<string>();
    for (let i = 0; i < 40; i++) {
      const res = await httpRequest(`${gw.url}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: `turn ${i}` }], user: 'user-7' }),
      });
      t.notOk(res.headers['set-cookie'], 'no cookie needed');
      seen.add(String(res.headers['x-graygate-version']));
    }
    t.equal(seen.size, 1, `one version for one user (${[...seen].join(', ')})`);
    const spread = new Set<string>();
    for (let u = 0; u < 40; u++) {
      const res = await httpRequest(`${gw.url}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ messages: [], user: `u-${u}` }),
      });
      spread.add(String(res.headers['x-graygate-version']));
    }
    t.equal(spread.size, 2, 'different users still spread over the weights');
    const header = await httpRequest(`${gw.url}/echo`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-user-id': 'user-7' },
      body: '{"user":"someone-else"}',
    });
    t.equal(
      header.headers['x-graygate-version'],
      [...seen][0],
      'x-user-id wins over the body, and the same key lands on the same version',
    );
  });

  t.test("a body with `safety_identifier` (OpenAI's successor of `user`) and no `user` is keyed by it", async (t) => {
    const versionOf = async (body: Record<string, unknown>): Promise<string> => {
      const res = await httpRequest(`${gw.url}/echo`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', messages: [], ...body }),
      });
      t.notOk(res.headers['set-cookie'], 'no cookie needed');
      return String(res.headers['x-graygate-version']);
    };
    const byUser = await versionOf({ user: 'user-7' });
    const seen = new Set<string>();
    for (let i = 0; i < 20; i++) seen.add(await versionOf({ safety_identifier: 'user-7' }));
    t.same([...seen], [byUser], 'one version for one identifier, the one the same key as `user` gets');
    const spread = new Set<string>();
    for (let u = 0; u < 40; u++) spread.add(await versionOf({ safety_identifier: `s-${u}` }));
    t.equal(spread.size, 2, 'different identifiers spread over the weights');
    const other = [...spread].find((v) => v !== byUser)!;
    let differs = 0;
    while (differs < 40 && (await versionOf({ safety_identifier: `t-${differs}` })) !== other) differs++;
    t.equal(
      await versionOf({ user: 'user-7', safety_identifier: `t-${differs}` }),
      byUser,
      '`user` wins over `safety_identifier` when a body has both',
    );
  });
});
