import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer, type SocketInternals } from '../../shared/node-http.js';
import type { Duplex } from 'node:stream';
import { GraygateError, isGraygateError, toErrorResponse, type ErrorResponse } from '../../shared/errors.js';
import { headerValue, sendError, sendJson } from '../../shared/http-headers.js';
import { readBody } from '../../shared/body.js';
import type { Logger } from '../../shared/log.js';
import type { MasterMetrics } from '../metrics.js';
import type { VersionRegistry } from '../version-registry.js';
import { isAuthorized } from './auth.js';
import { checkAdminRequest } from './guard.js';
import { headProblem, isUpgrade } from '../head-problems.js';
import { originForm } from '../request-facts.js';
import { clientErrorResponse, rawErrorResponse } from '../main-server.js';
import { gatherMetrics } from './metrics-endpoint.js';
import { ADMIN_MAX_CONNECTIONS } from '../file-limit.js';
import type { Operations } from './operations.js';
import { BurstLog } from '../burst-log.js';

// The admin port (SPEC §6): JSON in and out, OpenAI-shaped errors, one bearer
// token for everything including /metrics.

export interface AdminServerOptions {
  versions: VersionRegistry;
  operations: Operations;
  /** The master's metrics: its registry and the exited workers' totals, merged into /metrics. */
  metrics: Pick<MasterMetrics, 'registry' | 'retiredMetrics'>;
  log: Logger;
  /** GRAYGATE_ADMIN_TOKEN; undefined or empty: no auth (loopback only, checked at config load). */
  token: string | undefined;
  /** True once SIGTERM arrived: calls that change something get 503 shutting_down; reads are answered. */
  isClosing?: () => boolean;
}

const MAX_ADMIN_BODY_BYTES = 64 * 1024;

function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new GraygateError('invalid_request', `malformed path segment ${JSON.stringify(raw.slice(0, 40))}`);
  }
}

/** Silence allowed while an admin body arrives, ms. */
const ADMIN_BODY_TIMEOUT_MS = 10_000;
/**
 * The whole admin body, ms: 64 KiB a byte every few seconds never fell silent for 10 s, and 64 such connections (the
 * port's bound) locked the admin API out for as long as they liked (a probe: /metrics reset for 40 s).
 */
const ADMIN_BODY_DEADLINE_MS = 10_000;

/** An admin call's JSON body (`{}` when empty), through the shared bounded reader, whole within `deadlineMs`. */
export async function readJsonBody(req: IncomingMessage, deadlineMs = ADMIN_BODY_DEADLINE_MS): Promise<unknown> {
  const deadline = new AbortController();
  const timer = setTimeout(
    () =>
      deadline.abort(
        new GraygateError('body_timeout', `the admin request body was not received within ${deadlineMs} ms`),
      ),
    deadlineMs,
  );
  let body: Buffer;
  try {
    body = await readBody(req, {
      maxBytes: MAX_ADMIN_BODY_BYTES,
      idleTimeoutMs: ADMIN_BODY_TIMEOUT_MS,
      signal: deadline.signal,
    });
  } finally {
    clearTimeout(timer);
  }
  if (body.length === 0) return {};
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new GraygateError('invalid_request', 'request body is not valid JSON');
  }
}

type Route = (
  req: IncomingMessage,
  params: string[],
) => Promise<{ status: number; body: unknown; contentType?: string }>;

