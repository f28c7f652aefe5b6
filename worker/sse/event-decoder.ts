import { GraygateError } from '../../shared/errors.js';

// SPEC §5: lines → Server-Sent Events, following WHATWG HTML §9.2.6 "Interpreting
// an event stream": a leading byte-order mark is dropped, `:` starts a comment,
// `field: value` loses one leading space, several `data:` lines join with `\n`, a
// blank line dispatches. `id` and `retry` mean nothing to a proxy that never
// reconnects, so they are ignored. One field the standard does not have is read:
// llama.cpp's server writes an error as `error: {json}` where others write
// `event: error` + `data: {json}`; ignored, as the standard would, the error was
// lost and the answer passed for a success. It is that event.

export interface EventDecoderOptions {
  /**
   * Called once per dispatched event with its `event:` field (`message` when absent)
   * and data; events with no data are dropped, as the standard says.
   */
  onEvent: (type: string, data: string) => void;
  /**
   * Largest data payload accepted, in UTF-16 units of the joined data (≤ its bytes). Larger → upstream_protocol_error.
   */
  maxEventBytes: number;
}

export class EventDecoder {
  readonly #onEvent: (type: string, data: string) => void;
  readonly #maxEventBytes: number;
  #type = '';
  // One data line is the common case: kept as a string, an array only from the second line on.
  #data: string | undefined = undefined;
  #moreData: string[] | undefined = undefined;
  #dataLength = 0;
  #isFirstLine = true;

  constructor(options: EventDecoderOptions) {
    this.#onEvent = options.onEvent;
    this.#maxEventBytes = options.maxEventBytes;
  }

  /** Feeds one line, without its terminator. */
  line(line: string): void {
    if (this.#isFirstLine) {
      this.#isFirstLine = false;
      if (line.charCodeAt(0) === 0xfeff) line = line.slice(1);
    }
    if (line.length === 0) return this.#dispatch();
    const first = line.charCodeAt(0);
    if (first === 0x3a /* : */) return; // comment, e.g. `: ping`
    const colon = line.indexOf(':');
    let field: string;
    let value: string;
    if (colon === -1) {
      field = line;
      value = '';
    } else {
      field = line.slice(0, colon);
      value = line.charCodeAt(colon + 1) === 0x20 ? line.slice(colon + 2) : line.slice(colon + 1);
    }
    if (field === 'data') this.#addData(value);
    else if (field === 'event') this.#type = value;
    else if (field === 'error') {
      this.#type = 'error';
      this.#addData(value);
    }
  }

  /** No unfinished event is held: the next line starts an event. */
  get isIdle(): boolean {
    return this.#data === undefined && this.#type === '';
  }

  /**
   * The body ended. An event missing its final blank line is dispatched anyway:
   * a proxy should not lose the last event of a sloppy upstream.
   */
  end(): void {
    this.#dispatch();
  }

  #addData(value: string): void {
    this.#dataLength += value.length + (this.#data === undefined ? 0 : 1);
    if (this.#dataLength > this.#maxEventBytes) {
      this.#clear();
      throw new GraygateError(
        'upstream_protocol_error',
        `the upstream sent an event larger than maxEventBytes (${this.#maxEventBytes} bytes)`,
      );
    }
    if (this.#data === undefined) this.#data = value;
    else (this.#moreData ??= []).push(value);
  }

  #dispatch(): void {
    const first = this.#data;
    if (first === undefined) {
      this.#type = '';
      return;
    }
    const data = this.#moreData === undefined ? first : `${first}\n${this.#moreData.join('\n')}`;
    const type = this.#type === '' ? 'message' : this.#type;
    this.#clear();
    this.#onEvent(type, data);
  }

  #clear(): void {
    this.#type = '';
    this.#data = undefined;
    this.#moreData = undefined;
    this.#dataLength = 0;
  }
}
