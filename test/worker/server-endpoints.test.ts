import t from 'tap';
import { request } from 'node:http';
import { startMockUpstream, mockText, BASE_PATHS } from '../../shared/mock-upstream/index.js';
import { httpRequest, json, type SimpleResponse } from '../helpers/http.js';
import { startTestWorker } from './fixtures/worker-server.js';
import { causeOf } from '../../worker/call/handler.js';
import { DEAD_PORT } from '../helpers/dead-port.js';

// The worker's own HTTP surface (SPEC §4a, §12), on a direct connection as
// the master has it: 102 pings while a whole answer is pending, 405s with
// Allow, the deploy probe's answer, and the one log line of every endpoint.

/** What the master's proxy adds to every request it forwards (SPEC §3). */
const PROXIED = { 'x-graygate-version': 'v1', 'x-request-id': 'req-1' };

/** POSTs `body` and counts the 1xx answers before the final one. */
function postCounting(url: string, body: unknown): Promise<{ status: number; informational: number[]; body: string }> {
  return new Promise((resolve, reject) => {
    const payload = JSON.stringify(body);
    const informational: number[] = [];
    const req = request(
      url,
      {
        method: 'POST',
        agent: false,
        headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload), ...PROXIED },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, informational, body: Buffer.concat(parts).toString('utf8') }),
        );
      },
    );
    req.on('information', (info) => informational.push(info.statusCode));
    req.on('error', reject);
    req.end(payload);
  });
}

/** An upstream that is down; not a freed port 0, which another test file's server can take (dead-port.ts). */
const DEAD_URL = `http://127.0.0.1:${DEAD_PORT}/v1`;

t.test(
  'a whole answer slower than a third of workerHeadersTimeoutMs gets 102 Processing until it starts',
  async (t) => {
    const mock = await startMockUpstream({});
    t.teardown(() => mock.close());
    // The mock and the worker share this event loop: the 20 ms 102
    // timer, armed first, fires before the mock's 300 ms one.
    const w = await startTestWorker(t, {
      upstream: { format: 'anthropic', url: mock.url + BASE_PATHS.anthropic, pingIntervalMs: 20 },
      workerHeadersTimeoutMs: 60,
    });
    const chat = await postCounting(`${w.url}/v1/chat/completions`, {
      model: 'm',
      messages: [{ role: 'user', content: 'hi [mock tokens=3 first-byte-ms=300]' }],
    });
    t.equal(chat.status, 200);
    t.ok(chat.informational.length >= 1, `102s before the answer (${chat.informational.length})`);
    t.ok(
      chat.informational.every((s) => s === 102),
      'only 102s',
    );
    t.equal(
      (JSON.parse(chat.body) as { choices: Array<{ message: { content: string } }> }).choices[0]!.message.content,
      mockText(3),
      'and the right answer',
    );

    const streamed = await postCounting(`${w.url}/v1/chat/completions`, {
      model: 'm',
      stream: true,
      messages: [{ role: 'user', content: 'hi [mock tokens=3 first-byte-ms=100]' }],
    });
    t.ok(
      streamed.informational.every((s) => s === 102),
      'a stream gets 102s only until its head (the upstream answered)',
    );
    t.match(streamed.body, /: ping/, 'then `: ping` comments');
  },
);

t.test('relayed whole answers get 102s too', async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const w = await startTestWorker(t, {
    upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai },
    workerHeadersTimeoutMs: 60,
  });
  const res = await postCounting(`${w.url}/v1/completions`, {
    model: 'm',
    prompt: 'hi [mock tokens=2 first-byte-ms=300]',
  });
  t.equal(res.status, 200);
  t.ok(res.informational.length >= 1);
  t.equal((JSON.parse(res.body) as { choices: Array<{ text: string }> }).choices[0]!.text, mockText(2));
});

