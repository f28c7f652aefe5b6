import { execFile } from 'node:child_process';
import { createRequire } from 'node:module';

// autocannon in its own process, for small fast requests (compare --sse,
// issue 10 "GET /v1/models"): run inside the scenario's process it would share
// one event loop with the SSE client and cap the fastest proxy's figure.

const AUTOCANNON_BIN = createRequire(import.meta.url).resolve('autocannon/autocannon.js');

export interface CannonOptions {
  url: string;
  connections: number;
  durationS: number;
  /** Connect over this unix socket instead of url's host and port (autocannon --socketPath). */
  socketPath?: string;
  /** Default GET. */
  method?: string;
  /** Request body (autocannon -b), sent with every request. */
  body?: string;
  /** Request headers, name → value (autocannon -H name=value). */
  headers?: Record<string, string>;
  /** autocannon -t: seconds before a request counts as timed out and its connection is reset. Default 10. */
  timeoutS?: number;
  signal: AbortSignal;
}

export interface CannonResult {
  /** 2xx answers per second. */
  okRps: number;
  /** Requests answered, whatever their status. */
  total: number;
  /** Latency, ms. */
  p50: number;
  p99: number;
  non2xx: number;
  /** Connection errors and timeouts: autocannon's `errors` counts a timeout as one (lib/run.js onTimeout). */
  errors: number;
  /** Of `errors`, the requests that timed out. */
  timeouts: number;
}

interface AutocannonJson {
  requests: { total: number };
  duration: number;
  latency: { p50: number; p99: number };
  non2xx: number;
  errors: number;
  timeouts: number;
}

export function runCannon(options: CannonOptions): Promise<CannonResult> {
  const args = [AUTOCANNON_BIN, '--json', '-c', String(options.connections), '-d', String(options.durationS)];
  if (options.socketPath !== undefined) args.push('--socketPath', options.socketPath);
  if (options.method !== undefined) args.push('-m', options.method);
  if (options.timeoutS !== undefined) args.push('-t', String(options.timeoutS));
  if (options.body !== undefined) args.push('-b', options.body);
  for (const [name, value] of Object.entries(options.headers ?? {})) args.push('-H', `${name}=${value}`);
  args.push(options.url);
  return new Promise((resolve, reject) =>
    // Bounded by -d; the signal (Ctrl-C) kills it earlier.
    execFile(process.execPath, args, { maxBuffer: 1 << 24, signal: options.signal }, (err: Error | null, stdout) => {
      if (err !== null) return reject(err);
      const r = JSON.parse(stdout) as AutocannonJson;
      const seconds = r.duration > 0 ? r.duration : options.durationS;
      resolve({
        okRps: Math.round((r.requests.total - r.non2xx) / seconds),
        p50: r.latency.p50,
        p99: r.latency.p99,
        total: r.requests.total,
        non2xx: r.non2xx,
        // Not + r.timeouts: autocannon 8's errors already counts each timeout (lib/run.js onTimeout: errors++,
        // timeouts++), so a timed-out request was counted twice.
        errors: r.errors,
        timeouts: r.timeouts,
      });
    }),
  );
}
