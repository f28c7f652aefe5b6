import type { IncomingHttpHeaders } from 'node:http';
import type { CorsConfig } from '../shared/config.js';
import { headerValue } from '../shared/http-headers.js';

// SPEC §12: browsers on other origins may call the main port when
// `cors.origins` allows them (a list, or "*"; default none). The master
// answers preflights itself (a worker never sees an OPTIONS preflight), adds
// Access-Control-* headers to every answer for an allowed origin, and refuses
// a request from any other origin with 403 before it is forwarded — a
// preflight-free `text/plain` POST from a foreign page would otherwise run
// upstream and spend tokens on an answer the browser then hides.
// Pure functions of the request headers and the config.

/** Always allowed in a preflight: what OpenAI SDKs and graygate's routing send. */
const CORS_ALLOWED_HEADERS = [
  'authorization',
  'content-type',
  'x-version',
  'x-user-id',
  'x-request-id',
  'openai-organization',
  'openai-project',
  'openai-beta',
];
/** Response headers a browser script may read: graygate's, and what OpenAI SDKs read of the upstream's. */
const CORS_EXPOSED_HEADERS = [
  'x-graygate-version',
  'x-request-id',
  'retry-after',
  'x-should-retry',
  'x-ratelimit-limit-requests',
  'x-ratelimit-limit-tokens',
  'x-ratelimit-remaining-requests',
  'x-ratelimit-remaining-tokens',
  'x-ratelimit-reset-requests',
  'x-ratelimit-reset-tokens',
].join(', ');
// DELETE: a stored response (SPEC §12).
const CORS_ALLOWED_METHODS = 'GET, POST, DELETE, OPTIONS';
/** How long a browser may cache a preflight answer, seconds. */
const CORS_MAX_AGE_S = 600;

export type CorsVerdict = 'none' | 'allowed' | 'forbidden';

/**
 * `none`: no Origin header (not a cross-origin browser request); else whether cors.origins has it as sent. `"*"`
 * allows `Origin: null` too (a `file:` page, a sandboxed frame): any page may call, refusing those protects nothing.
 */
export function corsVerdict(origin: string | undefined, cors: CorsConfig): CorsVerdict {
  if (origin === undefined) return 'none';
  if (cors.origins === '*') return 'allowed';
  return cors.origins.includes(origin) ? 'allowed' : 'forbidden';
}

/** A CORS preflight: OPTIONS with Origin and Access-Control-Request-Method. */
export function isPreflight(method: string | undefined, headers: IncomingHttpHeaders): boolean {
  return (
    method === 'OPTIONS' && headers['origin'] !== undefined && headers['access-control-request-method'] !== undefined
  );
}

const TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;

/**
 * Headers of the 204 answer to an allowed preflight: the fixed list plus any well-formed header the browser asked for.
 */
export function preflightHeaders(
  origin: string,
  headers: IncomingHttpHeaders,
  cors: CorsConfig,
): Record<string, string> {
  const asked = (headerValue(headers['access-control-request-headers']) ?? '')
    .split(',')
    .map((h) => h.trim().toLowerCase())
    .filter((h) => h !== '' && TOKEN.test(h));
  const allowed = [...new Set([...CORS_ALLOWED_HEADERS, ...asked])];
  return {
    ...responseCorsHeaders(origin, cors),
    'access-control-allow-methods': CORS_ALLOWED_METHODS,
    'access-control-allow-headers': allowed.join(', '),
    'access-control-max-age': String(CORS_MAX_AGE_S),
  };
}

/**
 * Whether answers differ by the request's Origin: with CORS on, an answer to a request without Origin (curl, a
 * server, a same-origin fetch some browsers send without one) or from a refused origin carries no
 * Access-Control-Allow-Origin, so every answer says `Vary: Origin`, or a shared cache could serve the bare answer to
 * an allowed page (the Fetch standard's advice on CORS and HTTP caches).
 */
export function corsVaries(cors: CorsConfig): boolean {
  return cors.origins === '*' || cors.origins.length > 0;
}

/** Headers every answer to an allowed origin carries (and `Vary: Origin`, which every answer does: corsVaries). */
export function responseCorsHeaders(origin: string, cors: CorsConfig): Record<string, string> {
  return {
    'access-control-allow-origin': cors.origins === '*' ? '*' : origin,
    'access-control-expose-headers': CORS_EXPOSED_HEADERS,
  };
}
