import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { GraygateError, isGraygateError, toErrorResponse } from '../../shared/errors.js';
import { headerValue, sendError, sendJson } from '../../shared/http-headers.js';
import type { Logger } from '../../shared/log.js';
import type { Supervisor } from '../supervisor.js';
import { isAuthorized } from './auth.js';
import { gatherMetrics } from './metrics-endpoint.js';
import type { Operations } from './operations.js';

// The admin port (SPEC §6): JSON in and out, OpenAI-shaped errors, one bearer
// token for everything including /metrics.

export interface AdminServerOptions {
  supervisor: Supervisor;
  operations: Operations;
  registry: Registry;
  log: Logger;
  /** GRAYGATE_ADMIN_TOKEN; undefined or empty: no auth (loopback only, checked at config load). */
  token: string | undefined;
}

const MAX_ADMIN_BODY_BYTES = 64 * 1024;

function decodeParam(raw: string): string {
  try {
    return decodeURIComponent(raw);
  } catch {
    throw new GraygateError('invalid_request', `malformed path segment ${JSON.stringify(raw.slice(0, 40))}`);
  }
}

export function readJsonBody(req: IncomingMessage, maxBytes = MAX_ADMIN_BODY_BYTES): Promise<unknown> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let size = 0;
    req.on('data', (chunk: Buffer) => {
      size += chunk.length;
      if (size > maxBytes) {
        // Answer first (the handler sends 413 with Connection: close); stop buffering what follows.
        req.removeAllListeners('data');
        req.resume();
        reject(new GraygateError('body_too_large', `admin bodies are limited to ${maxBytes} bytes`));
        return;
      }
      parts.push(chunk);
    });
    req.on('end', () => {
      if (size === 0) return resolve({});
      try {
        resolve(JSON.parse(Buffer.concat(parts).toString('utf8')));
      } catch {
        reject(new GraygateError('invalid_request', 'request body is not valid JSON'));
      }
    });
    req.on('error', reject);
  });
}

type Route = (req: IncomingMessage, params: string[]) => Promise<{ status: number; body: unknown; contentType?: string }>;

export function createAdminServer(options: AdminServerOptions): Server {
  const { supervisor, operations, log } = options;
  const routes: Array<[string, RegExp, Route]> = [
    ['GET', /^\/admin\/status$/, async () => ({ status: 200, body: operations.status() })],
    ['GET', /^\/metrics$/, async () => {
      const registry = await gatherMetrics(supervisor, options.registry);
      return { status: 200, body: await registry.metrics(), contentType: registry.contentType };
    }],
    ['PUT', /^\/admin\/weights$/, async (req) => ({ status: 200, body: operations.setWeights(await readJsonBody(req)) })],
    ['POST', /^\/admin\/versions$/, async (req) => ({ status: 201, body: await operations.addVersion(await readJsonBody(req)) })],
    ['POST', /^\/admin\/versions\/([^/]+)\/deploy$/, async (req, [name]) => ({ status: 200, body: await operations.deploy(name!, await readJsonBody(req)) })],
    ['POST', /^\/admin\/versions\/([^/]+)\/rollback$/, async (_req, [name]) => ({ status: 200, body: await operations.rollback(name!) })],
    ['DELETE', /^\/admin\/versions\/([^/]+)$/, async (_req, [name]) => ({ status: 200, body: await operations.removeVersion(name!) })],
    ['POST', /^\/admin\/reload$/, async () => ({ status: 200, body: await operations.reload() })],
  ];

  return createServer((req: IncomingMessage, res: ServerResponse) => {
    if (!isAuthorized(headerValue(req.headers['authorization']), options.token)) {
      return sendError(res, toErrorResponse(new GraygateError('unauthorized')), { 'www-authenticate': 'Bearer' });
    }
    const path = (req.url ?? '/').split('?', 1)[0]!;
    let pathMatched = false;
    for (const [method, pattern, route] of routes) {
      const match = pattern.exec(path);
      if (match === null) continue;
      pathMatched = true;
      if (method !== req.method) continue;
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
          sendError(res, toErrorResponse(err), isGraygateError(err) && err.code === 'body_too_large' ? { connection: 'close' } : {});
        },
      );
      return;
    }
    const code = pathMatched ? 'method_not_allowed' : 'not_found';
    sendError(res, toErrorResponse(new GraygateError(code, `no admin route for ${req.method} ${path}`)));
  });
}
