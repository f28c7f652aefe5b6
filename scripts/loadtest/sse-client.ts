import { request, type Agent } from 'node:http';

// The stream client of `streams`: one POST, then reads OpenAI SSE events
// incrementally and notes when the first content token arrived. Deliberately
// small and identical for the direct and the through-graygate runs. Chat
// completions' events (`choices[0].delta.content`, then `data: [DONE]`) and the
// Responses API's (`response.output_text.delta`, ended by `response.completed`).

export interface StreamResult {
  status: number;
  /** ms from sending the request to the first event with delta content; null if none came. */
  firstTokenMs: number | null;
  /** Events with delta content. */
  tokens: number;
  /** ms from sending the request to the end of the stream. */
  totalMs: number;
  /** Saw `data: [DONE]` (a Responses stream: `response.completed` or `response.incomplete`). */
  isDone: boolean;
  /** A network error, an error event or a non-200 status. */
  error: string | null;
  /** The version graygate routed it to (its x-graygate-version header); null straight to an upstream. */
  version: string | null;
}

export interface StreamOptions {
  body: string;
  headers?: Record<string, string>;
  agent: Agent | false;
  /** Whole-stream bound, ms. */
  timeoutMs: number;
  signal?: AbortSignal;
  /** Called on every content token as it arrives (compare --sse counts events inside its window). */
  onToken?: () => void;
}

export function readStream(url: string, options: StreamOptions): Promise<StreamResult> {
  const startedAt = performance.now();
  const result: StreamResult = {
    status: 0,
    firstTokenMs: null,
    tokens: 0,
    totalMs: 0,
    isDone: false,
    error: null,
    version: null,
  };
  return new Promise((resolve) => {
    const finish = (error: string | null): void => {
      if (result.totalMs !== 0) return;
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      result.totalMs = performance.now() - startedAt;
      if (error !== null && result.error === null) result.error = error;
      resolve(result);
    };
    // A plain timer, not AbortSignal.timeout/any: a composed signal nobody else
    // references can be garbage-collected before it fires, and every stream must end.
    const onAbort = (): void => {
      req.destroy();
      finish('timed out or interrupted');
    };
    const timer = setTimeout(onAbort, options.timeoutMs);
    options.signal?.addEventListener('abort', onAbort, { once: true });
    const req = request(
      url,
      { method: 'POST', agent: options.agent, headers: { 'content-type': 'application/json', ...options.headers } },
      (res) => {
        result.status = res.statusCode ?? 0;
        const version = res.headers['x-graygate-version'];
        if (typeof version === 'string') result.version = version;
        res.setEncoding('utf8');
        let pending = '';
        res.on('data', (chunk: string) => {
          pending += chunk;
          // Events end with a blank line; keep the unfinished tail for the next chunk.
          let end: number;
          while ((end = pending.search(/\r?\n\r?\n/)) !== -1) {
            const event = pending.slice(0, end);
            pending = pending.slice(end).replace(/^\r?\n\r?\n/, '');
            onEvent(event);
          }
        });
        res.on('end', () =>
          finish(
            result.status === 200
              ? result.isDone
                ? null
                : 'stream ended without [DONE]'
              : `status ${result.status}${errorCodeOf(pending)}`,
          ),
        );
        res.on('error', (err) => finish(err.message));
        res.on('close', () => finish(res.complete ? null : 'connection closed mid-stream'));
      },
    );
    const onEvent = (event: string): void => {
      for (const line of event.split(/\r?\n/)) {
        if (!line.startsWith('data:')) continue;
        const data = line.slice(5).trim();
        if (data === '[DONE]') {
          result.isDone = true;
          continue;
        }
        try {
          const parsed = JSON.parse(data) as {
            choices?: Array<{ delta?: { content?: string } }>;
            error?: { code?: string };
            type?: string;
            delta?: string;
            code?: string;
          };
          if (parsed.error !== undefined) result.error = `error event: ${parsed.error.code ?? 'unknown'}`;
          let content = parsed.choices?.[0]?.delta?.content;
          // The Responses API's events name their type; its last is the response's end, there is no [DONE].
          if (parsed.type !== undefined) {
            if (parsed.type === 'response.output_text.delta') content = parsed.delta;
            else if (parsed.type === 'response.completed' || parsed.type === 'response.incomplete')
              result.isDone = true;
            else if (parsed.type === 'response.failed') result.error = 'error event: response.failed';
            else if (parsed.type === 'error') result.error = `error event: ${parsed.code ?? 'unknown'}`;
          }
          if (typeof content === 'string' && content !== '') {
            result.tokens++;
            options.onToken?.();
            if (result.firstTokenMs === null) result.firstTokenMs = performance.now() - startedAt;
          }
        } catch {
          result.error = 'malformed event';
        }
      }
    };
    req.on('error', (err) => finish(err.message));
    req.end(options.body);
  });
}

/** ` (code)` from an OpenAI-shaped error body, so failures say which refusal they were. */
function errorCodeOf(body: string): string {
  try {
    const code = (JSON.parse(body) as { error?: { code?: unknown } }).error?.code;
    return typeof code === 'string' ? ` (${code})` : '';
  } catch {
    return '';
  }
}
