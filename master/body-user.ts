// SPEC §3 / issue 12 part 5: most server-side OpenAI SDKs keep no cookies, but
// the API has an end-user field, `user`, in the JSON body (and
// `safety_identifier`, which OpenAI now asks for in its place). When a request
// has no x-user-id and no sticky cookie, the master reads that field as the
// sticky key, so one user's multi-turn chat stays on one version.
//
// The master must not parse every body (chat histories run to megabytes, and
// the master is one event loop for every client): this finds the top-level
// `"user": "…"` member with native Buffer.indexOf jumps over strings, doing
// per-byte work only between them (the structure: `{`, `[`, `,`, `:`, spaces).
// Anything unexpected — a non-object body, a non-string `user`, malformed
// JSON — answers undefined and routing falls back to a fresh sticky cookie;
// the worker still validates the body.

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COLON = 0x3a;
const USER_KEY = Buffer.from('user');
/** OpenAI's successor of `user` (a stable, hashed end-user id): the key when a body has no `user` string. */
const SAFETY_KEY = Buffer.from('safety_identifier');
/** Longest `user` value used as a key; longer ones are ignored (a key, not a document). */
export const MAX_USER_KEY_CHARS = 256;

/** The end of the string starting at `open` (the index of its opening quote): the index of its closing quote, or -1. */
function stringEnd(body: Buffer, open: number): number {
  let at = body.indexOf(QUOTE, open + 1);
  while (at !== -1) {
    let slashes = 0;
    for (let i = at - 1; i > open && body[i] === BACKSLASH; i--) slashes++;
    if (slashes % 2 === 0) return at;
    at = body.indexOf(QUOTE, at + 1);
  }
  return -1;
}

function isSpace(byte: number | undefined): boolean {
  return byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
}

/** Bodies above this are not scanned (the request gets a fresh sticky cookie): bounds the master's work per request. */
const MAX_SCANNED_BODY_BYTES = 4 * 1024 * 1024;
/**
 * Strings read before the scan stops, with what it found so far: each costs the master ~0.2 µs, and a body of 4 MiB
 * holds 500,000 of `"a":"b",`. Above any chat request the worker takes: at most 50,000 members and items in all
 * (worker/request/chat-request.ts), so two strings each.
 */
export const MAX_SCANNED_STRINGS = 100_000;

/** What the master reads of a JSON body's top level: `user` (a sticky key) and `stream` (how its answer is timed). */
export interface TopLevelFacts {
  /**
   * The top-level `user` string, else the `safety_identifier` one (the worker sends either upstream as the same
   * end-user id), if one (not empty, at most MAX_USER_KEY_CHARS).
   */
  user: string | undefined;
  /** The top-level `stream`, when it is true or false. */
  stream: boolean | undefined;
  /** The body opens a JSON object (and was not too long to scan). */
  isObject: boolean;
}

const STREAM_KEY = Buffer.from('stream');
const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const NULL = Buffer.from('null');

/** The top-level `user` string of a JSON object body, or undefined. */
export function findTopLevelUser(body: Buffer): string | undefined {
  return scanTopLevel(body).user;
}

/** The top-level `user` (or `safety_identifier`) and `stream` members of a JSON object body (else nothing). */
export function scanTopLevel(body: Buffer): TopLevelFacts {
  const facts: TopLevelFacts = { user: undefined, stream: undefined, isObject: false };
  if (body.length > MAX_SCANNED_BODY_BYTES) return facts;
  let depth = 0;
  let at = 0;
  const length = body.length;
  while (at < length && isSpace(body[at])) at++;
  if (body[at] !== 0x7b /* { */) return facts;
  facts.isObject = true;
  let strings = 0;
  let decodes = 0;
  /** Where the last top-level `user` value starts: decoded once, after the scan (a body may repeat it 50,000 times). */
  let userAt = -1;
  /** Where the last top-level `safety_identifier` value starts, likewise. */
  let safetyAt = -1;
  while (at < length) {
    const byte = body[at]!;
    if (byte === QUOTE) {
      if (++strings > MAX_SCANNED_STRINGS) break;
      const end = stringEnd(body, at);
      if (end === -1) break;
      let name = depth === 1 ? keyName(body, at, end) : undefined;
      if (name === ESCAPED) name = decodes++ < MAX_KEY_DECODES ? escapedKeyName(body, at, end) : undefined;
      if (name !== undefined) {
        let next = end + 1;
        while (next < length && isSpace(body[next])) next++;
        if (body[next] === COLON) {
          next++;
          while (next < length && isSpace(body[next])) next++;
          // The last of a duplicated member counts, as the worker's JSON.parse reads it.
          if (name === 'stream') facts.stream = streamValue(body, next);
          else if (name === 'user') userAt = next;
          else safetyAt = next;
          at = next;
          continue;
        }
      }
      at = end + 1;
      continue;
    }
    if (byte === 0x7b || byte === 0x5b) depth++;
    else if (byte === 0x7d || byte === 0x5d) depth--;
    at++;
  }
  if (userAt !== -1) facts.user = userValue(body, userAt);
  if (facts.user === undefined && safetyAt !== -1) facts.user = userValue(body, safetyAt);
  return facts;
}

