import { randomBytes } from 'node:crypto';

// JSON numbers a double cannot hold (integers past 2^53, literals past 1.8e308) survive graygate's parse of a request
// and the re-serialisation of what it sends upstream, instead of changing silently (SPEC §12): an id of 19 digits in a
// tool call's arguments, a tool schema's `"maximum": 9223372036854775807`, a 64-bit seed. Node 20 has neither
// `JSON.rawJSON` nor the reviver's source text, so such a literal is read as a marked string (a NUL, a per-process
// random nonce, the literal: no client string can be one) and written back as the literal. Bodies without a long
// digit run or a three-digit exponent, all but a few, take JSON.parse and JSON.stringify alone.

const MARK = `\u0000${randomBytes(8).toString('hex')}:`;
/** The mark as JSON.stringify writes it, opening a string. */
const WRITTEN_MARK = `"\\u0000${MARK.slice(1)}`;
const WRITTEN = new RegExp(`"\\\\u0000${MARK.slice(1)}([-+.\\deE]+)"`, 'g');
const MAYBE_INEXACT = /\d{16}|[eE][+-]?\d{3}/;
const NUMBER = /-?\d+(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** JSON.parse, numbers a double cannot hold kept as marked strings (`isExactInteger` tells an integer among them). */
export function parseJsonExact(text: string): unknown {
  if (!MAYBE_INEXACT.test(text)) return JSON.parse(text);
  try {
    return JSON.parse(markInexactNumbers(text));
  } catch (err) {
    JSON.parse(text); // throws the same error, positions in the client's text
    throw err;
  }
}

/** JSON.stringify, marked numbers written back as they came. */
export function stringifyJsonExact(value: unknown): string {
  const text = JSON.stringify(value);
  return text.includes(WRITTEN_MARK) ? text.replace(WRITTEN, '$1') : text;
}

/** An integer literal parseJsonExact kept (past 2^53): an integer the upstream is sent as written. */
export function isExactInteger(value: unknown): boolean {
  return typeof value === 'string' && value.startsWith(MARK) && /^-?\d+$/.test(value.slice(MARK.length));
}

/** The text with each number literal outside strings that a double cannot hold made a marked string. */
function markInexactNumbers(text: string): string {
  let out = '';
  let copiedTo = 0;
  let i = 0;
  while (i < text.length) {
    const c = text.charCodeAt(i);
    if (c === 0x22) {
      i = afterString(text, i);
      continue;
    }
    if (c !== 0x2d && (c < 0x30 || c > 0x39)) {
      i++;
      continue;
    }
    NUMBER.lastIndex = i;
    const literal = NUMBER.exec(text)?.[0];
    if (literal === undefined) {
      i++;
      continue;
    }
    if (isInexact(literal)) {
      out += `${text.slice(copiedTo, i)}"\\u0000${MARK.slice(1)}${literal}"`;
      copiedTo = i + literal.length;
    }
    i += literal.length;
  }
  return copiedTo === 0 ? text : out + text.slice(copiedTo);
}

/** The index after the string opening at `start` (its closing quote), or the text's end. */
function afterString(text: string, start: number): number {
  for (let i = start + 1; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x5c) i++;
    else if (c === 0x22) return i + 1;
  }
  return text.length;
}

function isInexact(literal: string): boolean {
  const value = Number(literal);
  return !Number.isFinite(value) || (!/[.eE]/.test(literal) && !Number.isSafeInteger(value));
}
