import { setMaxListeners } from 'node:events';
import { Agent } from 'node:http';
import { Recorder, type Percentiles } from './histogram.js';
import { readStream } from './sse-client.js';

// A steady SSE load for `compare --sse` (issue 10): `slots` streams kept open
// at all times (a finished stream is replaced at once, on the same keep-alive
// connection), started spread over one stream's length so the run does not
// begin with a synchronized burst. After the ramp and a warm-up comes the
// measured window: `onWindowStart`/`onWindowEnd` fire at its edges (the caller
// reads CPU counters there), streams that start inside it give the first-token
// figures, and tokens that arrive inside it are the relayed events. Then no
// new stream starts and the run waits for the open ones to finish.

export interface SseLoadOptions {
  /** Full URL of the chat completions endpoint. */
  url: string;
  /** Request body (chatBody with the upstream's pace). */
  body: string;
  /** Streams open at once. */
  slots: number;
  /** Spread of the first starts, ms: usually one stream's nominal length. */
  rampMs: number;
  /** Unrecorded time after the ramp, ms. */
  warmMs: number;
  /** The measured window, ms. */
  windowMs: number;
  /** Bound on one stream, ms. */
  streamTimeoutMs: number;
  /** Also records the window's first-token latencies here (to merge rounds). */
  firstTokens?: Recorder;
  onWindowStart?: () => void;
  onWindowEnd?: () => void;
  signal: AbortSignal;
}

export interface SseLoadResult {
  /** Streams started inside the window. */
  streams: number;
  /** Of those, the ones with an error or without `[DONE]`. */
  failed: number;
  /** Distinct error texts with their counts. */
  errors: Record<string, number>;
  /** First-token latency of the streams started inside the window, ms. */
  firstToken: Percentiles;
  /** Content tokens received inside the window. */
  windowTokens: number;
  /** Actual window length, ms (timers run late on a busy box). */
  windowMs: number;
}

export async function runSseLoad(options: SseLoadOptions): Promise<SseLoadResult> {
  options.signal.throwIfAborted();
  setMaxListeners(0, options.signal); // every open stream listens on it
  // Every slot keeps its connection between streams (maxFreeSockets defaults to 256, below 300 slots).
  const agent = new Agent({ keepAlive: true, maxSockets: options.slots, maxFreeSockets: options.slots });
  const first = new Recorder();
  const errors: Record<string, number> = {};
  let streams = 0;
  let failed = 0;
  let windowTokens = 0;
  let phase: 'before' | 'window' | 'after' = 'before';
  let windowStartedAt = 0;
  let windowMs = 0;
  const onToken = (): void => {
    if (phase === 'window') windowTokens++;
  };

  const slot = async (delayMs: number): Promise<void> => {
    await new Promise((resolve) => setTimeout(resolve, delayMs));
    while (phase !== 'after' && !options.signal.aborted) {
      const isRecorded = phase === 'window';
      const r = await readStream(options.url, {
        body: options.body,
        agent,
        timeoutMs: options.streamTimeoutMs,
        signal: options.signal,
        onToken,
      });
      if (!isRecorded) continue;
      streams++;
      if (r.firstTokenMs !== null) {
        first.record(r.firstTokenMs);
        options.firstTokens?.record(r.firstTokenMs);
      }
      const error = r.error ?? (r.isDone ? null : 'no [DONE]');
      if (error !== null) {
        failed++;
        errors[error] = (errors[error] ?? 0) + 1;
      }
    }
  };

  let endTimer: NodeJS.Timeout | undefined;
  const windowTimer = setTimeout(() => {
    phase = 'window';
    windowStartedAt = performance.now();
    options.onWindowStart?.();
    endTimer = setTimeout(() => {
      options.onWindowEnd?.();
      windowMs = performance.now() - windowStartedAt;
      phase = 'after';
    }, options.windowMs);
  }, options.rampMs + options.warmMs);
  try {
    await Promise.all(Array.from({ length: options.slots }, (_, i) => slot((i * options.rampMs) / options.slots)));
  } finally {
    clearTimeout(windowTimer);
    clearTimeout(endTimer);
    agent.destroy();
  }
  options.signal.throwIfAborted();
  return { streams, failed, errors, firstToken: first.percentiles(), windowTokens, windowMs: Math.round(windowMs) };
}
