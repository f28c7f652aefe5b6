import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { METRIC, TOKEN_KINDS, UPSTREAM_ERROR_KINDS, type UpstreamErrorKind } from '../shared/metric-names.js';
import { collectProcessMetrics } from '../shared/process-metrics.js';
import type { ErrorCode } from '../shared/errors.js';

// A worker's own series (SPEC §9, issue 5 part 2), answered to the master's
// metrics IPC request as prom-client JSON. Every hook runs once per request or
// per error, never per chunk: the streaming path stays as it was.

/** Time to first token, seconds: 10 ms to 300 s (issue 5 part 3; a cold model's first byte may take minutes). */
export const FIRST_TOKEN_BUCKETS_S = [
  0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1, 1.5, 2, 3, 5, 7.5, 10, 15, 20, 30, 45, 60, 120, 300,
];

export interface WorkerMetricsOptions {
  /** The worker's version name: the `version` label of every series. */
  version: string;
  /** Bytes the answers held whole hold right now (limits.maxBufferedAnswerBytes), read at scrape time. */
  bufferedAnswerBytes?: () => number;
}

export interface WorkerMetrics {
  readonly registry: Registry;
  /** A `stream: true` request started streaming to its client; pair with streamEnded. */
  streamStarted(): void;
  streamEnded(): void;
  /** Request arrival → first content chunk written, seconds. */
  observeFirstToken(seconds: number): void;
  /** An upstream call failed (not counted: the client leaving). */
  onUpstreamError(kind: UpstreamErrorKind): void;
  /** The upstream's usage of one answer. */
  addTokens(usage: { prompt_tokens: number; completion_tokens: number }): void;
  /** This process's metrics as `getMetricsAsJSON()` data, for the IPC answer. */
  collect(): Promise<unknown[]>;
  /**
   * Only its graygate_* counters and histograms (first tokens, upstream errors, tokens): every health probe's answer
   * carries them, so a worker that crashes loses at most what it counted since its last answered probe (not all since
   * the last scrape). No default collector runs and nothing waits on I/O: the answer goes out in the probe's turn.
   */
  collectCounters(): Promise<unknown[]>;
}

/** Which upstream error kind a catalogued error code is; undefined for codes that are not the upstream's doing. */
export function upstreamErrorKind(code: string): UpstreamErrorKind | undefined {
  switch (code as ErrorCode) {
    case 'upstream_unreachable':
      return 'connect';
    case 'upstream_timeout':
      return 'timeout';
    case 'upstream_reset':
      return 'reset';
    case 'upstream_status':
      return 'status';
    case 'upstream_protocol_error':
      return 'protocol';
    default:
      return undefined;
  }
}

export function createWorkerMetrics(options: WorkerMetricsOptions): WorkerMetrics {
  const { version } = options;
  const registry = new Registry();
  collectProcessMetrics(registry);
  const firstTokens = new Histogram({
    name: METRIC.streamFirstTokenSeconds,
    help: 'Time from request arrival at the master (its queue included) to the first content chunk sent, streaming requests, by version',
    labelNames: ['version'] as const,
    buckets: FIRST_TOKEN_BUCKETS_S,
    registers: [registry],
  });
  const firstToken = firstTokens.labels({ version });
  const active = new Gauge({
    name: METRIC.streamsActive,
    help: 'Streaming (stream: true) requests in progress, by version',
    labelNames: ['version'] as const,
    registers: [registry],
  }).labels({ version });
  active.set(0);
  const readAnswers = options.bufferedAnswerBytes;
  if (readAnswers !== undefined) {
    new Gauge({
      name: METRIC.bufferedAnswerBytes,
      help: 'Bytes of non-streamed answers the worker holds right now, to send each whole (bounded by limits.maxBufferedAnswerBytes), by version',
      labelNames: ['version'] as const,
      registers: [registry],
      collect() {
        this.set({ version }, readAnswers());
      },
    });
  }
  const errors = new Counter({
    name: METRIC.upstreamErrorsTotal,
    help: 'Failed upstream calls by version and kind (connect, timeout, reset, status, protocol)',
    labelNames: ['version', 'kind'] as const,
    registers: [registry],
  });
  const tokens = new Counter({
    name: METRIC.tokensTotal,
    help: "Tokens by version and kind (prompt, completion), as the upstream's usage reports them",
    labelNames: ['version', 'kind'] as const,
    registers: [registry],
  });
  // Every kind exists from the start at 0, so rate() and `graygate top` see a series before the first error.
  const errorsByKind = new Map(UPSTREAM_ERROR_KINDS.map((kind) => [kind, errors.labels({ version, kind })]));
  for (const child of errorsByKind.values()) child.inc(0);
  const [prompt, completion] = TOKEN_KINDS.map((kind) => tokens.labels({ version, kind }));
  prompt!.inc(0);
  completion!.inc(0);

  return {
    registry,
    streamStarted: () => active.inc(),
    streamEnded: () => active.dec(),
    observeFirstToken: (seconds) => firstToken.observe(seconds),
    onUpstreamError: (kind) => errorsByKind.get(kind)?.inc(),
    addTokens(usage) {
      // Counters only go up: a malformed usage (negative, NaN) from the upstream is not counted.
      if (Number.isFinite(usage.prompt_tokens) && usage.prompt_tokens > 0) prompt!.inc(usage.prompt_tokens);
      if (Number.isFinite(usage.completion_tokens) && usage.completion_tokens > 0)
        completion!.inc(usage.completion_tokens);
    },
    collect: () => registry.getMetricsAsJSON(),
    // Every cumulative graygate_* family of this process (retired-totals.ts isCumulative): a new one goes here too.
    collectCounters: () => Promise.all([firstTokens.get(), errors.get(), tokens.get()]),
  };
}
