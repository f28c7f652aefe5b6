import type { IncomingHttpHeaders, OutgoingHttpHeaders, ServerResponse } from 'node:http';
import type { ErrorResponse } from './errors.js';

// RFC 9110 §7.6.1: connection-specific fields a proxy must not forward. Go's
// httputil keeps the same list (hopHeaders); "proxy-connection" is non-standard
// but still sent by old clients.
const HOP_BY_HOP = new Set([
  'connection',
  'proxy-connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

/**
 * Deletes hop-by-hop headers in place, including every header named in a
 * `Connection` token (RFC 9110 §7.6.1). Mutates because it runs on the hot path
 * on header objects that are ours to change.
 */
export function stripHopByHop(headers: IncomingHttpHeaders | OutgoingHttpHeaders): void {
  const connection = headers['connection'];
  if (connection !== undefined) {
    for (const token of String(connection).split(',')) {
      const name = token.trim().toLowerCase();
      if (name !== '') delete headers[name];
    }
  }
  for (const name of HOP_BY_HOP) delete headers[name];
}

/**
 * A copy of `headers` without hop-by-hop fields (the same rules as stripHopByHop). Building a new
 * object instead of deleting keeps it in V8's fast mode: `delete` turns a header object into a
 * dictionary, which every later read and copy pays for (issue 10 heap profile).
 */
export function withoutHopByHop<H extends IncomingHttpHeaders | OutgoingHttpHeaders>(headers: H): H {
  return copyHeaders(headers, HOP_BY_HOP);
}

/**
 * Names a `Connection` header cannot remove: end-to-end fields (RFC 9110 §7.6.1 forbids listing them) that a client
 * listing them would strip from what reaches the worker — the Host, and what a proxy in front said of the client
 * (`X-Forwarded-*`, `Forwarded`): "hop-by-hop header abuse". Go's ReverseProxy keeps Host apart for the same reason.
 */
const END_TO_END: ReadonlySet<string> = new Set(['host', 'content-type', 'forwarded', 'x-real-ip']);
const isEndToEnd = (name: string): boolean => END_TO_END.has(name) || name.startsWith('x-forwarded-');

/**
 * A copy of `headers` without the names in `drop` nor those its `Connection` header names (but END_TO_END ones);
 * undefined values left out.
 */
export function copyHeaders<H extends IncomingHttpHeaders | OutgoingHttpHeaders>(
  headers: H,
  drop: ReadonlySet<string>,
): H {
  const connection = headers['connection'];
  // A set: a head of 16 KiB holds thousands of names and of Connection tokens, and an array searched once per name
  // cost their product.
  const named =
    connection === undefined
      ? undefined
      : new Set(
          String(connection)
            .toLowerCase()
            .split(',')
            .map((t) => t.trim()),
        );
  const out = {} as H;
  for (const name in headers) {
    const value = headers[name];
    if (value === undefined || drop.has(name)) continue;
    if (named !== undefined && named.has(name) && !isEndToEnd(name)) continue;
    (out as Record<string, unknown>)[name] = value;
  }
  return out;
}

/** Hop-by-hop names (RFC 9110 §7.6.1), for callers that drop more with copyHeaders. */
export const HOP_BY_HOP_HEADERS: ReadonlySet<string> = HOP_BY_HOP;

/** `text/event-stream` with any parameters: such responses are flushed on every write. */
export function isEventStream(contentType: string | number | string[] | undefined): boolean {
  if (typeof contentType !== 'string') return false;
  const semi = contentType.indexOf(';');
  const mediaType = (semi === -1 ? contentType : contentType.slice(0, semi)).trim().toLowerCase();
  return mediaType === 'text/event-stream';
}

/** Reads one cookie from a `Cookie` header (RFC 6265 §5.4 syntax), or undefined. */
export function readCookie(header: string | undefined, name: string): string | undefined {
  if (header === undefined) return undefined;
  for (const part of header.split(';')) {
    const eq = part.indexOf('=');
    if (eq === -1) continue;
    if (part.slice(0, eq).trim() === name) {
      let value = part.slice(eq + 1).trim();
      if (value.length >= 2 && value.startsWith('"') && value.endsWith('"')) value = value.slice(1, -1);
      return value;
    }
  }
  return undefined;
}

/** First value of a header that may have been sent more than once. */
export function headerValue(value: string | string[] | undefined): string | undefined {
  return Array.isArray(value) ? value[0] : value;
}

/** Writes an error response if nothing was sent yet; after the first byte the status cannot change (STYLE §9). */
export function sendError(
  res: ServerResponse,
  response: ErrorResponse,
  extraHeaders: Record<string, string> = {},
): void {
  if (res.headersSent) {
    res.destroy();
    return;
  }
  const body = JSON.stringify(response.body);
  res.writeHead(response.status, {
    ...extraHeaders,
    ...response.headers,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}

/** Writes a JSON success body. */
export function sendJson(
  res: ServerResponse,
  status: number,
  value: unknown,
  extraHeaders: Record<string, string> = {},
): void {
  const body = JSON.stringify(value);
  res.writeHead(status, {
    ...extraHeaders,
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(body),
  });
  res.end(body);
}
