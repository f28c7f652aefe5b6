import { request, type Agent } from 'node:http';

// Single requests outside the load: the recovery probe after a flood, and
// readiness checks. A fresh connection each time (agent: false), as a new
// client would open, unless an agent is given.

export interface ProbeResult {
  status: number;
  ms: number;
  /** error.code of an OpenAI-shaped error body (e.g. queue_full vs queue_timeout), if any. */
  code?: string;
}

export interface ProbeOptions {
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** The connection to use; default a fresh one (false). */
  agent?: Agent | false;
  /** Give up after this long, in ms (the request is destroyed). */
  timeoutMs: number;
  signal?: AbortSignal;
}

/** Resolves with the status (0 for a network error or a timeout) and the time to the end of the body. Never rejects. */
export function probe(url: string, options: ProbeOptions): Promise<ProbeResult> {
  const startedAt = performance.now();
  return new Promise((resolve) => {
    // A plain timer, not AbortSignal.timeout/any: a composed signal nobody else
    // references can be garbage-collected before it fires, and this wait must end.
    let body = '';
    const settle = (status: number): void => {
      clearTimeout(timer);
      options.signal?.removeEventListener('abort', onAbort);
      const code = status >= 400 ? /"code":"([a-z_]+)"/.exec(body)?.[1] : undefined;
      resolve({ status, ms: performance.now() - startedAt, ...(code === undefined ? {} : { code }) });
    };
    const req = request(
      url,
      { method: options.method ?? 'GET', headers: options.headers ?? {}, agent: options.agent ?? false },
      (res) => {
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          if (body.length < 4096) body += chunk;
        });
        res.on('end', () => settle(res.statusCode ?? 0));
        res.on('close', () => settle(res.complete ? (res.statusCode ?? 0) : 0));
      },
    );
    const onAbort = (): void => {
      req.destroy();
      settle(0);
    };
    const timer = setTimeout(onAbort, Math.max(1, Math.ceil(options.timeoutMs)));
    options.signal?.addEventListener('abort', onAbort, { once: true });
    req.on('error', () => settle(0));
    req.end(options.body);
  });
}

export interface RecoveryOptions extends Omit<ProbeOptions, 'timeoutMs'> {
  /** Stop trying after this long, in ms; the result is then `recoveredMs: null`. */
  limitMs: number;
  /** Pause between a refused attempt and the next, in ms. Default 20. */
  retryMs?: number;
}

export interface RecoveryResult {
  /** ms from the call (the moment the load stopped) to the end of the first 2xx answer; null if none within limitMs. */
  recoveredMs: number | null;
  limitMs: number;
  attempts: number;
  /** Status of each attempt that was not 2xx (0: no answer). */
  refusals: number[];
}

/**
 * "How long after the load stops is a fresh request answered" (issue 2): one
 * request at a time until one gets a 2xx, each bounded by the time left.
 */
export async function measureRecovery(url: string, options: RecoveryOptions): Promise<RecoveryResult> {
  const startedAt = performance.now();
  const refusals: number[] = [];
  let attempts = 0;
  for (;;) {
    const leftMs = options.limitMs - (performance.now() - startedAt);
    if (leftMs <= 0 || options.signal?.aborted === true) break;
    attempts++;
    const result = await probe(url, { ...options, timeoutMs: leftMs });
    if (result.status >= 200 && result.status < 300) {
      return { recoveredMs: Math.round(performance.now() - startedAt), limitMs: options.limitMs, attempts, refusals };
    }
    refusals.push(result.status);
    await new Promise((r) => setTimeout(r, options.retryMs ?? 20));
  }
  return { recoveredMs: null, limitMs: options.limitMs, attempts, refusals };
}
