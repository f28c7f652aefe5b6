import { randomBytes } from 'node:crypto';

// JSON numbers a double cannot hold (integers past 2^53, literals past 1.8e308) survive graygate's parse of a request
// and the re-serialisation of what it sends upstream, instead of changing silently (SPEC §12): an id of 19 digits in a
// tool call's arguments, a tool schema's `"maximum": 9223372036854775807`, a 64-bit seed. Node 20 has neither
// `JSON.rawJSON` nor the reviver's source text, so such a literal is parsed through a marked string (a NUL, a
// per-process random nonce, the literal) into an ExactNumber, which no string or number check takes (but `integer`,
// for a seed), and which JSON.stringify writes as the literal. A body where no number can follow `:`, `[` or `,` with
// 16 digits or a 3-digit exponent (base64 images have none of those characters) takes JSON.parse alone.

const MARK = `\u0000${randomBytes(8).toString('hex')}:`;
/** The mark as JSON.stringify writes it, opening a string. */
const WRITTEN = new RegExp(`"\\\\u0000${MARK.slice(1)}([-+.\\deE]+)"`, 'g');
const MAYBE_INEXACT = /[:[,]\s*-?\d(?:\d{15}|[\d.]*[eE][+-]?\d{3})/;
/** A JSON number (RFC 8259 §6: no leading zeros). */
const NUMBER = /-?(?:0|[1-9]\d*)(?:\.\d+)?(?:[eE][+-]?\d+)?/y;

/** A number literal a double cannot hold, kept as the client wrote it. */
class ExactNumber {
  constructor(readonly literal: string) {}

  toJSON(): string {
    isWritten = true;
    return MARK + this.literal;
  }

  toString(): string {
    return this.literal;
  }
}

/** stringifyJsonExact: an ExactNumber was written, its mark is to be replaced. */
let isWritten = false;

/** Whether `text` may hold a number a double cannot (false: JSON.parse reads it exactly). */
export function mayHoldInexactNumbers(text: string): boolean {
  return MAYBE_INEXACT.test(text);
}

/** JSON.parse, numbers a double cannot hold kept as ExactNumbers. */
export function parseJsonExact(text: string): unknown {
  if (!MAYBE_INEXACT.test(text)) return JSON.parse(text);
  const marked = markInexactNumbers(text);
  if (marked === text) return JSON.parse(text);
  let value: unknown;
  try {
    value = JSON.parse(marked);
  } catch (err) {
    JSON.parse(text); // throws the same error, positions in the client's text
    throw err;
  }
  return toExact(value);
}

/** JSON.stringify, ExactNumbers written as they came. */
export function stringifyJsonExact(value: unknown): string {
  isWritten = false;
  const text = JSON.stringify(value);
  return isWritten ? text.replace(WRITTEN, '$1') : text;
}

/** An integer parseJsonExact kept (past 2^53: a 64-bit seed), sent upstream as written. */
export function isExactInteger(value: unknown): boolean {
  return value instanceof ExactNumber && /^-?\d+$/.test(value.literal);
}

/** The marked strings of a parsed value made ExactNumbers (a body with such a number: few). */
function toExact(value: unknown): unknown {
  if (typeof value === 'string') return value.startsWith(MARK) ? new ExactNumber(value.slice(MARK.length)) : value;
  if (Array.isArray(value)) {
    for (let i = 0; i < value.length; i++) value[i] = toExact(value[i]);
  } else if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    for (const key of Object.keys(record)) record[key] = toExact(record[key]);
  }
  return value;
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
  STRING_STOP.lastIndex = start + 1;
  for (;;) {
    const stop = STRING_STOP.exec(text);
    if (stop === null) return text.length;
    if (text.charCodeAt(stop.index) === 0x22) return stop.index + 1;
    STRING_STOP.lastIndex = stop.index + 2; // past the escaped character
  }
}

/** Where a string may end or escape (a search, not a loop per character: prompts and images are long). */
const STRING_STOP = /["\\]/g;

function isInexact(literal: string): boolean {
  const value = Number(literal);
  return !Number.isFinite(value) || (!/[.eE]/.test(literal) && !Number.isSafeInteger(value));
}