/** A key that may be one of ours written with escapes (`us\u0065r`): JSON.parse tells. */
const ESCAPED = 'escaped';
/**
 * Escaped keys decoded in one body, at most: no client escapes `user` or `stream`, and each is a JSON.parse (50,000
 * keys such as `"\u0061":1` held the master's loop ~40 ms; a review).
 */
const MAX_KEY_DECODES = 64;

/** The keys the scan reads. */
type Key = 'user' | 'safety_identifier' | 'stream';

/** One of ours if the string from `open` to `close` (its quotes) is one; ESCAPED if it may be one, escaped. */
function keyName(body: Buffer, open: number, close: number): Key | typeof ESCAPED | undefined {
  if (isKey(body, open, close, USER_KEY)) return 'user';
  if (isKey(body, open, close, STREAM_KEY)) return 'stream';
  if (isKey(body, open, close, SAFETY_KEY)) return 'safety_identifier';
  // The length first, then a backslash looked for inside the key only: an indexOf from here ran to the body's next
  // backslash, or its end, for every key (a probe: 4 MiB of `"a":"b",` held the master 47 s).
  return close - open <= MAX_ESCAPED_KEY_BYTES && hasBackslash(body, open + 1, close) ? ESCAPED : undefined;
}

/** The escaped key from `open` to `close` decoded: one of ours, or undefined. */
function escapedKeyName(body: Buffer, open: number, close: number): Key | undefined {
  try {
    const key = JSON.parse(body.toString('utf8', open, close + 1)) as string;
    return key === 'user' || key === 'stream' || key === 'safety_identifier' ? key : undefined;
  } catch {
    return undefined;
  }
}

/** Longest escaped key worth decoding: `safety_identifier` with every letter a \uXXXX escape. */
const MAX_ESCAPED_KEY_BYTES = SAFETY_KEY.length * 6 + 1;

function hasBackslash(body: Buffer, from: number, to: number): boolean {
  for (let i = from; i < to; i++) if (body[i] === BACKSLASH) return true;
  return false;
}

/** Byte by byte: Buffer.compare is a native call, ~4× the cost of a key this short (scripts/bench/body-scan.ts). */
function isKey(body: Buffer, open: number, close: number, key: Buffer): boolean {
  if (close - open - 1 !== key.length) return false;
  for (let i = 0; i < key.length; i++) if (body[open + 1 + i] !== key[i]) return false;
  return true;
}

/** A `stream` value: true; false or null (OpenAI's default); anything else, undefined (the worker refuses it). */
function streamValue(body: Buffer, at: number): boolean | undefined {
  if (startsWith(body, at, TRUE)) return true;
  if (startsWith(body, at, FALSE) || startsWith(body, at, NULL)) return false;
  return undefined;
}

function startsWith(body: Buffer, at: number, literal: Buffer): boolean {
  return body.compare(literal, 0, literal.length, at, Math.min(body.length, at + literal.length)) === 0;
}

/** The `user` string starting at `at` (its opening quote), or undefined: not a string, empty, or too long for a key. */
function userValue(body: Buffer, at: number): string | undefined {
  if (body[at] !== QUOTE) return undefined; // `user` is not a string
  const valueEnd = stringEnd(body, at);
  if (valueEnd === -1 || valueEnd - at - 1 > MAX_USER_KEY_CHARS * 6) return undefined;
  try {
    const value = JSON.parse(body.toString('utf8', at, valueEnd + 1)) as string;
    return value === '' || value.length > MAX_USER_KEY_CHARS ? undefined : value;
  } catch {
    return undefined;
  }
}
