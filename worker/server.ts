import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../shared/log.js';
import type { WorkerSettings } from '../shared/ipc.js';
import { GraygateError, toErrorResponse } from '../shared/errors.js';
import { sendError, sendJson } from '../shared/http-headers.js';
import { listModels } from './models.js';
import { handleChatCompletions, type ChatHandlerOptions } from './chat/handler.js';
import { RequestPreparer, type RequestPreparerOptions } from './chat/preparer.js';
import type { UpstreamAdapter } from './upstream/format-adapter.js';
import { UpstreamClient } from './upstream/client.js';
import type { ResolvedUpstream } from './upstream/resolve.js';
import type { WorkerMetrics } from './metrics.js';

export interface WorkerServerOptions {
  settings: WorkerSettings;
  log: Logger;
  /** The worker's metrics registry (SPEC §9); main.ts also answers the master's scrape from it. */
  metrics: WorkerMetrics;
  /** The converter of settings.upstream.format (upstream/load-adapter.ts). */
  adapter: UpstreamAdapter;
  /** Where upstream requests go (upstream/resolve.ts). Owned from here on: close() and destroy() stop it. */
  upstream: ResolvedUpstream;
  /** Environment to read upstream.apiKeyEnv from. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /** How request bodies are prepared (chat/preparer.ts): the inline size bound, the thread's idle time and module. Defaults there. */
  preparer?: Pick<RequestPreparerOptions, 'inlineMaxBytes' | 'threadIdleMs' | 'threadUrl'>;
}

export interface WorkerServer {
  /** The HTTP server. Whoever listens on it closes it (shared/worker-lifecycle.ts). */
  server: Server;
  /**
   * Drains (STYLE §14, §24): requests that arrive from now on get 503
   * shutting_down with `Connection: close`; once the requests in flight have
   * finished, the body-preparing thread, the upstream pool and the embedded
   * mock close. Idempotent.
   */
  close(): Promise<void>;
  /**
   * Aborts now: upstream calls in flight fail with `err` (default
   * shutting_down), so their clients get an error answer or a final SSE error
   * event; the thread, the pool and the embedded mock are torn down. Idempotent.
   */
  destroy(err?: Error): Promise<void>;
}

/** The worker's HTTP surface (SPEC §5): what clients reach through the master. */
export function createWorkerServer(options: WorkerServerOptions): WorkerServer {
  const { settings, log } = options;
  const { upstream } = settings;
  const client = new UpstreamClient({
    baseUrl: options.upstream.baseUrl,
    maxConnections: upstream.maxConnections,
    connectMs: upstream.timeouts.connectMs,
    firstByteMs: upstream.timeouts.firstByteMs,
    idleMs: upstream.timeouts.idleMs,
    ...(upstream.http2 === undefined ? {} : { http2: upstream.http2 }),
  });
  const env = options.env ?? process.env;
  const preparer = new RequestPreparer({
    ...options.preparer,
    adapter: options.adapter,
    // The key is read once at start and goes into upstream headers only (SPEC §9: never logged).
    build: { model: upstream.model, apiKey: upstream.apiKeyEnv === undefined ? undefined : env[upstream.apiKeyEnv] },
  });
  const chat: ChatHandlerOptions = {
    adapter: options.adapter,
    preparer,
    client,
    upstream,
    maxBodyBytes: settings.limits.maxBodyBytes,
    log,
    metrics: options.metrics,
  };

  let isDraining = false;
  let inFlight = 0;
  let onIdle: (() => void) | undefined;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (isDraining) {
      // The rest of the body is not read, so the connection cannot be reused.
      res.setHeader('connection', 'close');
      return sendError(res, toErrorResponse(new GraygateError('shutting_down')));
    }
    if (path === '/v1/models') {
      if (req.method !== 'GET') return sendError(res, toErrorResponse(new GraygateError('method_not_allowed')));
      return sendJson(res, 200, listModels(settings));
    }
    if (path === '/v1/chat/completions') {
      if (req.method !== 'POST') return sendError(res, toErrorResponse(new GraygateError('method_not_allowed')));
      inFlight++;
      handleChatCompletions(req, res, chat)
        .catch((err: unknown) => {
          log.error({ err }, 'chat handler failed');
          sendError(res, toErrorResponse(err));
        })
        .finally(() => {
          if (--inFlight === 0) onIdle?.();
        });
      return;
    }
    sendError(res, toErrorResponse(new GraygateError('not_found', `no route for ${req.method} ${path}`)));
  });

  let closing: Promise<void> | undefined;
  let destroying: Promise<void> | undefined;
  return {
    server,
    close() {
      isDraining = true;
      closing ??= (async () => {
        if (inFlight > 0) await new Promise<void>((resolve) => (onIdle = resolve));
        await preparer.close();
        await client.close();
        await options.upstream.close();
      })();
      return closing;
    },
    destroy(err) {
      isDraining = true;
      destroying ??= (async () => {
        await preparer.destroy();
        await client.destroy(err ?? new GraygateError('shutting_down'));
        await options.upstream.destroy();
      })();
      return destroying;
    },
  };
}
