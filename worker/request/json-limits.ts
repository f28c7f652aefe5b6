import { GraygateError } from '../../shared/errors.js';

// Issue 9 part 5: what a JSON body may cost before JSON.parse sees it. One
// pass over the raw bytes, string- and escape-aware, counts nesting and
// members without building anything: a body nested 100 000 deep is refused
// here instead of overflowing the stack of JSON.parse or JSON.stringify, and
// a body of 300 000 keys instead of costing seconds of CPU (V8 builds a
// hidden class per new key). Cost: O(bytes), a few ms per MiB; a string
// without escapes is skipped with one memchr.

export interface JsonLimits {
  /** Deepest nesting of objects and arrays; the top-level value is depth 1. */
  maxDepth: number;
  /** Most members of one object or items of one array. */
  maxMembers: number;
  /** Most members and items in the whole document, every container counted at least once. */
  maxValues: number;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;

/**
 * What is being checked: the name its errors give it and the members and items counted so far. The JSON texts
 * inside one request (the tool-call arguments a converter parses) share one count by passing the same object.
 */
export interface JsonScan {
  readonly subject: string;
  values: number;
  /** What the count of members and items covers, when it is more than this text (several texts sharing it). */
  readonly totalSubject?: string;
}

/**
 * Throws invalid_request naming the limit a body breaks. Malformed JSON is
 * left to JSON.parse, which reports it better; counts past a syntax error mean
 * nothing, but the pass stays O(bytes) whatever the input.
 */
export function checkJsonLimits(
  bytes: Buffer,
  limits: JsonLimits,
  scan: JsonScan = { subject: 'the request body', values: 0 },
): void {
  const { maxDepth, maxMembers, maxValues } = limits;
  const { subject } = scan;
  // Commas seen in the open container at each depth: its members are one more.
  const commas = new Uint32Array(maxDepth + 1);
  let depth = 0;
  let values = scan.values;
  const strings = new StringSkipper(bytes);
  const length = bytes.length;
  for (let i = 0; i < length; i++) {
    const c = bytes[i];
    if (c === QUOTE) {
      i = strings.endOf(i + 1);
      if (i === -1) break; // unterminated: not JSON
    } else if (c === COMMA) {
      if (depth === 0) break; // `1,2` at the top: not JSON
      if (++commas[depth]! >= maxMembers) {
        throw new GraygateError(
          'invalid_request',
          `${subject} has an object or array with more than ${maxMembers} members (limit ${maxMembers})`,
        );
      }
      if (++values > maxValues) throw tooManyValues(scan.totalSubject ?? subject, maxValues);
    } else if (c === OPEN_OBJECT || c === OPEN_ARRAY) {
      if (depth === maxDepth) {
        throw new GraygateError(
          'invalid_request',
          `${subject} is nested more than ${maxDepth} levels deep (limit ${maxDepth})`,
        );
      }
      commas[++depth] = 0;
      if (++values > maxValues) throw tooManyValues(scan.totalSubject ?? subject, maxValues);
    } else if (c === CLOSE_OBJECT || c === CLOSE_ARRAY) {
      if (depth === 0) break; // unbalanced: not JSON
      depth--;
    }
  }
  scan.values = values;
}

function tooManyValues(subject: string, maxValues: number): GraygateError {
  return new GraygateError(
    'invalid_request',
    `${subject} has more than ${maxValues} members and items in total (limit ${maxValues})`,
  );
}

/**
 * Finds where strings end. The next quote and the next backslash are cached
 * (positions only grow), so a string without escapes costs one lookup and
 * the whole body is searched for each byte value about once; a string with
 * escapes is walked byte by byte, which is linear too.
 */
class StringSkipper {
  readonly #bytes: Buffer;
  #nextQuote = -2;
  #nextBackslash = -2;

  constructor(bytes: Buffer) {
    this.#bytes = bytes;
  }

  /** Index of the quote closing the string whose content starts at `from`; -1 if there is none. */
  endOf(from: number): number {
    const bytes = this.#bytes;
    if (this.#nextQuote !== -1 && this.#nextQuote < from) this.#nextQuote = bytes.indexOf(QUOTE, from);
    if (this.#nextBackslash !== -1 && this.#nextBackslash < from) this.#nextBackslash = bytes.indexOf(BACKSLASH, from);
    const quote = this.#nextQuote;
    if (quote === -1) return -1;
    const backslash = this.#nextBackslash;
    if (backslash === -1 || backslash > quote) return quote;
    for (let i = backslash; i < bytes.length; i++) {
      const c = bytes[i];
      if (c === BACKSLASH)
        i++; // the escaped byte, a quote included
      else if (c === QUOTE) return i;
    }
    return -1;
  }
}
