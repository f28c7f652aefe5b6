import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { untilOutput } from '../helpers/output.js';
import { postStream } from '../worker/fixtures/sse-client.js';

// SPEC §9: the operator's upstream key reaches no client and no log line. An upstream may echo it in an error
// ("Incorrect API key provided: Bearer sk-…": api.openai.com masks it, other servers and proxies may not), and that
// text became the error every client of the version read, and the worker's log line (a probe's finding). The worker
// hides its own key in every upstream text it passes on.

const KEY = 'sk-operator-5e1d9c3a7b2f';

interface ErrorBody {
  error: { message: string; code: string };
}

t.test("an upstream that echoes the operator's key: no client and no log line gets it", async (t) => {
  const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (part: Buffer) => parts.push(part));
    req.on('end', () => {
      const said = `Incorrect API key provided: ${req.headers.authorization ?? ''}`;
      const isStream = parts.length > 0 && (JSON.parse(Buffer.concat(parts).toString()) as { stream?: unknown }).stream;
      if (isStream === true && req.url?.endsWith('/responses') === true) {
        // A Responses stream's own error event, the key JSON-escaped (which decodes back to it).
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const escaped = said.replace('sk-', '\\u0073k-');
        res.write(`event: response.created\ndata: {"type":"response.created","sequence_number":0,"response":{}}\n\n`);
        return res.end(
          `event: error\ndata: {"type":"error","code":null,"message":"${escaped}","sequence_number":1}\n\n`,
        );
      }
      if (isStream === true) {
        // Once streaming: a token, then an error event that names the key (a proxy's, say).
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = { id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm' };
        res.write(`data: ${JSON.stringify({ ...chunk, choices: [{ index: 0, delta: { content: 'a' } }] })}\n\n`);
        return res.end(`data: ${JSON.stringify({ error: { message: said, type: 'server_error' } })}\n\n`);
      }
      res.writeHead(401, {
        'content-type': 'application/json',
        'x-ratelimit-remaining-requests': `key ${KEY}`,
        'x-request-id': `req_${KEY}`,
      });
      res.end(JSON.stringify({ error: { message: said, type: 'invalid_request_error', code: 'invalid_api_key' } }));
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  t.teardown(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: { weight: 1, upstream: { format: 'openai', url, apiKeyEnv: 'GG_ECHO_KEY' }, env: { GG_ECHO_KEY: KEY } },
      },
    },
    { env: { LOG_LEVEL: 'info' } },
  );

  const whole = await httpRequest(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  });
  t.equal(whole.status, 401);
  t.match(json<ErrorBody>(whole).error.message, /Incorrect API key provided: Bearer \[redacted\]$/);
  const models = await httpRequest(`${gw.url}/v1/models`);
  t.equal(models.status, 401);
  t.equal(
    json<ErrorBody>(models).error.message,
    'upstream answered 401: Incorrect API key provided: Bearer [redacted]',
  );
  const stream = await postStream(
    `${gw.url}/v1/chat/completions`,
    { model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] },
    { 'x-request-id': 'key-echo' },
  );
  await stream.done;
  t.equal(stream.text(), 'a');
  const last = JSON.parse(stream.data.at(-1)!) as ErrorBody;
  t.match(last.error.message, /Incorrect API key provided: Bearer \[redacted\]$/);
  const responses = await postStream(`${gw.url}/v1/responses`, { model: 'm', input: 'hi', stream: true });
  await responses.done;
  const failed = JSON.parse(responses.data.at(-1)!) as { type: string; message: string };
  t.match(failed, { type: 'error', message: /Bearer \[redacted\]$/ }, "the upstream's own Responses error event");
  t.equal(whole.headers['x-ratelimit-remaining-requests'], 'key [redacted]', 'nor in a header passed on');
  const decoded = responses.data.map((d) => JSON.stringify(JSON.parse(d)));
  for (const body of [whole.body, models.body, stream.data.join('\n'), decoded.join('\n')])
    t.notOk(body.includes(KEY), 'no client');
  // The worker's request line for the stream is written after it ended, and the models fetch's warning before it.
  await untilOutput(gw, () => gw.output().includes('"reqId":"key-echo"') || undefined);
  t.match(gw.output(), /\[redacted\]/, 'the log line says what the upstream said, without the key');
  t.notOk(gw.output().includes(KEY), 'no log line');
});
