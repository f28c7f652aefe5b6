// The slice of autocannon 8's programmatic API the scenarios use (the package
// ships no types). https://github.com/mcollina/autocannon#api
declare module 'autocannon' {
  import type { EventEmitter } from 'node:events';

  interface AutocannonOptions {
    url: string;
    connections?: number;
    /** Seconds. */
    duration?: number;
    /** Seconds before a request counts as timed out and its connection is reset. Default 10. */
    timeout?: number;
    method?: string;
    headers?: Record<string, string>;
    body?: string;
    pipelining?: number;
    /** Count of requests after which to stop (instead of duration). */
    amount?: number;
    /** Connect over this unix socket; url then only supplies the path. */
    socketPath?: string;
  }

  interface AutocannonResult {
    /** sent: requests written, answered or not (autocannon 8's requests.sent). */
    requests: { total: number; average: number; sent: number };
    errors: number;
    timeouts: number;
    non2xx: number;
    duration: number;
    statusCodeStats: Record<string, { count: number }>;
  }

  interface Instance extends EventEmitter {
    stop(): void;
    on(
      event: 'response',
      listener: (client: unknown, statusCode: number, resBytes: number, responseTimeMs: number) => void,
    ): this;
    on(event: 'reqError', listener: (err: Error) => void): this;
    on(event: 'tick', listener: (counts: { counter: number; bytes: number }) => void): this;
    on(event: string, listener: (...args: unknown[]) => void): this;
  }

  function autocannon(
    options: AutocannonOptions,
    callback: (err: Error | null, result: AutocannonResult) => void,
  ): Instance;
  export default autocannon;
}
