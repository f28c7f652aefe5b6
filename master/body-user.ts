// SPEC §3 / issue 12 part 5: server-side OpenAI SDKs keep no cookies, but the
// API has an end-user field, `user`, in the JSON body. When a request has no
// x-user-id and no sticky cookie, the master reads that field as the sticky
// key, so one user's multi-turn chat stays on one version.
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

/** The top-level `user` string of a JSON object body, or undefined. */
export function findTopLevelUser(body: Buffer): string | undefined {
  if (body.length > MAX_SCANNED_BODY_BYTES) return undefined;
  let depth = 0;
  let at = 0;
  const length = body.length;
  while (at < length && isSpace(body[at])) at++;
  if (body[at] !== 0x7b /* { */) return undefined;
  while (at < length) {
    const byte = body[at]!;
    if (byte === QUOTE) {
      const end = stringEnd(body, at);
      if (end === -1) return undefined;
      if (
        depth === 1 &&
        end - at - 1 === USER_KEY.length &&
        body.compare(USER_KEY, 0, USER_KEY.length, at + 1, end) === 0
      ) {
        let next = end + 1;
        while (next < length && isSpace(body[next])) next++;
        if (body[next] === COLON) {
          next++;
          while (next < length && isSpace(body[next])) next++;
          if (body[next] !== QUOTE) return undefined; // `user` is not a string
          const valueEnd = stringEnd(body, next);
          if (valueEnd === -1 || valueEnd - next - 1 > MAX_USER_KEY_CHARS * 6) return undefined;
          try {
            const value = JSON.parse(body.toString('utf8', next, valueEnd + 1)) as string;
            return value === '' || value.length > MAX_USER_KEY_CHARS ? undefined : value;
          } catch {
            return undefined;
          }
        }
      }
      at = end + 1;
      continue;
    }
    if (byte === 0x7b || byte === 0x5b) depth++;
    else if (byte === 0x7d || byte === 0x5d) depth--;
    at++;
  }
  return undefined;
}
