import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Logger } from '../shared/log.js';
import type { WorkerSettings } from '../shared/ipc.js';
import { GraygateError, toErrorResponse } from '../shared/errors.js';
import { sendError, sendJson } from '../shared/http-headers.js';
import { listModels } from './models.js';
import { handleChatCompletions } from './chat/handler.js';
import { adapterFor } from './upstream/adapters.js';
import { UpstreamClient } from './upstream/client.js';
import type { WorkerMetrics } from './metrics.js';

export interface WorkerServerOptions {
  settings: WorkerSettings;
  log: Logger;
  /** Where upstream requests go: upstream.url, or the embedded mock's URL for `mock:` (see upstream/resolve.ts). */
  upstreamBaseUrl: string;
  /** The worker's metrics registry (SPEC §9); main.ts also answers the master's scrape from it. */
  metrics: WorkerMetrics;
  /** Environment to read upstream.apiKeyEnv from. Default process.env. */
  env?: NodeJS.ProcessEnv;
}

export interface WorkerServer {
  server: Server;
  /** Closes the upstream connection pool once in-flight requests are done. */
  close(): Promise<void>;
}

/** The worker's HTTP surface (SPEC §5): what clients reach through the master. */
export function createWorkerServer(options: WorkerServerOptions): WorkerServer {
  const { settings, log } = options;
  const { upstream } = settings;
  const client = new UpstreamClient({
    baseUrl: options.upstreamBaseUrl,
    maxConnections: upstream.maxConnections,
    connectMs: upstream.timeouts.connectMs,
    firstByteMs: upstream.timeouts.firstByteMs,
    idleMs: upstream.timeouts.idleMs,
    ...(upstream.http2 === undefined ? {} : { http2: upstream.http2 }),
  });
  const env = options.env ?? process.env;
  const chat = {
    adapter: adapterFor(upstream.format),
    client,
    upstream,
    // Read once at start; the key goes into upstream headers only (SPEC §9: never logged).
    apiKey: upstream.apiKeyEnv === undefined ? undefined : env[upstream.apiKeyEnv],
    maxBodyBytes: settings.limits.maxBodyBytes,
    log,
    metrics: options.metrics,
  };
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?', 1)[0];
    if (path === '/v1/models') {
      if (req.method !== 'GET') return sendError(res, toErrorResponse(new GraygateError('method_not_allowed')));
      return sendJson(res, 200, listModels(settings));
    }
    if (path === '/v1/chat/completions') {
      if (req.method !== 'POST') return sendError(res, toErrorResponse(new GraygateError('method_not_allowed')));
      handleChatCompletions(req, res, chat).catch((err: unknown) => {
        log.error({ err }, 'chat handler failed');
        sendError(res, toErrorResponse(err));
      });
      return;
    }
    sendError(res, toErrorResponse(new GraygateError('not_found', `no route for ${req.method} ${path}`)));
  });
  return { server, close: () => client.close() };
}
