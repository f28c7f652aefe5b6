import type { IncomingHttpHeaders } from 'node:http';
import { isLoopbackHost } from '../../shared/config.js';
import { GraygateError } from '../../shared/errors.js';
import { headerValue } from '../../shared/http-headers.js';

// SPEC §6 (turn 2): the admin API is never reachable from a web page the
// operator happens to visit. Without a token, a page can still make the
// browser send requests to 127.0.0.1:9000 — a cross-site "simple" POST
// (text/plain, no preflight), or, after DNS rebinding, a same-"origin" read
// with an attacker's Host. So:
//  - without a token, only requests whose Host is a loopback literal or
//    `localhost` are answered, and an `Origin`, when sent, must be the admin's
//    own origin (a browser sends one on every cross-origin request);
//  - with or without a token, state-changing calls need
//    `Content-Type: application/json`, which no simple cross-site request
//    can carry (it forces a CORS preflight, which this port never grants).
// With a token set, a browser cannot attach it cross-site (no CORS), so the
// Host and Origin checks are not needed and a reverse proxy in front of the
// admin port keeps working.
// A page's `<script>`/`<img>` GET carries no Origin, but a browser marks it
// `Sec-Fetch-Site: cross-site` (or `same-site`, a page on another port of
// localhost); answered, it would tell the page the port is graygate's and
// whether a token is set. Such requests are refused, token or not; an
// operator typing the URL sends `none`, curl and the CLI send nothing.

const STATE_CHANGING: ReadonlySet<string> = new Set(['POST', 'PUT', 'PATCH', 'DELETE']);

/**
 * The host part of a `Host` header (`[::1]:9000` → `[::1]`, `LOCALHOST:9000` → `localhost`); any port is fine (a
 * port-forward moves it). After the host only `:digits` may follow: anything else (`localhost:9000@evil.example`, a
 * helper's probe) is no host at all, '' (no browser sends it; it is refused, not read as `localhost`).
 */
export function hostOf(hostHeader: string): string {
  return HOST_HEADER.exec(hostHeader.trim().toLowerCase())?.[1] ?? '';
}

/** `host[:port]`, the host a bracketed IPv6 literal or a name with no colon or bracket (`::1` bare is none). */
const HOST_HEADER = /^(\[[^\]]*\]|[^:[\]]+)(?::\d{0,5})?$/;

/** `application/json`, with or without parameters. */
export function isJsonContentType(value: string | undefined): boolean {
  if (value === undefined) return false;
  const semi = value.indexOf(';');
  return (semi === -1 ? value : value.slice(0, semi)).trim().toLowerCase() === 'application/json';
}

export interface AdminRequestFacts {
  method: string | undefined;
  headers: IncomingHttpHeaders;
  /** GRAYGATE_ADMIN_TOKEN is set (its check is auth.ts's job). */
  hasToken: boolean;
}

/** A 403 forbidden for a request a web page could have made, or undefined when it may proceed. */
export function checkAdminRequest(facts: AdminRequestFacts): GraygateError | undefined {
  const { headers } = facts;
  const site = headerValue(headers['sec-fetch-site'])?.toLowerCase();
  if (site !== undefined && site !== 'none' && site !== 'same-origin') {
    return new GraygateError('forbidden', 'requests a web page makes to the admin API are refused');
  }
  if (!facts.hasToken) {
    const host = headerValue(headers['host']);
    if (host === undefined || !isLoopbackHost(hostOf(host))) {
      return new GraygateError(
        'forbidden',
        'without GRAYGATE_ADMIN_TOKEN the admin API answers only requests addressed to a loopback host (Host: 127.0.0.1 or localhost)',
      );
    }
    const origin = headerValue(headers['origin']);
    if (origin !== undefined && origin.toLowerCase() !== `http://${host.trim().toLowerCase()}`) {
      return new GraygateError('forbidden', 'cross-origin requests to the admin API are refused');
    }
  }
  if (STATE_CHANGING.has(facts.method ?? '') && !isJsonContentType(headerValue(headers['content-type']))) {
    return new GraygateError('forbidden', 'state-changing admin calls need Content-Type: application/json');
  }
  return undefined;
}