export function createAdminServer(options: AdminServerOptions): Server {
  const { versions, operations, log } = options;
  const routes: Array<[string, RegExp, Route]> = [
    ['GET', /^\/admin\/status$/, async () => ({ status: 200, body: operations.status() })],
    [
      'GET',
      /^\/metrics$/,
      async () => {
        const registry = await gatherMetrics(versions, options.metrics);
        return { status: 200, body: await registry.metrics(), contentType: registry.contentType };
      },
    ],
    [
      'PUT',
      /^\/admin\/weights$/,
      async (req) => ({ status: 200, body: operations.setWeights(await readJsonBody(req)) }),
    ],
    [
      'POST',
      /^\/admin\/versions$/,
      async (req) => ({ status: 201, body: await operations.addVersion(await readJsonBody(req)) }),
    ],
    [
      'POST',
      /^\/admin\/versions\/([^/]+)\/deploy$/,
      async (req, [name]) => ({ status: 200, body: await operations.deploy(name!, await readJsonBody(req)) }),
    ],
    [
      'POST',
      /^\/admin\/versions\/([^/]+)\/rollback$/,
      async (_req, [name]) => ({ status: 200, body: await operations.rollback(name!) }),
    ],
    [
      'DELETE',
      /^\/admin\/versions\/([^/]+)$/,
      async (_req, [name]) => ({ status: 200, body: await operations.removeVersion(name!) }),
    ],
    ['POST', /^\/admin\/reload$/, async () => ({ status: 200, body: await operations.reload('admin') })],
    // SPEC §11 canaries.
    [
      'POST',
      /^\/admin\/versions\/([^/]+)\/canary$/,
      async (req, [name]) => ({ status: 202, body: operations.startCanary(name!, await readJsonBody(req)) }),
    ],
    [
      'GET',
      /^\/admin\/versions\/([^/]+)\/canary$/,
      async (_req, [name]) => ({ status: 200, body: operations.canary(name!) }),
    ],
    [
      'DELETE',
      /^\/admin\/versions\/([^/]+)\/canary$/,
      async (_req, [name]) => ({ status: 200, body: operations.abortCanary(name!) }),
    ],
    [
      'POST',
      /^\/admin\/versions\/([^/]+)\/canary\/promote$/,
      async (_req, [name]) => ({ status: 200, body: operations.promoteCanary(name!) }),
    ],
    [
      'POST',
      /^\/admin\/versions\/([^/]+)\/canary\/pause$/,
      async (_req, [name]) => ({ status: 200, body: operations.pauseCanary(name!) }),
    ],
    [
      'POST',
      /^\/admin\/versions\/([^/]+)\/canary\/resume$/,
      async (_req, [name]) => ({ status: 200, body: operations.resumeCanary(name!) }),
    ],
    ['GET', /^\/admin\/canaries$/, async () => ({ status: 200, body: operations.canaries() })],
  ];

  const hasToken = options.token !== undefined && options.token !== '';
  // Calls refused for a missing or wrong token, as warn lines a burst at a time (an observability probe: guessing the
  // token left no trace; a line each would let a guesser fill the disk). Never the header: a token mistyped is nearly
  // one.
  const unauthorized = new BurstLog<{ method: string | undefined; path: string; remoteAddress: string | undefined }>(
    UNAUTHORIZED_LOG_MS,
    (refused, last) => log.warn({ ...last, refused }, 'admin call unauthorized: missing or wrong bearer token'),
  );
  // Deadlines checked every second (Node's default is every 30 s: a head's 10 s would be up to 40).
  const timing = { headersTimeout: ADMIN_HEAD_MS, connectionsCheckingInterval: 1000 };
  const server = createServer(timing, (req: IncomingMessage, res: ServerResponse) => {
    // A page that includes an answer as a script or style gets nothing run or applied (/metrics is text).
    res.setHeader('x-content-type-options', 'nosniff');
    // The main port's head checks (SPEC §4a): two Hosts, a Host no host has, an HTTP/2.0 request line, a
    // transfer-coding other than chunked (a gzip body was read as plain bytes), an unknown Expect; refused and closed.
    const head = headProblem(req);
    if (head !== undefined) {
      res.shouldKeepAlive = false;
      return sendError(res, toErrorResponse(head), { connection: 'close' });
    }
    if (isUpgrade(req)) res.shouldKeepAlive = false;
    // SPEC §6: a web page must not reach this port (guard.ts); checked
    // before the token, so a rebinding page learns nothing.
    const forbidden = checkAdminRequest({ method: req.method, headers: req.headers, hasToken });
    if (forbidden !== undefined) {
      log.warn(
        {
          method: req.method,
          path: (req.url ?? '/').split('?', 1)[0],
          host: req.headers['host'],
          origin: req.headers['origin'],
        },
        'admin call forbidden',
      );
      return sendError(res, toErrorResponse(forbidden), { connection: 'close' });
    }
    if (!isAuthorized(headerValue(req.headers['authorization']), options.token)) {
      unauthorized.note({
        method: req.method,
        path: (req.url ?? '/').split('?', 1)[0]!,
        remoteAddress: req.socket.remoteAddress,
      });
      return sendError(res, toErrorResponse(new GraygateError('unauthorized')), { 'www-authenticate': 'Bearer' });
    }
    // Absolute-form (`GET http://127.0.0.1:9000/admin/status`), which a server must accept (RFC 9112 §3.2.2), as the
    // main port takes it: it was a 404 (a probe).
    const target = originForm(req.url ?? '/');
    if (target === undefined) {
      const malformed = new GraygateError('invalid_request', 'malformed request target');
      return sendError(res, toErrorResponse(malformed), { connection: 'close' });
    }
    const path = target.split('?', 1)[0]!;
    if (options.isClosing?.() === true && req.method !== 'GET' && req.method !== 'HEAD') {
      const closing = new GraygateError('shutting_down', 'the master is shutting down: nothing is changed now');
      return sendError(res, toErrorResponse(closing), { connection: 'close' });
    }
    const allowed: string[] = [];
    for (const [method, pattern, route] of routes) {
      const match = pattern.exec(path);
      if (match === null) continue;
      // HEAD is a GET without the body (node leaves it out), as on the main port's health paths.
      if (method !== req.method && !(method === 'GET' && req.method === 'HEAD')) {
        // `Allow` lists HEAD where GET is (RFC 9110 §9.3.2), as the main port's 405 does.
        allowed.push(...(method === 'GET' ? ['GET', 'HEAD'] : [method]));
        continue;
      }
      // Decoding runs inside the promise: a bad percent-escape is a 400, never a thrown error in the master.
      Promise.resolve()
        .then(() => route(req, match.slice(1).map(decodeParam)))
        .then(
          ({ status, body, contentType }) => {
            if (contentType === undefined) return sendJson(res, status, body);
            res.writeHead(status, { 'content-type': contentType });
            res.end(body as string);
          },
          (err: unknown) => {
            if (!isGraygateError(err)) log.error({ err, path }, 'admin call failed');
            else log.info({ code: err.code, path, message: err.message }, 'admin call refused');
            sendError(
              res,
              toErrorResponse(err),
              // A body left unread: the connection cannot carry another request.
              isGraygateError(err) && (err.code === 'body_too_large' || err.code === 'body_timeout')
                ? { connection: 'close' }
                : {},
            );
          },
        );
      return;
    }
    if (allowed.length > 0) {
      return sendError(
        res,
        toErrorResponse(new GraygateError('method_not_allowed', `${path} answers ${allowed.join(', ')}`)),
        { allow: allowed.join(', ') },
      );
    }
    sendError(res, toErrorResponse(new GraygateError('not_found', `no admin route for ${req.method} ${path}`)));
  });
  // Bounded, as the main port is (file-limit.ts reserves these descriptors): held connections cannot take the
  // master's; one past them is closed as it is accepted.
  server.maxConnections = ADMIN_MAX_CONNECTIONS;
  // An expectation other than 100-continue: refused by headProblem above, in the API's error shape (node's own 417
  // has an empty body).
  server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => server.emit('request', req, res));
  // CONNECT, which Node closes without a word when nothing listens (a probe): refused as the main port refuses it. Its
  // socket comes without Node's error listener, and a reset must not end the master.
  server.on('connect', (_req: IncomingMessage, socket: Duplex) => {
    socket.on('error', () => socket.destroy());
    const refusal = new GraygateError('invalid_request', 'CONNECT is not supported: this is not a forward proxy');
    if (socket.writable) socket.end(adminRawError(toErrorResponse(refusal)));
    else socket.destroy();
  });
  // What node's parser refuses (a malformed head, one past its size, a head not sent in time): in the API's shape
  // too, not node's bare `400 Bad Request`; a connection that is just gone is closed.
  // Sockets whose parser failed: the errors of the bytes after the first are ignored.
  const refused = new WeakSet<Duplex>();
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    if (refused.has(socket)) return;
    refused.add(socket);
    const refusal = clientErrorResponse(err, { maxUrlBytes: Number.POSITIVE_INFINITY, headTimeoutMs: ADMIN_HEAD_MS });
    if (refusal === undefined) return socket.destroy();
    // The refusal waits for the answers of the requests before the bytes node could not parse, as the main port's
    // does: written at once, it went out ahead of a `/metrics` or a status still being made, which was lost (a
    // probe). A connection its last answer closed (a refused head, `Connection: close`) gets nothing more: node's
    // parser fails on `Transfer-Encoding: gzip` after the head refused for it, and a second answer went out.
    afterAnswers(socket, () => {
      if (socket.writable) socket.end(adminRawError(refusal));
      else socket.destroy();
    });
  });
  return server;
}

/**
 * Calls `then` once every answer due on the socket has been written: node answers pipelined requests in order, its
 * own `finish` listener (the first) taking the answer off the socket and giving it the next one's, or ending it after
 * a last one. An answer still on the socket has not emitted `finish`, even when written whole (`writableFinished`).
 */
function afterAnswers(socket: Duplex, then: () => void): void {
  const current = (socket as Duplex & SocketInternals)._httpMessage as ServerResponse | null | undefined;
  if (current === null || current === undefined) return then();
  current.once('finish', () => afterAnswers(socket, then));
}

/** At most one line of refused tokens this often, ms. */
const UNAUTHORIZED_LOG_MS = 10_000;

/** An answer written on the socket, with the header every admin answer has (a 408 or a 400 lacked it). */
function adminRawError(response: ErrorResponse): string {
  return rawErrorResponse({ ...response, headers: { ...response.headers, 'x-content-type-options': 'nosniff' } });
}

/**
 * The head's deadline on this port, named in the 408 it answers: Node's default (60 s) let 64 connections sending
 * half a head hold the admin API for a minute at a time.
 */
const ADMIN_HEAD_MS = 10_000;
