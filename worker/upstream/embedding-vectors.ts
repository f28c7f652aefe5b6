// The vectors of an Ollama `/api/embed` answer found in its bytes, so that they go to the client as the upstream
// wrote them instead of through JSON.parse and JSON.stringify, on the worker's event loop while every stream on it
// waits: 1,000 texts of 1,536 dimensions (16.9 MiB) took 420 ms of it, now 45 (dist/scripts/bench/embed-answer.js).
// Each vector is checked against JSON's number grammar here; the rest of the answer, with its `embeddings` taken
// out, is parsed as before. An answer of another shape (an escaped or repeated `embeddings` key, a vector that is
// not numbers) is left to the parse of the whole, which names what is wrong.

import { GraygateError } from '../../shared/errors.js';

/** An answer's vectors, as [start, end) byte offsets, and the answer with `"embeddings":[]` in their place. */
export interface EmbeddingSlices {
  vectors: Array<[number, number]>;
  rest: Buffer;
}

const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const COMMA = 0x2c;
const COLON = 0x3a;
const OPEN_ARRAY = 0x5b;
const CLOSE_ARRAY = 0x5d;
const OPEN_OBJECT = 0x7b;
const CLOSE_OBJECT = 0x7d;
const EMBEDDINGS_KEY = Buffer.from('"embeddings"');

const isSpace = (byte: number | undefined): boolean => byte === 0x20 || byte === 0x0a || byte === 0x0d || byte === 0x09;
const isDigit = (byte: number | undefined): boolean => byte !== undefined && byte >= 0x30 && byte <= 0x39;

/**
 * The vectors of an answer that is a JSON object with one `embeddings` member, an array of arrays of numbers; more than
 * `maxVectors` of them is upstream_protocol_error (what the client did not ask for is not built).
 */
export function findEmbeddingVectors(bytes: Buffer, maxVectors: number): EmbeddingSlices | undefined {
  let i = skipSpace(bytes, 0);
  if (bytes[i] !== OPEN_OBJECT) return undefined;
  let found: { start: number; end: number; vectors: Array<[number, number]> } | undefined;
  i = skipSpace(bytes, i + 1);
  while (i < bytes.length && bytes[i] !== CLOSE_OBJECT) {
    if (bytes[i] !== QUOTE) return undefined;
    const keyEnd = stringEnd(bytes, i);
    // An escaped key may be `embeddings` too: which one JSON.parse keeps is the parse of the whole's to say.
    if (keyEnd === -1 || bytes.subarray(i, keyEnd).includes(BACKSLASH)) return undefined;
    const isEmbeddings = bytes.subarray(i, keyEnd).equals(EMBEDDINGS_KEY);
    i = skipSpace(bytes, keyEnd);
    if (bytes[i] !== COLON) return undefined;
    const valueStart = skipSpace(bytes, i + 1);
    if (isEmbeddings) {
      if (found !== undefined) return undefined; // JSON.parse keeps the last: the parse of the whole decides
      const vectors: Array<[number, number]> = [];
      const end = vectorsEnd(bytes, valueStart, vectors, maxVectors);
      if (end === -1) return undefined;
      found = { start: valueStart, end, vectors };
      i = end;
    } else {
      i = valueEnd(bytes, valueStart);
      if (i === -1) return undefined;
    }
    i = skipSpace(bytes, i);
    if (bytes[i] === COMMA) i = skipSpace(bytes, i + 1);
    else if (bytes[i] !== CLOSE_OBJECT) return undefined;
  }
  if (found === undefined) return undefined;
  const rest = Buffer.concat([bytes.subarray(0, found.start), Buffer.from('[]'), bytes.subarray(found.end)]);
  return { vectors: found.vectors, rest };
}

function skipSpace(bytes: Buffer, from: number): number {
  let i = from;
  while (isSpace(bytes[i])) i++;
  return i;
}

/** The offset after the string that opens at `from`; -1 if it does not close. */
function stringEnd(bytes: Buffer, from: number): number {
  for (let i = from + 1; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === BACKSLASH) i++;
    else if (byte === QUOTE) return i + 1;
  }
  return -1;
}

/**
 * The offset after the value that starts at `from` (strings and nesting followed, nothing else checked: the parse of
 * what is left checks it); -1 if it does not end.
 */
function valueEnd(bytes: Buffer, from: number): number {
  let depth = 0;
  for (let i = from; i < bytes.length; i++) {
    const byte = bytes[i];
    if (byte === QUOTE) {
      i = stringEnd(bytes, i) - 1;
      if (i < 0) return -1;
      if (depth === 0) return i + 1;
    } else if (byte === OPEN_ARRAY || byte === OPEN_OBJECT) depth++;
    else if (byte === CLOSE_ARRAY || byte === CLOSE_OBJECT) {
      if (depth === 0) return i; // the end of the object this value is in
      if (--depth === 0) return i + 1;
    } else if (depth === 0 && (byte === COMMA || isSpace(byte))) return i;
  }
  return -1;
}

/** The offset after an array of arrays of numbers that starts at `from`, each vector's bytes pushed; else -1. */
function vectorsEnd(bytes: Buffer, from: number, vectors: Array<[number, number]>, maxVectors: number): number {
  if (bytes[from] !== OPEN_ARRAY) return -1;
  let i = skipSpace(bytes, from + 1);
  if (bytes[i] === CLOSE_ARRAY) return i + 1;
  for (;;) {
    const start = i;
    if (bytes[i] !== OPEN_ARRAY) return -1;
    i = skipSpace(bytes, i + 1);
    if (bytes[i] !== CLOSE_ARRAY) {
      for (;;) {
        i = numberEnd(bytes, i);
        if (i === -1) return -1;
        i = skipSpace(bytes, i);
        if (bytes[i] === CLOSE_ARRAY) break;
        if (bytes[i] !== COMMA) return -1;
        i = skipSpace(bytes, i + 1);
      }
    }
    if (vectors.push([start, i + 1]) > maxVectors)
      throw new GraygateError(
        'upstream_protocol_error',
        `the upstream answered more than ${maxVectors} embeddings for ${maxVectors} inputs`,
      );
    i = skipSpace(bytes, i + 1);
    if (bytes[i] === CLOSE_ARRAY) return i + 1;
    if (bytes[i] !== COMMA) return -1;
    i = skipSpace(bytes, i + 1);
  }
}

/** The offset after the JSON number at `from` (RFC 8259 §6: `-? (0 | [1-9] d*) (. d+)? ([eE] [+-]? d+)?`); else -1. */
function numberEnd(bytes: Buffer, from: number): number {
  let i = from;
  if (bytes[i] === 0x2d) i++;
  if (bytes[i] === 0x30) i++;
  else if (isDigit(bytes[i])) while (isDigit(bytes[i])) i++;
  else return -1;
  if (bytes[i] === 0x2e) {
    if (!isDigit(bytes[++i])) return -1;
    while (isDigit(bytes[i])) i++;
  }
  if (bytes[i] === 0x65 || bytes[i] === 0x45) {
    i++;
    if (bytes[i] === 0x2b || bytes[i] === 0x2d) i++;
    if (!isDigit(bytes[i])) return -1;
    while (isDigit(bytes[i])) i++;
  }
  return i;
}
