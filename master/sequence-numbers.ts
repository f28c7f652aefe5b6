// A Responses stream's event numbers, read as its events pass through the master (relay.ts), so that the error event
// the master writes when a worker dies mid-stream is numbered after them (request-end.ts).

/** `"sequence_number"`: what a Responses event is numbered by (the JSON around it is the upstream's, spaces too). */
const SEQUENCE_NAME = Buffer.from('"sequence_number"');
/** A number's digits at most (past 2^53 JSON's numbers are not exact): longer is not a sequence number. */
const MAX_SEQUENCE_DIGITS = 15;
/** JSON whitespace on either side of the colon, at most (more is not an upstream's formatting). */
const MAX_SEQUENCE_SPACES = 4;
/** The bytes from a number's name to the byte after its digits, at most: what a read keeps for the next. */
const SEQUENCE_SPAN = SEQUENCE_NAME.length + 2 * MAX_SEQUENCE_SPACES + 1 + MAX_SEQUENCE_DIGITS + 1;

/**
 * The number a Responses stream's next event takes, read from its events as they pass: one past the last
 * `"sequence_number": N` whole in the stream so far (0 before any). The master numbers its own error event with it
 * when a worker dies mid-stream (request-end.ts). Whole across reads: a name or a number cut between reads is found
 * in the seam (the last SEQUENCE_SPAN bytes of everything read, kept in place; nothing allocated per read), a number
 * whose digits reach the end of the reads so far waits for the next read, and a read that numbers nothing (a
 * `: ping`) changes nothing. JSON's whitespace around the colon is allowed; a name followed by anything but a number
 * (a schema's property echoed in a response) is not a number.
 */
export class SequenceNumbers {
  next = 0;
  // Pooled, as FirstContent's: the carried tail, then the next read's first bytes.
  readonly #seam = Buffer.allocUnsafe(2 * SEQUENCE_SPAN);
  #carried = 0;

  push(chunk: Buffer): void {
    const n = chunk.length;
    if (n === 0) return;
    if (this.#carried > 0) {
      const copied = chunk.copy(this.#seam, this.#carried, 0, SEQUENCE_SPAN);
      const found = lastSequenceNumber(this.#seam, this.#carried, this.#carried + copied);
      if (found !== -1) this.next = found + 1;
    }
    const found = lastSequenceNumber(chunk, n, n);
    if (found !== -1) this.next = found + 1;
    // The tail to carry: the last SEQUENCE_SPAN bytes of everything so far.
    if (n >= SEQUENCE_SPAN) {
      chunk.copy(this.#seam, 0, n - SEQUENCE_SPAN);
      this.#carried = SEQUENCE_SPAN;
    } else {
      const kept = Math.min(this.#carried, SEQUENCE_SPAN - n);
      this.#seam.copyWithin(0, this.#carried - kept, this.#carried);
      chunk.copy(this.#seam, kept);
      this.#carried = kept + n;
    }
  }
}

/**
 * The last sequence number in `bytes` up to `end` whose name starts before `nameBefore` and whose digits end before
 * `end` (a number that reaches it may go on in the next read); -1 when there is none.
 */
function lastSequenceNumber(bytes: Buffer, nameBefore: number, end: number): number {
  let at = bytes.lastIndexOf(SEQUENCE_NAME, nameBefore - 1);
  for (; at !== -1; at = at === 0 ? -1 : bytes.lastIndexOf(SEQUENCE_NAME, at - 1)) {
    if (at + SEQUENCE_NAME.length > end) continue; // the seam's bytes past `end` are an older read's
    let i = skipSpaces(bytes, at + SEQUENCE_NAME.length, end);
    if (i === -1 || bytes[i] !== 0x3a /* : */) continue;
    i = skipSpaces(bytes, i + 1, end);
    if (i === -1) continue;
    let value = 0;
    let digits = 0;
    for (; i < end && bytes[i]! >= 0x30 && bytes[i]! <= 0x39; i++, digits++) value = value * 10 + bytes[i]! - 0x30;
    if (digits > 0 && digits <= MAX_SEQUENCE_DIGITS && i < end) return value;
  }
  return -1;
}

/** The index after at most MAX_SEQUENCE_SPACES JSON whitespace bytes from `i`; -1 past them or at `end`. */
function skipSpaces(bytes: Buffer, i: number, end: number): number {
  for (let spaces = 0; i < end; i++, spaces++) {
    const byte = bytes[i]!;
    if (byte !== 0x20 && byte !== 0x09 && byte !== 0x0a && byte !== 0x0d) return i;
    if (spaces === MAX_SEQUENCE_SPACES) return -1;
  }
  return -1;
}
