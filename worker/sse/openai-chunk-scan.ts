import { isUtf8 } from 'node:buffer';

// Issue 10: an OpenAI upstream's chat chunks relayed as the bytes they came
// in, without JSON.parse, string decoding and re-encoding, when nothing in
// them must change or be read. A chunk of the upstream body qualifies when it
// is exactly a run of whole events `data: {json}\n\n` (one data line, LF
// endings, no other field) whose JSON is valid and "plain": a top-level
// object with a `choices` array of one object, no `error`, `usage` other
// than null, and in that choice no `finish_reason` other than null, a
// `delta` that is an object (or null, or absent) and no `tool_calls` in it.
// Anything else, including every doubt (escaped key names, a CR, `[DONE]`),
// makes the scan answer NOT_PLAIN and the caller decodes the chunk
// as before (JSON.parse, SPEC §5 errors, state updates). The scan never
// accepts what JSON.parse would reject: it validates the whole grammar, and
// UTF-8 with node's own isUtf8 once a byte ≥ 0x80 was seen (the decoding path
// would turn invalid bytes into U+FFFD, so such a chunk is not relayed as is).

/** The chunk must go through the decoding path. */
export const NOT_PLAIN = -1;

/** Upper bound on nesting, below JSON.parse's own: deeper payloads take the decoding path. */
const MAX_DEPTH = 64;

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const LF = 0x0a;

// Key names the scan looks at, as bytes.
const KEY_CHOICES = Buffer.from('choices');
const KEY_ERROR = Buffer.from('error');
const KEY_USAGE = Buffer.from('usage');
const KEY_DELTA = Buffer.from('delta');
const KEY_FINISH = Buffer.from('finish_reason');
const KEY_CONTENT = Buffer.from('content');
const KEY_REFUSAL = Buffer.from('refusal');
// A reasoning model's thinking, as vLLM, DeepSeek (`reasoning_content`) and OpenRouter, Ollama (`reasoning`) stream it.
const KEY_REASONING_CONTENT = Buffer.from('reasoning_content');
const KEY_REASONING = Buffer.from('reasoning');
const KEY_TOOL_CALLS = Buffer.from('tool_calls');
const DATA_PREFIX = Buffer.from('data: ');

/**
 * How many of the events in `chunk` carry content (non-empty `delta.content`
 * or `delta.refusal` in the first choice), or NOT_PLAIN. A chunk of zero
 * bytes is NOT_PLAIN.
 */
export function scanPlainChunk(chunk: Buffer): number {
  const length = chunk.length;
  if (length === 0) return NOT_PLAIN;
  const scan = new Scan(chunk);
  let contentEvents = 0;
  let at = 0;
  while (at < length) {
    if (!scan.startsWith(at, DATA_PREFIX)) return NOT_PLAIN;
    const start = at + DATA_PREFIX.length;
    const end = chunk.indexOf(LF, start);
    if (end === -1 || end + 1 >= length || chunk[end + 1] !== LF) return NOT_PLAIN;
    const facts = scan.event(start, end);
    if (facts === NOT_PLAIN) return NOT_PLAIN;
    contentEvents += facts;
    at = end + 2;
  }
  if (scan.hasHighBytes && !isUtf8(chunk)) return NOT_PLAIN;
  return contentEvents;
}

/**
 * One pass over the JSON of events; positions are byte offsets in `buf`. Methods return the position after what they
 * read, or -1.
 */
class Scan {
  readonly buf: Buffer;
  hasHighBytes = false;
  #end = 0;
  // Facts of the current event's first choice.
  #hasContent = false;
  #hasRefusal = false;
  #hasReasoningContent = false;
  #hasReasoning = false;

  constructor(buf: Buffer) {
    this.buf = buf;
  }

  startsWith(at: number, bytes: Buffer): boolean {
    return at + bytes.length <= this.buf.length && this.#equals(at, bytes);
  }

