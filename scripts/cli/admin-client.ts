import type { IncomingMessage, RequestOptions } from 'node:http';
import { request as httpRequest } from '../../shared/node-http.js';
import { printable } from './format.js';

// The CLI's view of the admin API (SPEC §6–§7): one request, one typed outcome.

/** Where the admin URL came from (admin-address.ts). */
export type AdminUrlSource = '--admin' | 'GRAYGATE_ADMIN_URL' | 'GRAYGATE_ADMIN_PORT' | 'default';

export interface AdminClientOptions {
  /** Origin of the admin port, e.g. http://127.0.0.1:9000 (see admin-address.ts). */
  adminUrl: string;
  /** Bearer token (GRAYGATE_ADMIN_TOKEN); undefined or empty: no Authorization header. */
  token: string | undefined;
  /** Where `adminUrl` came from; named when it is unreachable. Default: not named. */
  source?: AdminUrlSource;
}

export interface AdminRequest {
  method: 'GET' | 'PUT' | 'POST' | 'DELETE';
  /** Absolute path on the admin port, e.g. `/admin/status`. */
  path: string;
  /** Sent as JSON. Default: no body. */
  body?: unknown;
  /** Ends the call; it then rejects with `signal.reason`, never with a CliError. */
  signal?: AbortSignal;
  /**
   * No answer within this many ms is reported like an unreachable admin
   * (69). Default: no limit (a deploy takes as long as it takes).
   */
  timeoutMs?: number;
}

export class CliError extends Error {
  readonly exitCode: number;
  /** HTTP status when the admin API answered with an error; undefined when it never answered. */
  readonly status: number | undefined;
  constructor(message: string, exitCode: number, status?: number) {
    super(message);
    this.exitCode = exitCode;
    this.status = status;
  }
}

// sysexits.h: EX_USAGE 64, EX_UNAVAILABLE 69. 141 = 128 + SIGPIPE, what a
// shell reports for a writer whose reader went away (`yes | head`).
/** 124 as timeout(1) says it: `canary status --wait --timeout` passed with the canary still running or paused. */
export const EXIT = {
  apiError: 1,
  notPromoted: 3,
  usage: 64,
  unreachable: 69,
  timedOut: 124,
  brokenPipe: 141,
} as const;

/** The body of an admin call as text; rejects with a CliError on an error answer or no answer. */
export async function requestAdmin(options: AdminClientOptions, request: AdminRequest): Promise<string> {
  const headers: Record<string, string> = { accept: 'application/json' };
  if (options.token !== undefined && options.token !== '') headers['authorization'] = `Bearer ${options.token}`;
  // SPEC §6: state-changing admin calls must be JSON (no cross-site "simple" request is), body or not.
  if (request.method !== 'GET') headers['content-type'] = 'application/json';
  const timeout = request.timeoutMs === undefined ? undefined : AbortSignal.timeout(request.timeoutMs);
  const signals = [request.signal, timeout].filter((s): s is AbortSignal => s !== undefined);
  const signal = signals.length > 0 ? AbortSignal.any(signals) : undefined;
  const body = request.body === undefined ? undefined : JSON.stringify(request.body);
  let status: number;
  let text: string;
  let isProxied: boolean;
  try {
    ({ status, text, isProxied } = await send(
      new URL(request.path, options.adminUrl),
      { method: request.method, headers, ...(signal ? { signal } : {}) },
      body,
    ));
  } catch (err) {
    if (request.signal?.aborted === true) throw request.signal.reason;
    if (err instanceof CliError) throw err;
    const cause = timeout?.aborted === true ? `no answer within ${request.timeoutMs} ms` : describeRequestError(err);
    throw new CliError(
      `admin API unreachable at ${options.adminUrl} (${cause}); is graygate running?${whereFrom(options.source)}`,
      EXIT.unreachable,
      undefined,
    );
  }
  if (status >= 200 && status < 300) return text;
  let error: { code?: string; message?: string } | undefined;
  try {
    error = (JSON.parse(text) as { error?: { code?: string; message?: string } }).error;
  } catch {
    // not the gateway's JSON error (a proxy's page?): show the text
  }
  // One line (SPEC §7): the problems a message lists on lines of their own joined by `; `, after its colon by a space.
  const message =
    error?.message?.replace(/:\n/g, ': ').split('\n').join('; ') ?? text.trim().split('\n').join(' ').slice(0, 200);
  // Not graygate's error shape (an operator probe: another server's HTML 404 was printed as the error's message).
  if (error === undefined || typeof error.code !== 'string')
    throw new CliError(
      `${status} from ${options.adminUrl}, which does not answer as a graygate admin API (${JSON.stringify(message.slice(0, 80))}); is that the admin port?${whereFrom(options.source)}`,
      EXIT.apiError,
      status,
    );
  let hint = '';
  // graygate's main port answers /admin/* with a version's 404, marked `x-graygate-version` as every answer it proxies
  // (SPEC §3): a port mixed up. The admin API's own 404s (a version with no canary) carry no such header: no hint.
  if (error.code === 'not_found' && request.path.startsWith('/admin/') && isProxied)
    hint = '; hint: is that the main port? the admin API listens on admin.port (default 127.0.0.1:9000)';
  if (error.code === 'forbidden') {
    // Loaded only here: shared/config.js brings the config schema, too heavy for every CLI start.
    const { isLoopbackHost } = await import('../../shared/config.js');
    hint = `; hint: ${forbiddenHint({ ...options, isLoopback: isLoopbackHost(new URL(options.adminUrl).hostname) })}`;
  }
  throw new CliError(`${status} ${printable(error.code)}: ${printable(message)}${hint}`, EXIT.apiError, status);
}

