// The one chat completion the scenarios send (SPEC §5). The mock upstream
// reads its pace from a `[mock …]` directive in the last message (SPEC §8), so
// the same body works straight to the upstream, to a worker and through graygate.

export interface ChatRequestOptions {
  /** Tokens in the answer. */
  tokens: number;
  /** Pause before each token, ms. */
  intervalMs: number;
  /** Default true: SSE, the product's main path. */
  isStream?: boolean;
}

export const CHAT_PATH = '/v1/chat/completions';

export function chatBody(options: ChatRequestOptions): string {
  return JSON.stringify({
    model: 'graygate-mock',
    stream: options.isStream ?? true,
    messages: [
      { role: 'user', content: `[mock tokens=${options.tokens} interval-ms=${options.intervalMs}] Say hello.` },
    ],
  });
}

/** The same answer asked of the Responses API (`compare --sse --workloads responses`): POST /v1/responses. */
export function responsesBody(options: ChatRequestOptions): string {
  return JSON.stringify({
    model: 'graygate-mock',
    stream: options.isStream ?? true,
    input: `[mock tokens=${options.tokens} interval-ms=${options.intervalMs}] Say hello.`,
  });
}

export const JSON_HEADERS = { 'content-type': 'application/json' };
