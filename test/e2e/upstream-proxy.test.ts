import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { postStream } from '../worker/fixtures/sse-client.js';
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
