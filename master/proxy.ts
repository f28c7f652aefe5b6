import type { ClientRequest, IncomingMessage, ServerResponse } from 'node:http';
import { createProxyServer } from 'http-proxy-3';
import { GraygateError, toErrorResponse, toSseErrorEvent } from '../shared/errors.js';
import { isEventStream, sendError, stripHopByHop } from '../shared/http-headers.js';
import type { Logger } from '../shared/log.js';

// Master → worker over http-proxy-3's native http path (never its fetch path,
// which neither cancels on client abort nor streams past proxyTimeout). What
// the library leaves to us: hop-by-hop headers, the worker dying mid-response
// (pipe() does not forward that), and knowing when the worker's socket is free.

export interface ForwardTarget {
  /** http://127.0.0.1:port of the worker. */
  target: URL;
  /** The worker's keep-alive agent. */
  agent: import('node:http').Agent;
}

export interface ForwardOptions {
  /** Called once, when the worker's socket is free again (or was never taken). */
  onDone: () => void;
  /** Called when the worker's response headers arrive. */
  onResponseHeaders: () => void;
  /** Request body byte limit for bodies without Content-Length. */
  maxBodyBytes: number;
  /** The body has no Content-Length (chunked): count it against maxBodyBytes as it streams. */
  hasUncountedBody: boolean;
  /** True while the master drains: responses get `Connection: close`. */
  isClosing: () => boolean;
}

interface ProxyContext {
  options: ForwardOptions;
  proxyReq: ClientRequest | undefined;
  isDone: boolean;
  isBodyTooLarge: boolean;
}

export interface WorkerProxy {
  forward(req: IncomingMessage, res: ServerResponse, to: ForwardTarget, options: ForwardOptions): void;
}

const contexts = new WeakMap<IncomingMessage, ProxyContext>();

function finish(ctx: ProxyContext): void {
  if (ctx.isDone) return;
  ctx.isDone = true;
  ctx.options.onDone();
}

// The worker died mid-response: the status went out long ago (SPEC §4).
const WORKER_CUT_EVENT = toSseErrorEvent(new GraygateError('worker_error', 'the worker stopped in the middle of the stream'));

export function createWorkerProxy(log: Logger): WorkerProxy {
  const proxy = createProxyServer({ xfwd: true, ws: false });

  proxy.on('proxyReq', (proxyReq: ClientRequest, req: IncomingMessage) => {
    const ctx = contexts.get(req);
    if (ctx === undefined) return;
    ctx.proxyReq = proxyReq;
    // 'close' comes after the response ended and the socket went back to the
    // agent (or was destroyed): only then is the admission slot really free.
    proxyReq.once('close', () => finish(ctx));
    if (ctx.isBodyTooLarge) proxyReq.destroy();
  });

  proxy.on('proxyRes', (proxyRes: IncomingMessage, req: IncomingMessage, res: ServerResponse) => {
    stripHopByHop(proxyRes.headers);
    const ctx = contexts.get(req);
    if (ctx !== undefined) {
      ctx.options.onResponseHeaders();
      if (ctx.options.isClosing()) proxyRes.headers['connection'] = 'close';
    }
    proxyRes.once('close', () => {
      if (proxyRes.complete || res.writableEnded || res.destroyed) return;
      // The worker died or reset mid-response: end the client's stream, never hang (SPEC §4).
      if (isEventStream(res.getHeader('content-type'))) {
        res.end(WORKER_CUT_EVENT);
      } else {
        res.destroy();
      }
    });
  });

  return {
    forward(req, res, to, options) {
      const ctx: ProxyContext = { options, proxyReq: undefined, isDone: false, isBodyTooLarge: false };
      contexts.set(req, ctx);
      if (options.hasUncountedBody) countBody(req, ctx);
      // The slot is free if the client left before a socket was ever taken.
      res.once('close', () => {
        if (ctx.proxyReq === undefined) finish(ctx);
      });
      proxy.web(req, res, { target: to.target, agent: to.agent }, (err: Error) => {
        if (ctx.proxyReq === undefined) finish(ctx);
        if (ctx.isBodyTooLarge) return sendError(res, toErrorResponse(new GraygateError('body_too_large')), { connection: 'close' });
        // The client's socket, not req.destroyed: Node destroys a request once its body is read.
        if (res.writableEnded || req.socket.destroyed) return; // the client left; nobody to answer
        if (!res.headersSent) {
          log.warn({ err: { message: err.message, code: (err as NodeJS.ErrnoException).code } }, 'worker error before response');
          return sendError(res, toErrorResponse(new GraygateError('worker_error', undefined, { cause: err })));
        }
        if (isEventStream(res.getHeader('content-type')) && !res.writableEnded) {
          return res.end(WORKER_CUT_EVENT);
        }
        res.destroy();
      });
    },
  };
}

// Bodies without Content-Length are counted as they stream (SPEC §4 413);
// with Content-Length the handler refuses them before any proxying.
function countBody(req: IncomingMessage, ctx: ProxyContext): void {
  let bytes = 0;
  const onData = (chunk: Buffer): void => {
    bytes += chunk.length;
    if (bytes <= ctx.options.maxBodyBytes) return;
    req.off('data', onData);
    ctx.isBodyTooLarge = true;
    ctx.proxyReq?.destroy(new GraygateError('body_too_large'));
  };
  req.on('data', onData);
}
