import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import {
  createSecureServer,
  type Http2ServerRequest,
  type Http2ServerResponse,
  type ServerHttp2Session,
} from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { Teardown } from './gateway.js';
import { ROOT } from './root.js';

// An HTTP/2-only https upstream on 127.0.0.1, the protocol the hosted APIs answer in. Its certificate
// (test/fixtures/tls/, self-signed for 127.0.0.1) is trusted only by clients given it: `ca` for an UpstreamClient,
// NODE_EXTRA_CA_CERTS=TEST_CERT_PATH for a worker.

export const TEST_CERT_PATH = join(ROOT, 'test/fixtures/tls/cert.pem');
export const TEST_CERT = readFileSync(TEST_CERT_PATH, 'utf8');

/**
 * Starts it with `onRequest`; resolves with its origin (`https://127.0.0.1:PORT`). Its sessions end at teardown.
 * `allowHTTP1`: it answers HTTP/1.1 too, as the hosted APIs do.
 */
export async function startH2Upstream(
  t: Teardown,
  onRequest: (req: Http2ServerRequest, res: Http2ServerResponse) => void,
  allowHTTP1 = false,
): Promise<string> {
  const key = readFileSync(join(ROOT, 'test/fixtures/tls/key.pem'));
  const sessions = new Set<ServerHttp2Session>();
  const server = createSecureServer({ key, cert: TEST_CERT, allowHTTP1 });
  server.on('session', (session: ServerHttp2Session) => {
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  server.on('request', onRequest);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const session of sessions) session.destroy();
    server.close();
  });
  return `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
}
