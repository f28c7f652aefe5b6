import { request, Agent } from 'node:http';
import { performance } from 'node:perf_hooks';
import type { Gateway } from './gateway.js';
import { canaryOf } from './wait.js';
import type { CanaryStatus } from '../../master/canary/controller.js';

// Closed-loop load for end-to-end tests (canaries): `concurrency` loops send
// requests with fresh sticky keys until `isDone()` says so (asked every
// `checkEvery` answers) or `maxRequests` were sent. Bounded in count, loopback only.

export interface DriveOptions {
  /** The request for the i-th call. */
  path: (i: number) => string;
  /** Default GET (a model call is a POST); a function: the i-th call's. */
  method?: string | ((i: number) => string);
  /** A JSON body for every request (sent with its Content-Type); none by default. */
  body?: string;
  concurrency: number;
  maxRequests: number;
  /** Asked every `checkEvery` finished requests; true ends the load. */
  isDone: () => Promise<boolean>;
  checkEvery?: number;
  /** A request with no answer after this many ms is given up (destroyed), as an SDK's timeout does; counted as 0. */
  timeoutMs?: number;
  /** A request not over this many ms after it was sent is given up (destroyed), mid-stream too; counted as 0. */
  giveUpAfterMs?: number;
}

export interface DriveResult {
  requests: number;
  /** Answers by HTTP status; 0 for a connection that failed. */
  byStatus: Map<number, number>;
  /** Streams whose body ended with an error event. */
  streamErrors: number;
  /** Answers per x-graygate-version. */
  byVersion: Map<string, number>;
}

export async function drive(baseUrl: string, options: DriveOptions): Promise<DriveResult> {
  const agent = new Agent({ keepAlive: true, maxSockets: options.concurrency });
  const result: DriveResult = { requests: 0, byStatus: new Map(), streamErrors: 0, byVersion: new Map() };
  let sent = 0;
  let isDone = false;
  const checkEvery = options.checkEvery ?? 20;
  const one = (i: number): Promise<void> =>
    new Promise((resolve) => {
      const headers: Record<string, string> = { 'x-user-id': `load-${i}` };
      if (options.body !== undefined) headers['content-type'] = 'application/json';
      const method = typeof options.method === 'function' ? options.method(i) : (options.method ?? 'GET');
      const req = request(baseUrl + options.path(i), { agent, method, headers }, (res) => {
        let tail = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => (tail = (tail + chunk).slice(-300)));
        res.on('end', () => {
          const status = res.statusCode ?? 0;
          result.byStatus.set(status, (result.byStatus.get(status) ?? 0) + 1);
          const version = String(res.headers['x-graygate-version']);
          result.byVersion.set(version, (result.byVersion.get(version) ?? 0) + 1);
          if (tail.includes('data: {"error"')) result.streamErrors++;
          resolve();
        });
        res.on('error', () => resolve());
      });
      if (options.timeoutMs !== undefined) req.setTimeout(options.timeoutMs, () => req.destroy());
      if (options.giveUpAfterMs !== undefined) {
        const timer = setTimeout(() => req.destroy(), options.giveUpAfterMs);
        req.once('close', () => clearTimeout(timer));
      }
      req.on('error', () => {
        result.byStatus.set(0, (result.byStatus.get(0) ?? 0) + 1);
        resolve();
      });
      req.end(options.body);
    });
  const loop = async (): Promise<void> => {
    while (!isDone && sent < options.maxRequests) {
      const i = sent++;
      await one(i);
      result.requests++;
      if (result.requests % checkEvery === 0 && !isDone && (await options.isDone())) isDone = true;
    }
  };
  await Promise.all(Array.from({ length: options.concurrency }, loop));
  agent.destroy();
  return result;
}

const CANARY_ENDS = new Set(['promoted', 'rolled_back', 'aborted', 'held']);

/**
 * Load (fresh sticky keys, so the weights split it) until the canary of `name` has ended (promoted, rolled back,
 * aborted or held), or `maxRequests` were sent; the load's figures and the canary's final status.
 */
export async function runCanaryToEnd(
  gw: Gateway,
  name: string,
  options: Omit<DriveOptions, 'isDone' | 'path' | 'concurrency' | 'maxRequests'> & {
    path: string;
    concurrency?: number;
    maxRequests?: number;
  },
): Promise<{ load: DriveResult; final: CanaryStatus; seconds: number }> {
  const started = performance.now();
  let final: CanaryStatus | undefined;
  const load = await drive(gw.url, {
    ...options,
    path: () => options.path,
    concurrency: options.concurrency ?? 8,
    maxRequests: options.maxRequests ?? 6000,
    isDone: async () => {
      const c = await canaryOf(gw, name);
      if (CANARY_ENDS.has(c.state)) final = c;
      return final !== undefined;
    },
  });
  final ??= await canaryOf(gw, name);
  return { load, final, seconds: (performance.now() - started) / 1000 };
}