  /** The payload in [start, end): 1 if it carries content, 0 if not, NOT_PLAIN. */
  event(start: number, end: number): number {
    this.#end = end;
    this.#hasContent = false;
    this.#hasRefusal = false;
    this.#hasReasoningContent = false;
    this.#hasReasoning = false;
    let i = this.#space(start);
    i = this.#topObject(i);
    if (i === -1) return NOT_PLAIN;
    if (this.#space(i) !== end) return NOT_PLAIN;
    return this.#hasContent || this.#hasRefusal || this.#hasReasoningContent || this.#hasReasoning ? 1 : 0;
  }

  #space(i: number): number {
    const buf = this.buf;
    while (i < this.#end) {
      const c = buf[i]!;
      if (c !== 0x20 && c !== 0x09) break; // CR (an SSE line end) is left to the decoding path
      i++;
    }
    return i;
  }

  /** The event's object: `choices` required (a non-empty array), `error` absent, `usage` absent or null. */
  #topObject(i: number): number {
    if (this.buf[i] !== 0x7b /* { */) return -1;
    let hasChoices = false;
    i = this.#space(i + 1);
    if (this.buf[i] === 0x7d /* } */) return -1; // no choices
    for (;;) {
      const keyStart = i + 1;
      const keyEnd = this.#string(i);
      if (keyEnd === -1) return -1;
      const key = this.#key(keyStart, keyEnd - 1);
      if (key === undefined) return -1;
      i = this.#colon(keyEnd);
      if (i === -1) return -1;
      if (key === KEY_CHOICES) {
        if (hasChoices) return -1; // duplicate: JSON.parse keeps the last, the scan does not guess
        hasChoices = true;
        i = this.#choices(i);
      } else if (key === KEY_ERROR) {
        return -1;
      } else if (key === KEY_USAGE) {
        i = this.#null(i);
      } else {
        i = this.#value(i, 1);
      }
      if (i === -1) return -1;
      i = this.#space(i);
      const c = this.buf[i];
      if (c === 0x7d) return hasChoices ? i + 1 : -1;
      if (c !== 0x2c /* , */) return -1;
      i = this.#space(i + 1);
    }
  }

  /**
   * `choices`: an array of one plain choice. Several (n > 1 comes one choice a chunk) go to the decoding path, which
   * checks each one's shape.
   */
  #choices(i: number): number {
    if (this.buf[i] !== 0x5b /* [ */) return -1;
    i = this.#space(i + 1);
    if (this.buf[i] === 0x5d /* ] */) return -1; // empty: a usage chunk, or one to drop
    i = this.#firstChoice(i);
    if (i === -1) return -1;
    i = this.#space(i);
    return this.buf[i] === 0x5d ? i + 1 : -1;
  }

  #firstChoice(i: number): number {
    if (this.buf[i] !== 0x7b) return -1; // not an object: the decoding path refuses it
    i = this.#space(i + 1);
    if (this.buf[i] === 0x7d) return i + 1;
    for (;;) {
      const keyStart = i + 1;
      const keyEnd = this.#string(i);
      if (keyEnd === -1) return -1;
      const key = this.#key(keyStart, keyEnd - 1);
      if (key === undefined) return -1;
      i = this.#colon(keyEnd);
      if (i === -1) return -1;
      if (key === KEY_FINISH) i = this.#null(i);
      else if (key === KEY_DELTA) i = this.#delta(i);
      else i = this.#value(i, 3);
      if (i === -1) return -1;
      i = this.#space(i);
      const c = this.buf[i];
      if (c === 0x7d) return i + 1;
      if (c !== 0x2c) return -1;
      i = this.#space(i + 1);
    }
  }

  /**
   * `delta`: content and refusal read (the last of a duplicated key counts, as in JSON.parse); tool_calls not handled
   * here.
   */
  #delta(i: number): number {
    this.#hasContent = false;
    this.#hasRefusal = false;
    this.#hasReasoningContent = false;
    this.#hasReasoning = false;
    if (this.buf[i] === 0x6e) return this.#null(i); // null: no delta, as the decoding path takes it
    if (this.buf[i] !== 0x7b) return -1; // another non-object: the decoding path refuses it
    i = this.#space(i + 1);
    if (this.buf[i] === 0x7d) return i + 1;
    for (;;) {
      const keyStart = i + 1;
      const keyEnd = this.#string(i);
      if (keyEnd === -1) return -1;
      const key = this.#key(keyStart, keyEnd - 1);
      if (key === undefined || key === KEY_TOOL_CALLS) return -1;
      i = this.#colon(keyEnd);
      if (i === -1) return -1;
      const valueStart = i;
      i = this.#value(i, 4);
      if (i === -1) return -1;
      // A non-empty string: `"` and at least one more byte before the closing quote.
      const isText = this.buf[valueStart] === QUOTE && i - valueStart > 2;
      if (key === KEY_CONTENT) this.#hasContent = isText;
      else if (key === KEY_REFUSAL) this.#hasRefusal = isText;
      else if (key === KEY_REASONING_CONTENT) this.#hasReasoningContent = isText;
      else if (key === KEY_REASONING) this.#hasReasoning = isText;
      i = this.#space(i);
      const c = this.buf[i];
      if (c === 0x7d) return i + 1;
      if (c !== 0x2c) return -1;
      i = this.#space(i + 1);
    }
  }

  /**
   * The key between [start, end) if it is one the scan looks at; OTHER_KEY for any other unescaped key; undefined for
   * an escaped one.
   */
  #key(start: number, end: number): Buffer | undefined {
    const buf = this.buf;
    for (let i = start; i < end; i++) if (buf[i] === BACKSLASH) return undefined;
    const candidates = KEYS_BY_LENGTH[end - start];
    if (candidates === undefined) return OTHER_KEY;
    for (const name of candidates) if (this.#equals(start, name)) return name;
    return OTHER_KEY;
  }

  // Byte by byte: Buffer#compare's argument checks cost more than these few bytes.
  #equals(at: number, bytes: Buffer): boolean {
    const buf = this.buf;
    for (let j = 0; j < bytes.length; j++) if (buf[at + j] !== bytes[j]) return false;
    return true;
  }

  #colon(i: number): number {
    i = this.#space(i);
    if (this.buf[i] !== 0x3a /* : */) return -1;
    return this.#space(i + 1);
  }

  #null(i: number): number {
    const buf = this.buf;
    return buf[i] === 0x6e && buf[i + 1] === 0x75 && buf[i + 2] === 0x6c && buf[i + 3] === 0x6c && i + 4 <= this.#end
      ? i + 4
      : -1;
  }

  /** Any JSON value, validated. */
  #value(i: number, depth: number): number {
    if (depth > MAX_DEPTH || i >= this.#end) return -1;
    const buf = this.buf;
    const c = buf[i]!;
    if (c === QUOTE) return this.#string(i);
    if (c === 0x7b) return this.#object(i, depth);
    if (c === 0x5b) return this.#array(i, depth);
    if (c === 0x74 /* t */) return this.#word(i, TRUE);
    if (c === 0x66 /* f */) return this.#word(i, FALSE);
    if (c === 0x6e) return this.#null(i);
    return this.#number(i);
  }

  #object(i: number, depth: number): number {
    i = this.#space(i + 1);
    if (this.buf[i] === 0x7d) return i + 1;
    for (;;) {
      i = this.#string(i);
      if (i === -1) return -1;
      i = this.#colon(i);
      if (i === -1) return -1;
      i = this.#value(i, depth + 1);
      if (i === -1) return -1;
      i = this.#space(i);
      const c = this.buf[i];
      if (c === 0x7d) return i + 1;
      if (c !== 0x2c) return -1;
      i = this.#space(i + 1);
    }
  }

  #array(i: number, depth: number): number {
    i = this.#space(i + 1);
    if (this.buf[i] === 0x5d) return i + 1;
    for (;;) {
      i = this.#value(i, depth + 1);
      if (i === -1) return -1;
      i = this.#space(i);
      const c = this.buf[i];
      if (c === 0x5d) return i + 1;
      if (c !== 0x2c) return -1;
      i = this.#space(i + 1);
    }
  }

  /**
   * A string starting at the quote at `i`: the position after its closing quote. Control bytes and bad escapes are
   * invalid.
   */
  #string(i: number): number {
    const buf = this.buf;
    const end = this.#end;
    if (buf[i] !== QUOTE) return -1;
    for (i++; i < end; i++) {
      const c = buf[i]!;
      if (c === QUOTE) return i + 1;
      if (c < 0x20) return -1;
      if (c >= 0x80) this.hasHighBytes = true;
      else if (c === BACKSLASH) {
        const e = buf[++i];
        if (e === 0x75 /* u */) {
          if (i + 4 >= end || !isHex(buf[i + 1]!) || !isHex(buf[i + 2]!) || !isHex(buf[i + 3]!) || !isHex(buf[i + 4]!))
            return -1;
          i += 4;
        } else if (e === undefined || !ESCAPES.has(e)) return -1;
      }
    }
    return -1;
  }

  #word(i: number, word: Buffer): number {
    const end = i + word.length;
    return end <= this.#end && this.#equals(i, word) ? end : -1;
  }

  /** JSON's number grammar: -?(0|[1-9]\d*)(\.\d+)?([eE][+-]?\d+)? */
  #number(i: number): number {
    const buf = this.buf;
    const end = this.#end;
    if (buf[i] === 0x2d /* - */) i++;
    if (buf[i] === 0x30 /* 0 */) i++;
    else if (i < end && isDigit19(buf[i]!)) while (i < end && isDigit(buf[i]!)) i++;
    else return -1;
    if (i < end && buf[i] === 0x2e /* . */) {
      i++;
      if (!(i < end && isDigit(buf[i]!))) return -1;
      while (i < end && isDigit(buf[i]!)) i++;
    }
    if (i < end && (buf[i] === 0x65 || buf[i] === 0x45) /* e E */) {
      i++;
      if (i < end && (buf[i] === 0x2b || buf[i] === 0x2d)) i++;
      if (!(i < end && isDigit(buf[i]!))) return -1;
      while (i < end && isDigit(buf[i]!)) i++;
    }
    return i;
  }
}

