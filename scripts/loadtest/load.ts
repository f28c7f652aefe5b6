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
  /** Requests autocannon sent (its requests.sent). */
  sent: number;
  /**
   * Sent but neither answered nor failed when the run ended: sent − responses − errors. autocannon drops them without
   * a word (a step of 1500 connections showed 264 answers, 0 errors, ~1,236 such). Each connection has one request
   * in flight at any time, so up to `connections` is an ordinary end; their age is what matters
   * (latencyWithUnfinished).
   */
  unfinished: number;
  /**
   * `latency` with each unfinished request counted at its age when the run ended, a lower bound of its latency: the
   * latency a step cannot be claimed to beat. An in-flight request's age is from its connection's last answer (the
   * next request goes at once), or from the start when that connection had none; after a timeout it is an overcount.
   */
  latencyWithUnfinished: Percentiles;
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
  /** autocannon's client → when its last answer came: its next request was sent then. */
  const lastAnswerAt = new Map<unknown, number>();

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
        const endedAt = performance.now();
        const sent = result.requests.sent;
        const unfinished = Math.max(0, sent - all.count - errors);
        const ages = [...lastAnswerAt.values()].map((at) => endedAt - at);
        for (let i = lastAnswerAt.size; i < options.connections; i++) ages.push(endedAt - startedAt);
        const withUnfinished = new Recorder();
        withUnfinished.merge(all);
        for (const age of ages.sort((a, b) => b - a).slice(0, unfinished)) withUnfinished.record(age);
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
          sent,
          unfinished,
          latencyWithUnfinished: withUnfinished.percentiles(),
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
    instance.on('response', (client, statusCode, _bytes, responseTimeMs) => {
      lastAnswerAt.set(client, performance.now());
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
