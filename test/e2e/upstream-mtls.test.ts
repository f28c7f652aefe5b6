import t from 'tap';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { join } from 'node:path';
import { startGateway } from '../helpers/gateway.js';
import { TEST_CERT, TEST_CERT_PATH } from '../helpers/h2-upstream.js';
import { ROOT } from '../helpers/root.js';
import { httpRequest, json } from '../helpers/http.js';

// versions.NAME.upstream.tls (a TLS probe: an upstream that asks for a client certificate could not be reached, and
// its refusal read as "the upstream closed the connection"): the worker presents certFile/keyFile and checks the
// upstream's certificate against caFile. An https upstream on 127.0.0.1 that requires a client certificate signed by
// the test's CA (its own self-signed certificate).

const KEY_PATH = join(ROOT, 'test/fixtures/tls/key.pem');

t.test('an upstream that asks for a client certificate gets the one upstream.tls names', async (t) => {
  const seen: string[] = [];
  const server = createServer(
    { key: readFileSync(KEY_PATH), cert: TEST_CERT, ca: TEST_CERT, requestCert: true, rejectUnauthorized: true },
    (req, res) => {
      seen.push((req.socket as TLSSocket).getPeerCertificate().subject.CN ?? '');
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'application/json' });
        const message = { role: 'assistant', content: 'over mTLS' };
        res.end(
          JSON.stringify({
            id: 'c',
            object: 'chat.completion',
            created: 1,
            model: 'm',
            choices: [{ index: 0, message, finish_reason: 'stop' }],
          }),
        );
      });
    },
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
  const gw = await startGateway(t, {
    versions: {
      mtls: {
        weight: 1,
        upstream: {
          format: 'openai',
          url,
          tls: { caFile: TEST_CERT_PATH, certFile: TEST_CERT_PATH, keyFile: KEY_PATH },
        },
      },
      anonymous: { weight: 0, upstream: { format: 'openai', url, tls: { caFile: TEST_CERT_PATH } } },
    },
    routing: { default: 'mtls' },
  });
  const chat = (version: string): ReturnType<typeof httpRequest> =>
    httpRequest(`${gw.url}/v1/chat/completions?version=${version}`, {
      method: 'POST',
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
    });
  const answered = await chat('mtls');
  t.equal(answered.status, 200);
  t.match(json(answered), { choices: [{ message: { content: 'over mTLS' } }] });
  t.same(seen, ['localhost'], 'with its client certificate');
  const refused = await chat('anonymous');
  t.equal(refused.status, 502, 'none presented: refused by the upstream');
});
