import type { ChatCompletionChunk } from '../types.js';

// SSE framing of what the worker sends (SPEC §5). Each chunk is serialised
// exactly once; an upstream chunk already in OpenAI form keeps its own text.

export const DONE_EVENT = 'data: [DONE]\n\n';

/** An SSE comment: ignored by every client, but it keeps intermediaries from cutting a silent stream (issue 3 part 7). */
export const PING_COMMENT = ': ping\n\n';

export function encodeChunk(chunk: ChatCompletionChunk, raw?: string): string {
  return `data: ${raw ?? JSON.stringify(chunk)}\n\n`;
}

/** Response headers of a streaming answer. `x-accel-buffering: no` stops nginx in front of us from buffering it. */
export const SSE_HEADERS = {
  'content-type': 'text/event-stream; charset=utf-8',
  'cache-control': 'no-cache',
  'x-accel-buffering': 'no',
} as const;