/** An admin call's JSON answer. */
export async function callAdmin<T>(options: AdminClientOptions, request: AdminRequest): Promise<T> {
  const text = await requestAdmin(options, request);
  try {
    return JSON.parse(text) as T;
  } catch {
    throw new CliError(
      `${request.method} ${request.path} at ${options.adminUrl} answered something that is not JSON: ${JSON.stringify(text.slice(0, 80))}`,
      EXIT.apiError,
    );
  }
}

/**
 * What to do about a 403 `forbidden` (SPEC §6, the admin guard): without a
 * token the admin API answers only requests whose Host is loopback, and it
 * wants `Content-Type: application/json` on changes. This CLI sends the
 * Host of `--admin` and always the JSON type, so the hint follows from where
 * it was pointed (`isLoopback`: its host is a loopback name or address) and
 * whether it has a token.
 */
export function forbiddenHint(facts: { adminUrl: string; token: string | undefined; isLoopback: boolean }): string {
  const url = new URL(facts.adminUrl);
  const port = url.port !== '' ? url.port : url.protocol === 'https:' ? '443' : '80';
  const onItsMachine = `run graygate on the gateway's machine (e.g. over ssh) with --admin 127.0.0.1:${port}`;
  const hasToken = facts.token !== undefined && facts.token !== '';
  if (!facts.isLoopback) {
    return hasToken
      ? `the gateway runs without GRAYGATE_ADMIN_TOKEN, so a token does not lift this; start it with the token, or ${onItsMachine}`
      : `${onItsMachine}, or start the gateway with GRAYGATE_ADMIN_TOKEN and set the same token here`;
  }
  return 'graygate itself sends a loopback Host and Content-Type: application/json; if a proxy forwards to the admin port, make it pass both through unchanged, or start the gateway with GRAYGATE_ADMIN_TOKEN and set the same token here';
}

function whereFrom(source: AdminUrlSource | undefined): string {
  if (source === undefined) return '';
  if (source === 'default')
    return ' (the default address; --admin, GRAYGATE_ADMIN_URL or GRAYGATE_ADMIN_PORT name another)';
  return ` (address from ${source})`;
}

/**
 * The most of an answer the CLI reads, bytes: far above any status or /metrics of a real gateway (a few MiB with
 * hundreds of workers). A server that is not graygate's admin port sent an endless body and the CLI held it all until
 * node ran out of heap (an operator probe: a crash with a V8 stack, after seconds of a growing process).
 */
const MAX_ANSWER_BYTES = 64 * 1024 * 1024;

// node:http rather than fetch: fetch refuses the Fetch standard's "bad ports" (6000, 6665–6669,
// 10080…), and an admin port moved to one of them must still be reachable; it also starts faster.
async function send(
  url: URL,
  options: RequestOptions,
  body: string | undefined,
): Promise<{ status: number; text: string; isProxied: boolean }> {
  const request = url.protocol === 'https:' ? (await import('node:https')).request : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, options, (res: IncomingMessage) => {
      const chunks: Buffer[] = [];
      let bytes = 0;
      res.on('data', (chunk: Buffer) => {
        bytes += chunk.length;
        if (bytes <= MAX_ANSWER_BYTES) return void chunks.push(chunk);
        req.destroy();
        reject(
          new CliError(
            `${url.origin} answered ${url.pathname} with more than ${MAX_ANSWER_BYTES / 1024 / 1024} MiB; is that the admin port?`,
            EXIT.apiError,
            res.statusCode,
          ),
        );
      });
      const isProxied = res.headers['x-graygate-version'] !== undefined;
      res.once('end', () =>
        resolve({ status: res.statusCode ?? 0, text: Buffer.concat(chunks).toString('utf8'), isProxied }),
      );
      res.once('error', reject);
    });
    req.once('error', reject);
    req.end(body);
  });
}

/** A system error (ECONNREFUSED, ENOTFOUND, ECONNRESET…) by its code, anything else by its message. */
function describeRequestError(err: unknown): string {
  const { code, message } = err as { code?: unknown; message?: unknown };
  if (typeof code === 'string' && /^E[A-Z]+$/.test(code)) return code;
  return typeof message === 'string' && message !== '' ? message : String(err);
}