/** Any unescaped key the scan does not look at. */
const OTHER_KEY = Buffer.alloc(0);
const KEYS_BY_LENGTH: ReadonlyArray<readonly Buffer[] | undefined> = groupByLength([
  KEY_CHOICES,
  KEY_ERROR,
  KEY_USAGE,
  KEY_DELTA,
  KEY_FINISH,
  KEY_CONTENT,
  KEY_REFUSAL,
  KEY_REASONING_CONTENT,
  KEY_REASONING,
  KEY_TOOL_CALLS,
]);
const TRUE = Buffer.from('true');
const FALSE = Buffer.from('false');
const ESCAPES: ReadonlySet<number> = new Set([...'"\\/bfnrt'].map((c) => c.charCodeAt(0)));

function groupByLength(keys: Buffer[]): Array<Buffer[] | undefined> {
  const out: Array<Buffer[] | undefined> = [];
  for (const key of keys) (out[key.length] ??= []).push(key);
  return out;
}

function isDigit(c: number): boolean {
  return c >= 0x30 && c <= 0x39;
}

function isDigit19(c: number): boolean {
  return c >= 0x31 && c <= 0x39;
}

function isHex(c: number): boolean {
  return (c >= 0x30 && c <= 0x39) || (c >= 0x41 && c <= 0x46) || (c >= 0x61 && c <= 0x66);
}
