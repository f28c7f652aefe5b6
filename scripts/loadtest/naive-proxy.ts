import { Agent, createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { createProxyServer } from 'http-proxy-3';
import { rawBodyHandler } from './rawbody-proxy.js';

// The two proxies graygate is compared with in the backlog incident (issue 2
// "Benchmark"), each in its own process so its RSS is measured alone. Both use
// the incident's agent: keep-alive with ONE socket to the slow worker and
// nothing bounding the agent's own `requests` queue.
//   NAIVE_PROXY_MODE=http-proxy-3  (a) http-proxy-3 with that agent
//   NAIVE_PROXY_MODE=pipe          (c) http.request(...).pipe(res) that never
//                                      aborts the upstream request when its client leaves
//   NAIVE_PROXY_MODE=minimal       the Node baseline of `compare --sse` (issue 10): the
//                                      same pipe() on a keep-alive agent with no socket cap,
//                                      upstream request destroyed when the client leaves
// NAIVE_PROXY_TARGET is the worker's base URL; for mode minimal, NAIVE_PROXY_SOCKET (a unix
// socket path) replaces its host and port. Sends {type:'listening', url, pid} over IPC.

const mode = process.env['NAIVE_PROXY_MODE'];
const target = new URL(process.env['NAIVE_PROXY_TARGET'] ?? '');
const socketPath = process.env['NAIVE_PROXY_SOCKET'];
const minimalTarget = socketPath === undefined ? { host: target.hostname, port: target.port } : { socketPath };
const agent = new Agent({ keepAlive: true, maxSockets: 1 });
// Issue 10's yardstick: what one node:http hop costs with no limits and no features.
const minimalAgent = new Agent({ keepAlive: true, maxSockets: Infinity, maxFreeSockets: 1024 });

function badGateway(res: ServerResponse): void {
  if (res.headersSent) return void res.destroy();
  res.writeHead(502, { 'content-type': 'application/json' });
  res.end('{"error":{"message":"bad gateway","type":"gateway_error","code":"worker_error"}}');
}

function httpProxy3Handler(): (req: IncomingMessage, res: ServerResponse) => void {
  const proxy = createProxyServer({ target, agent });
  return (req, res) => proxy.web(req, res, {}, () => badGateway(res));
}

function pipeHandler(req: IncomingMessage, res: ServerResponse): void {
  const upstream = request(
    { host: target.hostname, port: target.port, path: req.url, method: req.method, headers: req.headers, agent },
    (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
      upstreamRes.pipe(res);
    },
  );
  // The incident's shape: no res.on('close') → upstream.destroy(). A client that
  // gave up leaves its request in the agent's queue, and the worker still gets it.
  upstream.on('error', () => badGateway(res));
  req.pipe(upstream);
}

function minimalHandler(req: IncomingMessage, res: ServerResponse): void {
  const upstream = request(
    { ...minimalTarget, path: req.url, method: req.method, headers: req.headers, agent: minimalAgent },
    (upstreamRes) => {
      res.writeHead(upstreamRes.statusCode ?? 502, upstreamRes.headers);
      upstreamRes.pipe(res);
    },
  );
  upstream.on('error', () => badGateway(res));
  res.on('close', () => {
    if (!res.writableFinished) upstream.destroy();
  });
  req.pipe(upstream);
}

let handler: (req: IncomingMessage, res: ServerResponse) => void;
switch (mode) {
  case 'http-proxy-3':
    handler = httpProxy3Handler();
    break;
  case 'pipe':
    handler = pipeHandler;
    break;
  case 'minimal':
    handler = minimalHandler;
    break;
  case 'rawbody':
    // PROTOTYPE (scripts/loadtest/rawbody-proxy.ts): the answer's body relayed as raw chunked bytes.
    handler = rawBodyHandler(
      socketPath === undefined ? { host: target.hostname, port: Number(target.port) } : { socketPath },
    );
    break;
  default:
    process.stderr.write(`naive-proxy: NAIVE_PROXY_MODE must be http-proxy-3, pipe, minimal or rawbody, got ${mode}\n`);
    process.exit(64);
}

const server = createServer(handler);
server.listen(0, '127.0.0.1', () => {
  const { port } = server.address() as AddressInfo;
  process.send?.({ type: 'listening', url: `http://127.0.0.1:${port}`, pid: process.pid });
});
// Our parent is the load script: if it goes, so do we.
process.on('disconnect', () => process.exit(0));
// Stopped by its parent with SIGTERM: exit normally, so a --cpu-prof profile is written.
process.on('SIGTERM', () => process.exit(0));
