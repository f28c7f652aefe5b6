import autocannon from 'autocannon';
import { Recorder, type Percentiles } from './histogram.js';

// One autocannon run (programmatic API), with our own per-status latency
// recorders: autocannon's histogram only holds 2xx latencies, and the backlog
// scenario is about the latency of the 503s.

export interface LoadOptions {
  url: string;
  connections: number;
  durationS: number;
  method?: string;
  headers?: Record<string, string>;
  body?: string;
  /** Connect over this unix socket instead of url's host and port. */
  socketPath?: string;
  /** autocannon's per-request timeout in s; a timed-out request's connection is reset. Default 10. */
  timeoutS?: number;
  /** Called about every second with the running totals, for TTY progress. */
  onTick?: (progress: LoadProgress) => void;
  signal?: AbortSignal;
}

export interface LoadProgress {
  elapsedS: number;
  responses: number;
  errors: number;
}

export interface SecondBucket {
  /** Second since the run started. */
  t: number;
  responses: number;
  ok: number;
  p50: number;
  p99: number;
}

export interface LoadResult {
  url: string;
  connections: number;
  durationS: number;
  /** Responses of any status. */
  responses: number;
  /** Responses per second, any status. */
  rps: number;
  /** 2xx responses per second. */
  okRps: number;
  /** All responses, ms. */
  latency: Percentiles;
  /** Per HTTP status, e.g. { "200": …, "503": … }. */
  byStatus: Record<string, Percentiles>;
  /** Connection errors and timeouts (no response at all). */
  errors: number;
  timeouts: number;
  /** Responses that were not 2xx. */
  non2xx: number;
  perSecond: SecondBucket[];
}

export function runLoad(options: LoadOptions): Promise<LoadResult> {
  if (options.signal?.aborted === true) return Promise.reject(options.signal.reason);
  const all = new Recorder();
  const byStatus = new Map<number, Recorder>();
  const seconds: Array<{ all: Recorder; ok: number }> = [];
  const startedAt = performance.now();
  let errors = 0;
  let timeouts = 0;

  return new Promise<LoadResult>((resolve, reject) => {
    const instance = autocannon(
      {
        url: options.url,
        connections: options.connections,
        duration: options.durationS,
        timeout: options.timeoutS ?? 10,
        method: options.method ?? 'GET',
        headers: options.headers ?? {},
        ...(options.body === undefined ? {} : { body: options.body }),
        ...(options.socketPath === undefined ? {} : { socketPath: options.socketPath }),
      },
      (err, result) => {
        clearInterval(ticker);
        options.signal?.removeEventListener('abort', onAbort);
        if (err !== null) return reject(err);
        const elapsedS = result.duration > 0 ? result.duration : options.durationS;
        const statuses: Record<string, Percentiles> = {};
        for (const [status, rec] of [...byStatus].sort((a, b) => a[0] - b[0]))
          statuses[String(status)] = rec.percentiles();
        const ok = [...byStatus].filter(([s]) => s >= 200 && s < 300).reduce((n, [, r]) => n + r.count, 0);
        resolve({
          url: options.url,
          connections: options.connections,
          durationS: elapsedS,
          responses: all.count,
          rps: Math.round(all.count / elapsedS),
          okRps: Math.round(ok / elapsedS),
          latency: all.percentiles(),
          byStatus: statuses,
          errors,
          timeouts,
          non2xx: all.count - ok,
          // Array.from, not map: a second with no answer at all is a hole in `seconds`, and map skips holes.
          perSecond: Array.from({ length: seconds.length }, (_, t) => {
            const s = seconds[t];
            const p = (s ?? { all: new Recorder(), ok: 0 }).all.percentiles();
            return { t, responses: p.count, ok: s?.ok ?? 0, p50: p.p50, p99: p.p99 };
          }),
        });
      },
    );
    instance.on('response', (_client, statusCode, _bytes, responseTimeMs) => {
      all.record(responseTimeMs);
      let rec = byStatus.get(statusCode);
      if (rec === undefined) byStatus.set(statusCode, (rec = new Recorder()));
      rec.record(responseTimeMs);
      const t = Math.floor((performance.now() - startedAt) / 1000);
      const bucket = (seconds[t] ??= { all: new Recorder(), ok: 0 });
      bucket.all.record(responseTimeMs);
      if (statusCode >= 200 && statusCode < 300) bucket.ok++;
    });
    instance.on('reqError', (err) => {
      errors++;
      if (err.message === 'request timed out') timeouts++;
    });
    const ticker = setInterval(() => {
      options.onTick?.({ elapsedS: Math.round((performance.now() - startedAt) / 1000), responses: all.count, errors });
    }, 1000);
    const onAbort = (): void => instance.stop();
    options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

export type { Percentiles };
