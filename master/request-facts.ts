import type { IncomingHttpHeaders } from 'node:http';
import type { RoutingConfig } from '../shared/config.js';
import { headerValue, readCookie } from '../shared/http-headers.js';
import type { RoutingFacts } from './router.js';

// Reads the routing facts from a request's target and headers (SPEC §3) and
// computes the path to forward, with the routing query parameter removed.
// Pure: plain strings in, plain data out.

export type FactsResult = { ok: true; facts: RoutingFacts; forwardPath: string } | { ok: false; message: string };

function nonEmpty(value: string | undefined): string | undefined {
  return value === undefined || value === '' ? undefined : value;
}

export function readRoutingFacts(
  rawTarget: string,
  headers: IncomingHttpHeaders,
  routing: Pick<RoutingConfig, 'query' | 'header' | 'stickyHeader' | 'stickyCookie'>,
  /** Called only when the request has no sticky key, so most requests pay for no id. */
  newId: () => string,
): FactsResult {
  let target = rawTarget;
  if (!target.startsWith('/')) {
    // RFC 9112 §3.2.2 absolute-form: accept it, forward only path and query.
    if (!URL.canParse(target)) return { ok: false, message: 'malformed request target' };
    const url = new URL(target);
    target = url.pathname + url.search;
  }
  let queryVersion: string | undefined;
  let forwardPath = target;
  const q = target.indexOf('?');
  // Fast path: most requests carry no query string at all.
  if (q !== -1) {
    let params: URLSearchParams;
    try {
      params = new URLSearchParams(target.slice(q + 1));
    } catch {
      return { ok: false, message: 'malformed query string' };
    }
    if (params.has(routing.query)) {
      queryVersion = params.get(routing.query) ?? undefined;
      params.delete(routing.query);
      const rest = params.toString();
      forwardPath = target.slice(0, q) + (rest === '' ? '' : `?${rest}`);
    }
  }
  const headerVersion = nonEmpty(headerValue(headers[routing.header]));
  const stickyHeader = nonEmpty(headerValue(headers[routing.stickyHeader]));
  const stickyCookie = nonEmpty(readCookie(headerValue(headers['cookie']), routing.stickyCookie));
  const needsId = stickyHeader === undefined && stickyCookie === undefined;
  const facts: RoutingFacts = {
    queryVersion,
    headerVersion,
    stickyHeader,
    stickyCookie,
    freshId: needsId ? newId() : '',
  };
  return { ok: true, facts, forwardPath };
}
