import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from '../shared/node-http.js';
import type { Logger } from '../shared/log.js';
import type { WorkerSettings } from '../shared/ipc.js';
import { DEFAULTS } from '../shared/defaults.js';
import { GraygateError, toErrorResponse } from '../shared/errors.js';
import { sendError } from '../shared/http-headers.js';
import type { EndpointKind } from './types.js';
import { causeOf, handleCall, type CallHandlerOptions } from './call/handler.js';
import { DirectConnections } from './direct/connections.js';
import { answerOn, DirectAnswer } from './direct/direct-answer.js';
import type { DirectCalls } from '../shared/worker-lifecycle.js';
import { RequestPreparer, type RequestPreparerOptions } from './call/preparer.js';
import { unsupportedCall, unsupportedEndpoint, type PreparedCall } from './call/prepare.js';
import { ModelCatalog, type ModelCatalogOptions } from './models/model-catalog.js';
import { fetchModels } from './models/fetch-models.js';
import { handleModels } from './models/models-handler.js';
import { upstreamErrorKind } from './metrics.js';
import { hideInUpstreamText, type StoredResponseCall, type UpstreamAdapter } from './upstream/format-adapter.js';
import { UpstreamClient } from './upstream/client.js';
import type { ResolvedUpstream } from './upstream/resolve.js';
import type { WorkerMetrics } from './metrics.js';
import type { ByteBudget } from '../shared/byte-budget.js';
import { MODEL_CALLS, MODELS_PATH } from '../shared/model-calls.js';
import { readFileSync } from 'node:fs';
import type { UpstreamConfig } from '../shared/config.js';

export interface WorkerServerOptions {
  settings: WorkerSettings;
  log: Logger;
  /** The worker's metrics registry (SPEC §9); main.ts also answers the master's scrape from it. */
  metrics: WorkerMetrics;
  /** The converter of settings.upstream.format (upstream/load-adapter.ts). */
  adapter: UpstreamAdapter;
  /** Where upstream requests go (upstream/resolve.ts). Owned from here on: close() and destroy() stop it. */
  upstream: ResolvedUpstream;
  /** limits.maxBufferedAnswerBytes: what all answers held whole may hold at once (call/answer-share.ts). */
  answers: ByteBudget;
  /** Environment to read upstream.apiKeyEnv from. Default process.env. */
  env?: NodeJS.ProcessEnv;
  /**
   * How request bodies are prepared (call/preparer.ts): the inline size
   * bound, the thread's idle time and module. Defaults there.
   */
  preparer?: Pick<RequestPreparerOptions, 'inlineMaxBytes' | 'threadIdleMs' | 'threadUrl'>;
  /** How the upstream's model list is cached (models/model-catalog.ts): TTLs, fetch timeout, clock. Defaults there. */
  models?: Pick<ModelCatalogOptions, 'ttlMs' | 'failureTtlMs' | 'fetchTimeoutMs' | 'now'>;
}

/** POST endpoints that call the upstream (SPEC §5, §12). */
const CALL_ROUTES: Readonly<Record<string, EndpointKind>> = MODEL_CALLS;

/** A stored response of OpenAI's Responses API (SPEC §12): `/v1/responses/{id}`, `…/input_items`, `…/cancel`. */
const STORED_RESPONSE = /^\/v1\/responses\/([\w-]{1,256})(\/input_items|\/cancel)?$/;
/** The methods of each (OpenAI's API reference). */
const STORED_RESPONSE_METHODS: Readonly<Record<string, ReadonlyArray<StoredResponseCall['method']>>> = {
  '': ['GET', 'DELETE'],
  '/input_items': ['GET'],
  '/cancel': ['POST'],
};

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
  /** The client connections the master handed this worker (limits.directStreams), for runWorker. */
  connections: DirectConnections;
  /** Requests the master passes as IPC calls on those connections (limits.directStreams), for runWorker. */
  calls: DirectCalls;
  /**
   * Aborts now: upstream calls in flight fail with `err` (default
   * shutting_down), so their clients get an error answer or a final SSE error
   * event; the thread, the pool and the embedded mock are torn down. Idempotent.
   */
  destroy(err?: Error): Promise<void>;
}

/** Room for the headers the master adds to a client's head, over its limits.maxHeaderBytes. */
const MASTER_HEAD_ROOM_BYTES = 8 * 1024;

/** The worker's HTTP surface (SPEC §5, §12): what clients reach through the master. */
/** upstream.tls's PEM files, read at start: a file that cannot be read fails the worker's start, naming it. */
function tlsFiles(tls: UpstreamConfig['tls']): { ca?: string; cert?: string; key?: string } {
  const read = (key: string, file: string | undefined): Record<string, string> => {
    if (file === undefined) return {};
    try {
      return { [key]: readFileSync(file, 'utf8') };
    } catch (err) {
      throw new Error(`upstream.tls.${key}File: cannot read ${file}: ${(err as Error).message}`, { cause: err });
    }
  };
  return { ...read('ca', tls?.caFile), ...read('cert', tls?.certFile), ...read('key', tls?.keyFile) };
}

