import t from 'tap';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';

// SPEC §5: an upstream's 429 and 4xx pass through with their meaning. The status and Retry-After come in the answer's
// head; its body only says why. A body cut short (a proxy that closes before the Content-Length it promised) or one
// that never ends (the call's deadline fires while it is read) was the client's 502 upstream_reset or 504
// upstream_timeout, the 429's Retry-After and the 401's meaning lost (a hostile-upstream probe's finding).

interface ErrorBody {
  error: { message: string; code: string };
}

const RATE_LIMITED = '{"error":{"message":"slow down","type":"rate_limit_error"}}';
const BAD_KEY = '{"error":{"message":"bad key","type":"invalid_request_error"}}';

/** Every answer's head and the first part of its body, 100 bytes short of its Content-Length; `hang`: kept open. */
function answer(model: string): { text: string; hang: boolean } {
  const [status, body] = model.startsWith('rate')
    ? ['429 Too Many Requests', RATE_LIMITED]
    : ['401 Unauthorized', BAD_KEY];
  const head = `HTTP/1.1 ${status}\r\ncontent-type: application/json\r\nretry-after: 7\r\ncontent-length: ${body.length + 100}`;
  return { text: `${head}\r\n\r\n${body}`, hang: model.endsWith('-hang') };
}

t.test("an upstream error whose body is cut or never ends keeps the upstream's status and Retry-After", async (t) => {
  const sockets = new Set<Socket>();
  const upstream = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    let request = '';
    socket.on('data', (part: Buffer) => {
      request += part.toString('latin1');
      const headEnd = request.indexOf('\r\n\r\n');
      const length = Number(/content-length: *(\d+)/i.exec(request)?.[1] ?? 'NaN');
      if (headEnd < 0 || request.length < headEnd + 4 + length) return;
      const { text, hang } = answer((JSON.parse(request.slice(headEnd + 4)) as { model: string }).model);
      if (hang) socket.write(text);
      else socket.end(text);
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    upstream.close();
  });
  const { port } = upstream.address() as AddressInfo;
  // A short first-byte deadline (and total, for a whole answer's call): the one a hanging error body meets. Not too
  // short: the head must come before it on a busy box (all 16 calls at once, so the test takes it once).
  const timeouts = { firstByteMs: 3000, totalMs: 3000 };
  const gw = await startGateway(t, {
    versions: {
      openai: { weight: 1, upstream: { format: 'openai', url: `http://127.0.0.1:${port}/v1`, timeouts } },
      anthropic: { weight: 0, upstream: { format: 'anthropic', url: `http://127.0.0.1:${port}`, timeouts } },
      // The default deadlines (first byte 2 min, total 10 min): a body that never ends is read for ERROR_BODY_MS.
      patient: { weight: 0, upstream: { format: 'openai', url: `http://127.0.0.1:${port}/v1` } },
    },
    routing: { default: 'openai' },
  });

  const calls: Array<{ version: string; stream: boolean; model: string }> = [];
  for (const version of ['openai', 'anthropic'])
    for (const stream of [true, false])
      for (const model of ['rate-cut', 'rate-hang', 'key-cut', 'key-hang']) calls.push({ version, stream, model });
  for (const stream of [true, false])
    for (const model of ['rate-hang', 'key-hang']) calls.push({ version: 'patient', stream, model });
  const answers = await Promise.all(
    calls.map(({ version, stream, model }) =>
      httpRequest(`${gw.url}/v1/chat/completions?version=${version}`, {
        method: 'POST',
        body: JSON.stringify({ model, stream, messages: [{ role: 'user', content: 'hi' }] }),
      }),
    ),
  );
  for (const [i, { version, stream, model }] of calls.entries()) {
    const res = answers[i]!;
    const name = `${version} ${model}${stream ? ' streamed' : ''}`;
    const { error } = json<ErrorBody>(res);
    if (model.startsWith('rate')) {
      t.equal(res.status, 429, `${name}: the upstream's status`);
      t.equal(res.headers['retry-after'], '7', `${name}: its Retry-After`);
      t.equal(error.message, 'upstream answered 429: slow down', `${name}: its message`);
    } else {
      t.equal(res.status, 401, `${name}: the upstream's status`);
      t.equal(error.message, 'upstream answered 401: bad key', `${name}: its message`);
    }
    t.equal(error.code, 'upstream_status', name);
  }
});