t.test('405 answers carry Allow; unknown paths are 404', async (t) => {
  const w = await startTestWorker(t, { upstream: { format: 'ollama', url: DEAD_URL } });
  for (const [method, path, allow] of [
    ['GET', '/v1/chat/completions', 'POST'],
    ['GET', '/v1/embeddings', 'POST'],
    ['PUT', '/v1/responses', 'POST'],
    ['POST', '/v1/models', 'GET, HEAD'],
    ['DELETE', '/v1/models/x', 'GET, HEAD'],
  ]) {
    const res = await httpRequest(`${w.url}${path}`, { method: method! });
    t.equal(res.status, 405, `${method} ${path}`);
    t.equal(res.headers['allow'], allow);
    t.equal(json<{ error: { code: string } }>(res).error.code, 'method_not_allowed');
  }
  t.equal((await httpRequest(`${w.url}/v1/nothing`, { method: 'POST' })).status, 404);
  const head = await httpRequest(`${w.url}/v1/models`, { method: 'HEAD' });
  t.equal(head.status, 200, 'HEAD wherever GET');
  t.equal(head.body, '', 'and no body');
});

t.test(
  "a malformed or unconvertible body's 400 names its field in `param`, written as api.openai.com writes it",
  async (t) => {
    const w = await startTestWorker(t, { upstream: { format: 'anthropic', url: DEAD_URL } });
    const post = async (path: string, body: unknown): Promise<{ status: number; error: Record<string, unknown> }> => {
      const res = await httpRequest(`${w.url}${path}`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', ...PROXIED },
        body: JSON.stringify(body),
      });
      return { status: res.status, error: json<{ error: Record<string, unknown> }>(res).error };
    };
    // The OpenAI SDK reads `err.param`; api.openai.com writes an array's index in brackets (`messages.[2].content`).
    const malformed = await post('/v1/chat/completions', { model: 'm', messages: [{ role: 'user', content: 5 }] });
    t.equal(malformed.status, 400);
    t.match(malformed.error, {
      code: 'invalid_request',
      param: 'messages.[0].content',
      message: /^messages\.0\.content: /,
    });
    const unconvertible = await post('/v1/chat/completions', {
      model: 'm',
      messages: [{ role: 'user', content: 'x' }],
      seed: 1,
    });
    t.match(unconvertible.error, { code: 'invalid_request', param: 'seed' });
    const openai = await startTestWorker(t, { upstream: { format: 'openai', url: DEAD_URL } });
    const endpoint = await httpRequest(`${openai.url}/v1/embeddings`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...PROXIED },
      body: JSON.stringify({ model: 'm', input: 'x', dimensions: 0 }),
    });
    t.match(json<{ error: unknown }>(endpoint).error, { code: 'invalid_request', param: 'dimensions' });
    const notJson = await httpRequest(`${w.url}/v1/chat/completions`, { method: 'POST', headers: PROXIED, body: '{' });
    t.notOk(
      'param' in json<{ error: Record<string, unknown> }>(notJson).error,
      'a body that is not JSON: no field named',
    );
  },
);

t.test('an upstream call that fails says in the request line what it met (the address refused)', async (t) => {
  const url = DEAD_URL;
  const down = await startTestWorker(t, { upstream: { format: 'openai', url } });
  const res = await httpRequest(`${down.url}/v1/chat/completions`, {
    method: 'POST',
    headers: { ...PROXIED, 'content-type': 'application/json' },
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  });
  t.equal(json<{ error: { code: string } }>(res).error.code, 'upstream_unreachable');
  t.notOk(res.body.includes(new URL(url).host), 'the client is not told where the upstream is');
  const line = down.lines().find((l) => l['msg'] === 'request finished');
  t.equal(line?.['error'], 'upstream_unreachable');
  t.match(line?.['errorCause'], `ECONNREFUSED ${new URL(url).host}`, 'the line has the address that refused');
});

t.test(
  'an error the upstream answered or reported: the request line says what it said, as the client read',
  async (t) => {
    const mock = await startMockUpstream({});
    t.teardown(() => mock.close());
    const w = await startTestWorker(t, { upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } });
    const chat = (content: string, stream: boolean, id: string): Promise<SimpleResponse> =>
      httpRequest(`${w.url}/v1/chat/completions`, {
        method: 'POST',
        headers: { ...PROXIED, 'x-request-id': id, 'content-type': 'application/json' },
        body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content }] }),
      });
    const quota = await chat('hi [mock fault=status status=429]', false, 'status-429');
    const said = json<{ error: { message: string } }>(quota).error.message;
    t.equal(quota.status, 429);
    const server = await chat('hi [mock fault=status status=503]', false, 'status-503');
    t.equal(server.status, 502, "a 5xx is the gateway's 502: only the line keeps the upstream's own status");
    const midStream = await chat('hi [mock tokens=3 fault=error after=1 status=500]', true, 'in-stream');
    t.match(midStream.body, /"error"/);
    const lines = new Map(
      w
        .lines()
        .filter((l) => l['msg'] === 'request finished')
        .map((l) => [l['reqId'], l]),
    );
    t.match(lines.get('status-429'), { status: 429, error: 'upstream_status', errorCause: said });
    t.match(lines.get('status-503'), { status: 502, error: 'upstream_status', errorCause: /^upstream answered 503: / });
    t.match(lines.get('in-stream'), {
      status: 200,
      error: 'upstream_status',
      errorCause: /the upstream reported an error/,
    });
  },
);

