import { tokenCount } from '../upstream/format-adapter.js';

// The token usage of a relayed, non-streamed JSON answer (SPEC §9 tokens,
// §12), which may be megabytes long (a batch of embeddings) and is passed on
// chunk by chunk, never held whole. OpenAI puts `usage` at the end of every
// such object (chat, completions, embeddings, responses), so the last bytes
// are kept and searched once the answer is over. A `"usage"` key can't be
// confused with text inside a string: a quote in a JSON string is escaped.

/**
 * Bytes kept from the end of an answer: `usage` and what follows it (Responses: `user`, `metadata` up to 16 pairs) fit.
 */
const USAGE_TAIL_BYTES = 16 * 1024;

export class UsageTail {
  readonly #maxBytes: number;
  /**
   * The last bytes, in a buffer of twice as many, made on the first chunk: each chunk is copied in once, and the kept
   * bytes moved to its start once per maxBytes or more. Chunks held as they came, a byte each from an upstream that
   * writes so, were 16,384 pieces, and each new one shifted them all (a probe: ~7 µs a chunk).
   */
  #buffer: Buffer | undefined;
  #end = 0;

  constructor(maxBytes = USAGE_TAIL_BYTES) {
    this.#maxBytes = maxBytes;
  }

  push(chunk: Buffer): void {
    const max = this.#maxBytes;
    const buffer = (this.#buffer ??= Buffer.allocUnsafe(2 * max));
    const part = chunk.length > max ? chunk.subarray(chunk.length - max) : chunk;
    if (this.#end + part.length > buffer.length) {
      const keep = Math.min(this.#end, max - part.length);
      buffer.copyWithin(0, this.#end - keep, this.#end);
      this.#end = keep;
    }
    part.copy(buffer, this.#end);
    this.#end += part.length;
  }

  /** The tokens of the last `usage` object in the kept bytes, OpenAI's names or the Responses API's. */
  usage(): { prompt_tokens: number; completion_tokens: number } | undefined {
    if (this.#buffer === undefined) return undefined;
    return usageOf(findUsage(this.#buffer.toString('utf8', Math.max(0, this.#end - this.#maxBytes), this.#end)));
  }
}

/** The object after the last `"usage":` in `text`, parsed; undefined when there is none or it is cut. */
export function findUsage(text: string): Record<string, unknown> | undefined {
  const at = text.lastIndexOf('"usage"');
  if (at === -1) return undefined;
  let i = at + '"usage"'.length;
  while (i < text.length && /\s/.test(text[i]!)) i++;
  if (text[i] !== ':') return undefined;
  i++;
  while (i < text.length && /\s/.test(text[i]!)) i++;
  if (text[i] !== '{') return undefined;
  const end = objectEnd(text, i);
  if (end === -1) return undefined;
  try {
    const value = JSON.parse(text.slice(i, end + 1)) as unknown;
    return typeof value === 'object' && value !== null ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Index of the `}` closing the object that opens at `start`, strings skipped; -1 if it is not closed. */
function objectEnd(text: string, start: number): number {
  let depth = 0;
  for (let i = start; i < text.length; i++) {
    const c = text[i];
    if (c === '"') {
      for (i++; i < text.length && text[i] !== '"'; i++) if (text[i] === '\\') i++;
    } else if (c === '{') depth++;
    else if (c === '}' && --depth === 0) return i;
  }
  return -1;
}

/** prompt/completion tokens from OpenAI's usage names or the Responses API's (input/output). */
export function usageOf(
  usage: Record<string, unknown> | undefined,
): { prompt_tokens: number; completion_tokens: number } | undefined {
  if (usage === undefined) return undefined;
  return {
    prompt_tokens: tokenCount(usage['prompt_tokens'] ?? usage['input_tokens']),
    completion_tokens: tokenCount(usage['completion_tokens'] ?? usage['output_tokens']),
  };
}
