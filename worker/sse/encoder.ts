import type { ChatCompletionChunk } from '../types.js';

// SSE framing of what the worker sends (SPEC §5). Each chunk is serialised
// exactly once; an upstream chunk already in OpenAI form keeps its own text.
// That text may span lines: an upstream may spread one event over several
// `data:` lines, which the decoder joined with "\n" (WHATWG HTML §9.2.6), and
// behind a single `data: ` prefix every line after the first would reach the
// client unprefixed (issue 9 part 6). Such a payload goes out as one `data:`
// line per line, which every SSE client joins back into the same text; a
// single-line payload, the common case, is written as is after one scan.

export const DONE_EVENT = 'data: [DONE]\n\n';

/**
 * An SSE comment: ignored by every client, but it keeps intermediaries from cutting a silent stream (issue 3 part 7).
 */
export const PING_COMMENT = ': ping\n\n';

const LINE_BREAK = /\r\n|\r|\n/g;

/** One SSE event carrying `data` verbatim, whatever line breaks it holds. */
export function encodeData(data: string): string {
  if (data.indexOf('\n') === -1 && data.indexOf('\r') === -1) return `data: ${data}\n\n`;
  return `data: ${data.replace(LINE_BREAK, '\ndata: ')}\n\n`;
}

/** A chunk as one SSE event: its upstream text when it has one, else its JSON (which never spans lines). */
export function encodeChunk(chunk: ChatCompletionChunk, raw?: string): string {
  return raw === undefined ? `data: ${JSON.stringify(chunk)}\n\n` : encodeData(raw);
}

/** Response headers of a streaming answer. `x-accel-buffering: no` stops nginx in front of us from buffering it. */
export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
} as const;

/**
 * One SSE event of type `type` (no `event:` line for the default
 * `message`), its data verbatim: how relayed events go out.
 */
export function encodeEvent(type: string, data: string): string {
  return type === 'message' ? encodeData(data) : `event: ${type}\n${encodeData(data)}`;
}