t.test('causeOf: every address of a name that refused, a bounded walk, nothing from our own errors', async (t) => {
  const refused = (address: string): Error =>
    Object.assign(new Error(`connect ECONNREFUSED ${address}:8000`), { code: 'ECONNREFUSED' });
  // localhost as ::1 and 127.0.0.1, both tried (node's autoSelectFamily): an AggregateError with an empty message.
  const both = Object.assign(new AggregateError([refused('::1'), refused('127.0.0.1')], ''), { code: 'ECONNREFUSED' });
  t.equal(
    causeOf(new Error('could not connect', { cause: new Error('fetch failed', { cause: both }) })),
    'connect ECONNREFUSED ::1:8000; connect ECONNREFUSED 127.0.0.1:8000',
  );
  const loop: Error & { cause?: unknown } = new Error('a');
  loop.cause = new Error('b', { cause: loop });
  t.type(causeOf(new Error('x', { cause: loop })), 'string', 'a cycle of causes ends');
  t.equal(causeOf(new Error('no cause')), undefined);
  t.equal(causeOf('not an error'), undefined);
  t.equal(
    causeOf(new Error('x', { cause: Object.assign(new Error('socket hang up'), { code: 'ECONNRESET' }) })),
    'ECONNRESET: socket hang up',
    'a code the message does not say is put first',
  );
});

t.test("the deploy probe never waits for the upstream; clients get the upstream's answer", async (t) => {
  const down = await startTestWorker(t, { upstream: { format: 'openai', url: DEAD_URL } });
  const probe = await httpRequest(`${down.url}/v1/models`);
  t.equal(probe.status, 200, 'the probe (no x-graygate-version) is answered from what is known');
  t.same(json(probe), { object: 'list', data: [] });
  const client = await httpRequest(`${down.url}/v1/models`, { headers: PROXIED });
  t.equal(client.status, 502);
  t.equal(json<{ error: { code: string } }>(client).error.code, 'upstream_unreachable');

  const mock = await startMockUpstream({ models: ['m1'] });
  t.teardown(() => mock.close());
  const up = await startTestWorker(t, { upstream: { format: 'ollama', url: mock.url } });
  t.same(
    json<{ data: unknown[] }>(await httpRequest(`${up.url}/v1/models`, { headers: PROXIED })).data.map(
      (m) => (m as { id: string }).id,
    ),
    ['m1'],
  );
  t.same(
    json<{ data: unknown[] }>(await httpRequest(`${up.url}/v1/models`)).data.map((m) => (m as { id: string }).id),
    ['m1'],
    'once known, the probe sees the list too',
  );
});

t.test('every endpoint logs one line with its tokens', async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const w = await startTestWorker(t, { upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } });
  const post = (path: string, body: unknown): Promise<unknown> =>
    httpRequest(`${w.url}${path}`, {
      method: 'POST',
      body: JSON.stringify(body),
      headers: { 'content-type': 'application/json', ...PROXIED },
    });
  await post('/v1/responses', { model: 'm', input: 'hi [mock tokens=4]', stream: true });
  await post('/v1/completions', { model: 'm', prompt: 'hi [mock tokens=3]' });
  await post('/v1/embeddings', { model: 'm', input: ['a b c', 'd'] });
  const lines = w.lines().filter((l) => l['msg'] === 'request finished');
  t.match(lines, [
    { path: '/v1/responses', status: 200, stream: true, tokens: 4, promptTokens: 3, reqId: 'req-1' },
    { path: '/v1/completions', status: 200, stream: false, tokens: 3, promptTokens: 3 },
    { path: '/v1/embeddings', status: 200, stream: false, promptTokens: 4 },
  ]);
  t.ok(lines.every((l) => typeof l['bytesOut'] === 'number' && l['bytesOut'] > 0));
});
