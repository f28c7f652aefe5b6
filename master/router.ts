import type { RoutingConfig } from '../shared/config.js';
import { VERSION_NAME } from '../shared/defaults.js';
import type { ErrorCode } from '../shared/errors.js';
import { chooseWeighted, type WeightedCandidate } from './weighted-choice.js';

// The routing decision (SPEC §3) as a pure function of plain data (STYLE §15):
// no req/res, no clock, no randomness — a fresh sticky id is passed in.

export interface RoutingFacts {
  /** Value of the routing query parameter, if present (first occurrence). */
  queryVersion: string | undefined;
  /** Value of the routing header, if present. */
  headerVersion: string | undefined;
  /** Value of the sticky header (x-user-id), if present and non-empty. */
  stickyHeader: string | undefined;
  /** Value of the sticky cookie, if present and non-empty. */
  stickyCookie: string | undefined;
  /**
   * The JSON body's top-level `user` field (issue 12 part 5), else its
   * `safety_identifier`, if the request had one; read only when header and
   * cookie are absent.
   */
  stickyBody?: string | undefined;
  /** A new random id, used (and set as the cookie) when the request has no sticky key. */
  freshId: string;
}

export interface RoutingTable {
  routing: Pick<RoutingConfig, 'default' | 'unknownVersion' | 'stickyCookie'>;
  /** Known versions in a stable order, with their current weights. */
  versions: readonly WeightedCandidate[];
}

export type RoutingReason =
  'query' | 'header' | 'sticky-header' | 'sticky-cookie' | 'sticky-body' | 'fresh' | 'default';

export type RoutingDecision =
  | {
      ok: true;
      version: string;
      reason: RoutingReason;
      /** Set-Cookie value when a fresh id was assigned. */ setCookie?: string;
    }
  | { ok: false; code: Extract<ErrorCode, 'invalid_request' | 'unknown_version'>; message: string };

/** SPEC §3: `Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000`. */
export function stickyCookieValue(name: string, id: string): string {
  return `${name}=${id}; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000`;
}

/**
 * True when the weighted choice would need a fresh id: no explicit version,
 * no sticky header or cookie (the body's `user` or `safety_identifier` may help).
 */
export function needsStickyKey(facts: RoutingFacts): boolean {
  return (
    facts.queryVersion === undefined &&
    facts.headerVersion === undefined &&
    facts.stickyHeader === undefined &&
    facts.stickyCookie === undefined
  );
}

export function chooseVersion(facts: RoutingFacts, table: RoutingTable): RoutingDecision {
  const explicit: Array<[string | undefined, RoutingReason]> = [
    [facts.queryVersion, 'query'],
    [facts.headerVersion, 'header'],
  ];
  for (const [value, reason] of explicit) {
    if (value === undefined) continue;
    if (!VERSION_NAME.test(value)) {
      // Malformed names are 400 in both modes: "fallback" is for typos of real names, not garbage.
      return {
        ok: false,
        code: 'invalid_request',
        message: `invalid version name ${JSON.stringify(value.slice(0, 40))}: must match ${VERSION_NAME.source}`,
      };
    }
    if (table.versions.some((v) => v.name === value)) return { ok: true, version: value, reason };
    if (table.routing.unknownVersion === 'reject') {
      const known = table.versions.map((v) => v.name).join(', ');
      return { ok: false, code: 'unknown_version', message: `unknown version "${value}"; known versions: ${known}` };
    }
    break; // fallback: weighted choice below
  }

  let key: string;
  let reason: RoutingReason;
  let setCookie: string | undefined;
  if (facts.stickyHeader !== undefined) {
    key = facts.stickyHeader;
    reason = 'sticky-header';
  } else if (facts.stickyCookie !== undefined) {
    key = facts.stickyCookie;
    reason = 'sticky-cookie';
  } else if (facts.stickyBody !== undefined) {
    // The body's `user` keys the choice; no cookie is set: a client that sends one names its user on every call (most
    // server-side SDKs keep no cookies; one that does, the Python SDK's httpx, is pinned by a cookie set earlier).
    key = facts.stickyBody;
    reason = 'sticky-body';
  } else {
    key = facts.freshId;
    reason = 'fresh';
    setCookie = stickyCookieValue(table.routing.stickyCookie, facts.freshId);
  }
  const chosen = chooseWeighted(key, table.versions);
  const version = chosen ?? table.routing.default;
  const decision: RoutingDecision = { ok: true, version, reason: chosen === undefined ? 'default' : reason };
  if (setCookie !== undefined) decision.setCookie = setCookie;
  return decision;
}
