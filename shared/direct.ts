import type { IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http';
import { isUtf8 } from 'node:buffer';

// limits.directStreams (issue 10, docs/ONE-HOP.md): what master and worker say
// to each other about a direct answer. The master offers the client's
// connection in a request header; a worker that takes it answers the master
// with DIRECT_HEADER: 1 and a body of control bytes instead of the answer:
//   F      the first content event went to the client (the canary's first token)
//   .      still alive (every heartbeatMs, so the master's timer holds)
//   T      the client took nothing more for sendTimeoutMs while the answer waited on it: the master closes it
//   C      the client's connection failed under the worker's writes (it left): not the worker's failure
//   E      (at the end) the stream ended with an error event
//   ~U;    (at the end, before E) a stream's mean time between content events after the first, U µs (the canary's
//          time per token; TIME_PER_TOKEN_TRAILER on a relayed answer)
//   =N     (last) done: N bytes written to the client
//   L      (a call, before its status) given up: its write lease ran out (below); the master answers it (504)
// The master strips the header from what clients send (gateway.ts NOT_FORWARDED).
//
// Once a worker holds a connection, the master passes the connection's next
// requests to it as IPC `call` messages instead of HTTP requests (no request,
// response or parser in either process), and every answer to them, streamed or
// not, goes straight to the client. The worker reports the same control bytes
// in `call-report` messages, with the status when it goes out.
//
// The write lease. Before an answer's status the master may answer the
// request itself (its 504 worker_timeout), on the connection the worker also
// writes to: if both did at once, the client read one answer inside the other
// (a probe: a worker resumed from SIGSTOP within ms of the master's timer,
// 2–7 % of tries). So the offer carries `writeBy`, a time on the machine's
// monotonic clock (monotonicMs) after which the worker begins no answer on the
// connection, and the master answers one itself only leaseGuardMs or more
// after the last `writeBy` it gave (its timer is workerHeadersTimeoutMs, the
// lease that less the guard). An offered answer past its lease goes through
// the master instead; a call past it gives up (`L`) unless the master renewed
// the lease on a sign of life (IPC `call-lease`, to workers whose `ready` says
// `takesLeases`). Left: a worker stopped for more than the guard between its
// check and its first write (a few µs of code).

export const DIRECT_HEADER = 'x-graygate-direct';

export const DIRECT_FIRST_CONTENT = 'F';
export const DIRECT_ALIVE = '.';
export const DIRECT_SEND_TIMEOUT = 'T';
export const DIRECT_CLIENT_GONE = 'C';
export const DIRECT_FAILED = 'E';
export const DIRECT_DONE = '=';
export const DIRECT_TIME_PER_TOKEN = '~';
export const DIRECT_LATE = 'L';

/**
 * The machine's monotonic clock, ms: process.hrtime is CLOCK_MONOTONIC on Linux (mach_absolute_time on macOS), one
 * clock for every process, where performance.now() counts from each process's own start. For write leases only.
 */
export function monotonicMs(): number {
  return Number(process.hrtime.bigint()) / 1e6;
}

/**
 * The write lease's guard (above), ms: a quarter of the master's wait, at most 1 s, at least 2 (node's timers round
 * to the ms and can fire up to one early against the monotonic clock).
 */
export function leaseGuardMs(headersMs: number): number {
  return Math.max(2, Math.min(1000, Math.floor(headersMs / 4)));
}

/**
 * The trailer of a relayed stream's last chunk (worker → master only; the master reads it and relays no trailer): the
 * stream's mean ms between content events after the first, for the canary (SPEC §11), as the worker timed its writes.
 */
export const TIME_PER_TOKEN_TRAILER = 'x-graygate-time-per-token-ms';

/**
 * The trailer (worker → master only, as TIME_PER_TOKEN_TRAILER) of a relayed stream the worker knows failed: it relayed
 * an upstream's own final `response.failed` or `error` event, which the master cannot always tell from its bytes (an
 * event with no name line, its `type` not first). DIRECT_FAILED on a direct answer.
 */
export const STREAM_FAILED_TRAILER = 'x-graygate-stream-failed';

/** Longest time per token the master takes from a worker, ms (the canary's sketches resolve up to 30 min). */
const MAX_TIME_PER_TOKEN_MS = 1_800_000;

/** A worker's time per token (a trailer's text or a control mark's µs ÷ 1000), or NaN when it is none. */
export function readTimePerTokenMs(value: number): number {
  return value >= 0 && value <= MAX_TIME_PER_TOKEN_MS ? value : NaN;
}

export interface DirectOffer {
  /** The connection, as the master sent its descriptor (IPC `conn`). */
  conn: number;
  /** The master's keep-alive timeout in whole seconds, for the `Keep-Alive: timeout=N` of its answers; 0: none. */
  keepAliveTimeoutS: number;
  /** limits.sendTimeoutMs: the longest the client may read nothing of an answer it is behind on. */
  sendTimeoutMs: number;
  /** Control byte `.` at least this often, ms: a third of the master's shorter timer on the answer (gateway.ts). */
  heartbeatMs: number;
  /** The master's own response headers (x-graygate-version, x-request-id, CORS, sticky cookie). */
  headers: OutgoingHttpHeaders;
  /** The write lease (above): no answer begins on the connection from this monotonicMs() on. Absent: no lease. */
  writeBy?: number;
}

/** The offer from its header; undefined when absent or malformed (the answer then goes through the master). */
export function readDirectOffer(value: string | string[] | undefined): DirectOffer | undefined {
  if (typeof value !== 'string') return undefined;
  let raw: unknown;
  try {
    raw = JSON.parse(value);
  } catch {
    return undefined;
  }
  if (typeof raw !== 'object' || raw === null) return undefined;
  const o = raw as Record<string, unknown>;
  const isCount = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
  if (!isCount(o['conn']) || !isCount(o['sendTimeoutMs']) || !isCount(o['heartbeatMs'])) return undefined;
  if (!isCount(o['keepAliveTimeoutS'])) return undefined;
  if (typeof o['headers'] !== 'object' || o['headers'] === null) return undefined;
  return {
    conn: o['conn'],
    keepAliveTimeoutS: o['keepAliveTimeoutS'],
    sendTimeoutMs: o['sendTimeoutMs'],
    heartbeatMs: o['heartbeatMs'],
    headers: o['headers'] as OutgoingHttpHeaders,
    ...(typeof o['writeBy'] === 'number' && Number.isFinite(o['writeBy']) ? { writeBy: o['writeBy'] } : {}),
  };
}

/** IPC `call` (master → worker): one request on connection `offer.conn`, whole. */
export interface DirectCallMessage {
  type: 'call';
  id: number;
  /** What the master's HTTP request would have offered: the connection, timers, the master's own headers. */
  offer: DirectOffer;
  method: string;
  /** The path forwarded (routing parameters removed), as the master's HTTP request would carry it. */
  url: string;
  /** The master's forwarded headers: the client's without hop-by-hop ones, with its own framing and ids. */
  headers: IncomingHttpHeaders;
  /** The body: UTF-8 text, or base64 when it is not valid UTF-8 (`binary`). */
  body: string;
  binary: boolean;
}

/** IPC `call-report` (worker → master): control bytes of a direct call, as above. */
export interface DirectCallReport {
  type: 'call-report';
  id: number;
  marks: string;
  /**
   * The worker read the call (its first report, with no marks). Written to the channel before anything of the call
   * runs: a call the master never heard this of when the worker process ends never ran there (a worker whose `ready`
   * said `acksCalls`; master/direct-calls.ts).
   */
  isTaken?: boolean;
  /** The status went out now (with `isStream` when it is an event stream). */
  status?: number;
  isStream?: boolean;
  /** The last report of this call: `marks` ends with `=N`, or it was given up (`T`, `C`). */
  isEnd?: boolean;
  /** With a last `=N`: the answer said `Connection: close` (a draining worker's 503, a 413): the master closes. */
  isLast?: boolean;
}

/** A request body as IPC JSON carries it: as text when it is UTF-8 (almost always: JSON), else base64. */
export function encodeBody(body: Buffer): { body: string; binary: boolean } {
  if (body.length === 0) return { body: '', binary: false };
  return isUtf8(body)
    ? { body: body.toString('utf8'), binary: false }
    : { body: body.toString('base64'), binary: true };
}

export function decodeBody(msg: Pick<DirectCallMessage, 'body' | 'binary'>): Buffer {
  return Buffer.from(msg.body, msg.binary ? 'base64' : 'utf8');
}
