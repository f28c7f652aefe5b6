import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, createServer as createNetServer, type AddressInfo, type Socket } from 'node:net';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { chatBody, postStream } from '../worker/fixtures/sse-client.js';
import { startH2Upstream, TEST_CERT_PATH } from '../helpers/h2-upstream.js';
import { BASE_PATHS, startMockUpstream } from '../../shared/mock-upstream/index.js';

// versions.NAME.upstream.proxy (a TLS probe: undici reads no HTTPS_PROXY, so where a company's egress goes through a
// proxy no upstream could be reached): every connection to the upstream is a CONNECT tunnel through it, with Basic
// credentials from upstream.proxyAuthEnv. A proxy on 127.0.0.1 that records what it was asked.

interface Tunnel {
  target: string;
  auth: string | undefined;
}

async function startProxy(
  t: Parameters<typeof startGateway>[0],
  refuse = false,
): Promise<{ url: string; tunnels: Tunnel[] }> {
  const tunnels: Tunnel[] = [];
  const sockets = new Set<Socket>();
  const server = createServer((_req, res) => res.writeHead(405).end());
  server.on('connect', (req: IncomingMessage, client: Socket, head: Buffer) => {
    tunnels.push({ target: req.url ?? '', auth: req.headers['proxy-authorization'] });
    sockets.add(client);
    client.on('error', () => client.destroy());
    if (refuse) return void client.end('HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 0\r\n\r\n');
    const [host, port] = (req.url ?? '').split(':');
    const upstream = connect(Number(port), host, () => {
      client.write('HTTP/1.1 200 Connection Established\r\n\r\n');
      upstream.write(head);
      upstream.pipe(client);
      client.pipe(upstream);
    });
    sockets.add(upstream);
    upstream.on('error', () => client.destroy());
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const s of sockets) s.destroy();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, tunnels };
}

t.test('an upstream reached through an egress proxy: one CONNECT tunnel, with its credentials', async (t) => {
  const mock = await startMockUpstream();
  t.teardown(() => mock.close());
  const proxy = await startProxy(t);
  const refusing = await startProxy(t, true);
  const url = mock.url + BASE_PATHS.openai;
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: { weight: 1, upstream: { format: 'openai', url, proxy: proxy.url, proxyAuthEnv: 'GG_PROXY_AUTH' } },
        refused: { weight: 0, upstream: { format: 'openai', url, proxy: refusing.url } },
      },
    },
    { env: { GG_PROXY_AUTH: 'graygate:proxy-secret-1' } },
  );
  const chat = (version: string, stream: boolean): Record<string, unknown> => ({
    model: 'm',
    stream,
    messages: [{ role: 'user', content: 'hi' }],
  });
  const whole = await httpRequest(`${gw.url}/v1/chat/completions?version=v1`, {
    method: 'POST',
    body: JSON.stringify(chat('v1', false)),
  });
  t.equal(whole.status, 200, 'a whole answer');
  const streamed = await postStream(`${gw.url}/v1/chat/completions?version=v1`, chat('v1', true));
  await streamed.done;
  t.equal(streamed.data.at(-1), '[DONE]', 'a stream');
  const { host } = new URL(mock.url);
  t.ok(proxy.tunnels.length >= 1, 'through the proxy');
  t.same(
    proxy.tunnels.map((tunnel) => tunnel.target),
    proxy.tunnels.map(() => host),
    'to the upstream',
  );
  const basic = `Basic ${Buffer.from('graygate:proxy-secret-1').toString('base64')}`;
  t.ok(
    proxy.tunnels.every((tunnel) => tunnel.auth === basic),
    'with the credentials of proxyAuthEnv',
  );
  t.notMatch(gw.output(), /proxy-secret-1/, 'never logged');

  const refused = await httpRequest(`${gw.url}/v1/chat/completions?version=refused`, {
    method: 'POST',
    body: JSON.stringify(chat('refused', false)),
  });
  t.equal(refused.status, 502);
  t.match(json(refused), {
    error: { code: 'upstream_unreachable', message: /the proxy \(upstream\.proxy\) answered 407/ },
  });
});

t.test('through the proxy: HTTP/2 when asked, and a proxy that never answers is a connect timeout', async (t) => {
  // A reviewer: the pool's allowH2 never reached the TLS inside the tunnel (HTTP/1.1, and an HTTP/2-only server was
  // refused), and a proxy that took the connection and never answered CONNECT held the request for undici's 300 s.
  const origin = await startH2Upstream(
    t,
    (req, res) => {
      req.resume();
      req.on('end', () => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const delta = { role: 'assistant', content: `over HTTP/${req.httpVersion}` };
        const chunk = { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [] as unknown[] };
        chunk.choices = [{ index: 0, delta, finish_reason: 'stop' }];
        res.end(`data: ${JSON.stringify(chunk)}\n\ndata: [DONE]\n\n`);
      });
    },
    false, // HTTP/2 only
  );
  const proxy = await startProxy(t);
  const hole = createNetServer((socket) => socket.on('error', () => socket.destroy()));
  const held = new Set<Socket>();
  hole.on('connection', (socket) => held.add(socket));
  hole.listen(0, '127.0.0.1');
  await once(hole, 'listening');
  t.teardown(() => {
    for (const socket of held) socket.destroy();
    hole.close();
  });
  const holeUrl = `http://127.0.0.1:${(hole.address() as AddressInfo).port}`;
  const env = { NODE_EXTRA_CA_CERTS: TEST_CERT_PATH };
  const url = `${origin}/v1`;
  const gw = await startGateway(t, {
    versions: {
      h2: { weight: 1, upstream: { format: 'openai', url, http2: true, proxy: proxy.url }, env },
      hole: { weight: 0, upstream: { format: 'openai', url, proxy: holeUrl, timeouts: { connectMs: 500 } }, env },
    },
    routing: { default: 'h2' },
  });
  const streamed = await postStream(`${gw.url}/v1/chat/completions?version=h2`, chatBody(''));
  await streamed.done;
  t.equal(streamed.text(), 'over HTTP/2.0', 'HTTP/2 inside the tunnel');
  t.ok(proxy.tunnels.length >= 1, 'through the proxy');

  const timedOut = await httpRequest(`${gw.url}/v1/chat/completions?version=hole`, {
    method: 'POST',
    body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'hi' }] }),
  });
  t.equal(timedOut.status, 504);
  t.match(json(timedOut), { error: { code: 'upstream_timeout', message: /connect timeout, 500 ms/ } });
});