export function createWorkerServer(options: WorkerServerOptions): WorkerServer {
  const { settings, log } = options;
  const { upstream } = settings;
  const env = options.env ?? process.env;
  // The proxy's credentials, as the key: read once, sent to the proxy only, hidden in what an upstream says.
  const proxyAuth = upstream.proxyAuthEnv === undefined ? undefined : env[upstream.proxyAuthEnv];
  hideInUpstreamText(proxyAuth);
  const client = new UpstreamClient({
    baseUrl: options.upstream.baseUrl,
    // Issue 10: at least one connection per request the master can have in this worker, so undici never queues one.
    maxConnections: Math.max(
      upstream.maxConnections ?? 0,
      settings.limits.maxSocketsPerWorker ?? DEFAULTS.limits.maxSocketsPerWorker,
    ),
    connectMs: upstream.timeouts.connectMs,
    firstByteMs: upstream.timeouts.firstByteMs,
    idleMs: upstream.timeouts.idleMs,
    ...(upstream.timeouts.keepAliveMs === undefined ? {} : { keepAliveTimeoutMs: upstream.timeouts.keepAliveMs }),
    ...(upstream.http2 === undefined ? {} : { http2: upstream.http2 }),
    ...(upstream.proxy === undefined ? {} : { proxy: upstream.proxy }),
    ...tlsFiles(upstream.tls),
    ...(proxyAuth === undefined ? {} : { proxyAuth }),
  });
  // The key is read once at start and goes into upstream headers only (SPEC §9: never logged).
  const apiKey = upstream.apiKeyEnv === undefined ? undefined : env[upstream.apiKeyEnv];
  hideInUpstreamText(apiKey);
  const buildOptions = {
    model: upstream.model,
    apiKey,
    isStrictUnchecked: upstream.strictTools === 'unchecked',
    defaultMaxTokens: upstream.defaultMaxTokens,
  };
  const preparer = new RequestPreparer({
    ...options.preparer,
    adapter: options.adapter,
    build: buildOptions,
  });
  const ownedBy = `graygate/${settings.version}`;
  const catalog = new ModelCatalog({
    ...options.models,
    configuredModel: upstream.model,
    ownedBy,
    fetch: (signal) => fetchModels({ client, upstream, apiKey, ownedBy, signal }),
    onFetchError: (err) => {
      const kind = upstreamErrorKind((err as { code?: string }).code ?? '');
      if (kind !== undefined) options.metrics.onUpstreamError(kind);
      // With its cause (a certificate refused, a refused connection): the model list has no request line to say it.
      log.warn(
        { err: { message: (err as Error).message, code: (err as { code?: unknown }).code }, errorCause: causeOf(err) },
        "could not fetch the upstream's model list",
      );
    },
  });
  // limits.directStreams: connections the master hands over (IPC, worker-lifecycle.ts) for streamed answers. Held
  // only when the master offers one, so a reload that turns the option on needs no new workers.
  const connections = new DirectConnections();
  const calls: CallHandlerOptions = {
    adapter: options.adapter,
    preparer,
    client,
    upstream,
    maxBodyBytes: settings.limits.maxBodyBytes,
    answers: options.answers,
    // Their own period, not the client's `: ping` one (pingIntervalMs, which may be 0 or longer than the master's
    // wait): 102s never reach a client, they keep the master's workerHeadersTimeoutMs from firing.
    processingPingMs: Math.max(
      1,
      Math.floor((settings.limits.workerHeadersTimeoutMs ?? DEFAULTS.limits.workerHeadersTimeoutMs) / 3),
    ),
    log,
    metrics: options.metrics,
    connections,
  };

  let isDraining = false;
  let inFlight = 0;
  let onIdle: (() => void) | undefined;
  const handle = (req: IncomingMessage, res: ServerResponse): void => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (isDraining) {
      // The rest of the body is not read, so the connection cannot be reused.
      res.setHeader('connection', 'close');
      return sendError(res, toErrorResponse(new GraygateError('shutting_down')));
    }
    if (path === MODELS_PATH || path.startsWith(`${MODELS_PATH}/`)) {
      // HEAD wherever GET (RFC 9110 §9.3.2; Node sends the head without the body).
      if (req.method !== 'GET' && req.method !== 'HEAD') return refuseMethod(res, 'GET, HEAD');
      return handleModels(req, res, modelIdOf(path), catalog);
    }
    const kind = CALL_ROUTES[path];
    if (kind !== undefined) {
      if (req.method !== 'POST') return refuseMethod(res, 'POST');
      // SPEC §12: refused before the body is read, naming the format.
      if (!options.adapter.endpoints.has(kind))
        return sendError(res, toErrorResponse(unsupportedEndpoint(kind, upstream.format)));
      return call(kind, req, res);
    }
    const stored = STORED_RESPONSE.exec(path);
    if (stored !== null) return callStoredResponse(req, res, path, stored[1]!, stored[2] ?? '');
    sendError(res, toErrorResponse(new GraygateError('not_found', `no route for ${req.method} ${path}`)));
  };
  const call = (kind: EndpointKind, req: IncomingMessage, res: ServerResponse, prepared?: PreparedCall): void => {
    inFlight++;
    handleCall(kind, req, res, calls, prepared)
      .catch((err: unknown) => {
        log.error({ err }, 'request handler failed');
        sendError(res, toErrorResponse(err));
      })
      .finally(() => {
        if (--inFlight === 0) onIdle?.();
      });
  };
  /** Passed to the upstream as it came, the client's query string kept (SPEC §12). */
  const callStoredResponse = (
    req: IncomingMessage,
    res: ServerResponse,
    path: string,
    id: string,
    what: string,
  ): void => {
    const methods = STORED_RESPONSE_METHODS[what]!;
    const method = methods.find((m) => m === req.method);
    if (method === undefined) return refuseMethod(res, methods.join(', '));
    const { adapter } = options;
    if (adapter.buildStoredResponseRequest === undefined)
      return sendError(res, toErrorResponse(unsupportedCall(`${method} ${path}`, upstream.format)));
    const query = (req.url ?? '').slice(path.length);
    const isStream = method === 'GET' && what === '' && new URLSearchParams(query).get('stream') === 'true';
    const request = adapter.buildStoredResponseRequest(
      { method, path: `/responses/${id}${what}${query}`, isStream },
      buildOptions,
    );
    call('responses', req, res, { request, isStream, includeUsage: false, encoding: 'float', choices: 1 });
  };
  // The head the master let through (up to its maxHeaderBytes) and what it adds to it (x-forwarded-*, x-request-id,
  // the version's and its own timing headers, its framing): Node's default 16 KiB, the master's default too, made a
  // head within a few hundred bytes of it the worker's bare 431, its body unread (a review's repro). Twice the master's
  // limit: X-Forwarded-Host is a copy of Host when the client sent none, and Host (an absolute-form target's authority
  // too) may be most of the head (a 16 KB Host was the worker's 431, relayed with no body).
  const maxHeaderBytes = settings.limits.maxHeaderBytes ?? DEFAULTS.limits.maxHeaderBytes;
  const server = createServer({ maxHeaderSize: 2 * maxHeaderBytes + MASTER_HEAD_ROOM_BYTES }, handle);

  // IPC calls not yet answered whole (a drain waits for them, as the server waits for its connections).
  let openCalls = 0;
  let onCallsIdle: (() => void) | undefined;
  const callSettled = (): void => {
    if (--openCalls === 0) onCallsIdle?.();
  };

  // The master bounds the head (maxHeaderBytes, fewer than MAX_HEADER_LINES client lines) and adds a few of its
  // own after them, its Content-Length first: Node's 2000-line cut must never drop that one, or the body would
  // be read as the next request.
  server.maxHeadersCount = 0;

  let closing: Promise<void> | undefined;
  let destroying: Promise<void> | undefined;
  return {
    server,
    connections,
    calls: {
      open(msg, report) {
        const call = DirectAnswer.call(msg, connections, report, callSettled);
        if (call === undefined) return;
        openCalls++;
        handle(call.req, call.res);
      },
      idle() {
        if (openCalls === 0) return Promise.resolve();
        return new Promise<void>((resolve) => (onCallsIdle = resolve));
      },
      // The call being answered on the connection (one at a time), found through its socket: no table of calls, whose
      // entries would outlive young-generation GCs (docs/BENCHMARKS.md, "Objects that outlived their request").
      lease(conn, writeBy) {
        answerOn(connections, conn)?.renewLease(writeBy);
      },
    },
    close() {
      isDraining = true;
      // Destroyed already (the master's shutdown deadline): there is nothing left to close gently.
      closing ??=
        destroying ??
        (async () => {
          catalog.close();
          if (inFlight > 0) await new Promise<void>((resolve) => (onIdle = resolve));
          // Destroyed meanwhile (a draining worker told `cut`): its pool is gone, and closing it would reject.
          if (destroying !== undefined) return destroying;
          await preparer.close();
          if (destroying !== undefined) return destroying;
          await client.close();
          await options.upstream.close();
        })();
      return closing;
    },
    destroy(err) {
      isDraining = true;
      destroying ??= (async () => {
        catalog.close();
        await preparer.destroy();
        await client.destroy(err ?? new GraygateError('shutting_down'));
        await options.upstream.destroy();
      })();
      return destroying;
    },
  };
}

/** SPEC §4a: a 405 names the methods the route takes. */
function refuseMethod(res: ServerResponse, allow: string): void {
  sendError(res, toErrorResponse(new GraygateError('method_not_allowed')), { allow });
}

/** `/v1/models/{id}` → the id (percent-decoded, slashes kept: `org/model` ids); `/v1/models` → undefined. */
function modelIdOf(path: string): string | undefined {
  if (path === MODELS_PATH) return undefined;
  const raw = path.slice(MODELS_PATH.length + 1);
  try {
    return decodeURIComponent(raw);
  } catch {
    return raw;
  }
}
