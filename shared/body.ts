import type { IncomingMessage } from 'node:http';
import { GraygateError } from './errors.js';
import { IdleTimer, onAbort } from './abort.js';
import type { ByteBudget } from './byte-budget.js';

// The one bounded request-body reader (issue 9: master, worker and admin used
// four). Whatever arrives is held only up to `maxBytes` (413 body_too_large,
// refused from Content-Length before a byte is read), a client that goes
// silent for `idleTimeoutMs` is refused with 408 body_timeout (nginx
// client_body_timeout), and an optional process-wide budget caps the bytes of
// all bodies held at once (503 body_budget). On any refusal the reader stops
// listening and pauses the request: the caller answers with `Connection: close`
// and the rest is never read.

export interface ReadBodyOptions {
  /** Largest body accepted, bytes (limits.maxBodyBytes). */
  maxBytes: number;
  /** Longest silence while the body arrives, ms; 0 disables (limits.bodyTimeoutMs). */
  idleTimeoutMs: number;
  /** Aborted when the client goes away or the request is given up; rejects with its reason. */
  signal?: AbortSignal;
  /**
   * Bytes are reserved here as they arrive — never from a declared Content-Length,
   * or a few connections that declare large bodies and send nothing would hold the
   * whole budget (nginx and Envoy count what they received) — and stay reserved when
   * the promise resolves: the caller releases `body.length` once it is done with
   * the body. On rejection nothing stays reserved.
   */
  budget?: ByteBudget;
  /** Seconds for `Retry-After` on body_budget. Default 1. */
  retryAfterS?: number;
  /**
   * The result owns its memory — not a slice of Node's shared pool nor a view
   * into the socket's buffers — so its ArrayBuffer can move to a helper thread
   * without a copy (worker/call/preparer.ts). Default false.
   */
  ownMemory?: boolean;
}

/**
 * The declared Content-Length, or undefined for a chunked body or none. Node validated the header (digits, below
 * 2^64); one above 2^53 comes back rounded, never as "none": Node frames the body by it all the same.
 */
export function declaredLength(req: Pick<IncomingMessage, 'headers'>): number | undefined {
  const raw = req.headers['content-length'];
  if (raw === undefined) return undefined;
  const n = Number(raw);
  return Number.isFinite(n) && n >= 0 ? n : undefined;
}

/** True when the request carries a body (a Content-Length above 0 or chunked framing), whatever its method. */
export function hasBody(req: Pick<IncomingMessage, 'headers'>): boolean {
  const length = declaredLength(req);
  return (length !== undefined && length > 0) || req.headers['transfer-encoding'] !== undefined;
}

export function bodyTooLarge(bytes: number | undefined, maxBytes: number): GraygateError {
  const size = bytes === undefined ? `over ${maxBytes}` : String(bytes);
  return new GraygateError('body_too_large', `request body is too large (${size} bytes, limit ${maxBytes})`);
}

export function readBody(req: IncomingMessage, options: ReadBodyOptions): Promise<Buffer> {
  const { maxBytes, budget } = options;
  if (options.signal?.aborted === true) return Promise.reject(options.signal.reason);
  const declared = declaredLength(req);
  if (declared !== undefined && declared > maxBytes) return Promise.reject(bodyTooLarge(declared, maxBytes));
  if (declared === 0 || (declared === undefined && req.headers['transfer-encoding'] === undefined)) {
    return Promise.resolve(EMPTY);
  }
  const overBudget = (): GraygateError =>
    new GraygateError('body_budget', undefined, { retryAfterS: options.retryAfterS ?? 1 });
  let reserved = 0;

  return new Promise<Buffer>((resolve, reject) => {
    // A small declared length is filled in place: one allocation, one copy per byte. A large one is not
    // allocated before its bytes come: a silent client declaring maxBodyBytes would hold that much (V8 counts
    // it, and so does a kernel that does not overcommit) while the budget counts nothing.
    const own = options.ownMemory === true;
    const whole =
      declared === undefined || declared > PREALLOCATED_MAX_BYTES
        ? undefined
        : own
          ? Buffer.allocUnsafeSlow(declared)
          : Buffer.allocUnsafe(declared);
    const parts: Buffer[] = [];
    let bytes = 0;
    let isDone = false;
    const finish = (err: unknown): void => {
      if (isDone) return;
      isDone = true;
      idle.clear();
      disposeAbort();
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      req.off('aborted', onAborted);
      if (err === undefined) {
        resolve(whole !== undefined ? whole.subarray(0, bytes) : joined(parts, bytes, own));
        return;
      }
      req.pause();
      if (budget !== undefined && reserved > 0) budget.release(reserved);
      // eslint-disable-next-line @typescript-eslint/prefer-promise-reject-errors -- an abort reason passes unchanged
      reject(err);
    };
    const onData = (chunk: Buffer): void => {
      idle.touch();
      const next = bytes + chunk.length;
      if (next > maxBytes) return finish(bodyTooLarge(undefined, maxBytes));
      if (whole !== undefined && next > whole.length) return finish(bodyTooLarge(undefined, maxBytes));
      if (budget !== undefined) {
        if (!budget.tryReserve(chunk.length)) return finish(overBudget());
        reserved += chunk.length;
      }
      if (whole !== undefined) chunk.copy(whole, bytes);
      else parts.push(chunk);
      bytes = next;
    };
    const onEnd = (): void => finish(undefined);
    const onError = (err: Error): void => finish(err);
    const onAborted = (): void =>
      finish(new GraygateError('invalid_request', 'the client closed the connection while sending its body'));
    const idle = new IdleTimer(options.idleTimeoutMs, () =>
      finish(new GraygateError('body_timeout', `no request body bytes for ${options.idleTimeoutMs} ms`)),
    );
    const disposeAbort =
      options.signal === undefined ? () => undefined : onAbort(options.signal, (reason) => finish(reason));
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    req.on('aborted', onAborted);
  });
}

const EMPTY = Buffer.alloc(0);
/** Largest declared body allocated whole before its bytes arrive. */
const PREALLOCATED_MAX_BYTES = 64 * 1024;

/** The parts of a chunked body as one Buffer (with `own`, one that owns its memory even for a single part). */
function joined(parts: Buffer[], bytes: number, own: boolean): Buffer {
  if (!own) return parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes);
  const out = Buffer.allocUnsafeSlow(bytes);
  let offset = 0;
  for (const part of parts) offset += part.copy(out, offset);
  return out;
}
