import type { IncomingMessage } from 'node:http';
import { GraygateError } from '../../shared/errors.js';

// Request bodies are read with a byte bound (SPEC §4 maxBodyBytes, issue 3
// part 1): a declared Content-Length over it is refused before reading, and a
// chunked body stops being collected the moment it crosses the bound. The
// caller answers 413 with `Connection: close`, so the rest is never read.
// Issue 9 part 5: a body is held once. With a Content-Length (the master
// always sends one, SPEC §4a) each chunk is copied into one buffer of that
// size as it arrives and dropped; the result owns its memory, so it can move
// to the helper thread without a copy (call/preparer.ts).

export interface ReadBodyOptions {
  /** Largest body accepted, bytes (limits.maxBodyBytes). */
  maxBytes: number;
  /** Aborted when the client goes away; rejects with its reason. */
  signal: AbortSignal;
}

export function readBody(req: IncomingMessage, options: ReadBodyOptions): Promise<Buffer> {
  const { maxBytes, signal } = options;
  if (signal.aborted) return Promise.reject(signal.reason);
  const declared = Number(req.headers['content-length']);
  const hasLength = req.headers['content-length'] !== undefined && Number.isSafeInteger(declared) && declared >= 0;
  if (hasLength && declared > maxBytes) {
    return Promise.reject(new GraygateError('body_too_large', `request body is too large (${declared} bytes, limit ${maxBytes})`));
  }
  return new Promise((resolve, reject) => {
    // node:http ends the body at Content-Length and fails a shorter one, so `whole` is filled exactly.
    const whole = hasLength ? Buffer.allocUnsafeSlow(declared) : undefined;
    const parts: Buffer[] = [];
    let bytes = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer): void => {
      if (bytes + chunk.length > (whole?.length ?? maxBytes)) {
        cleanup();
        req.pause();
        reject(new GraygateError('body_too_large', `request body is too large (over ${maxBytes} bytes)`));
        return;
      }
      if (whole !== undefined) chunk.copy(whole, bytes);
      else parts.push(chunk);
      bytes += chunk.length;
    };
    const onEnd = (): void => {
      cleanup();
      resolve(whole ?? joinOwned(parts, bytes));
    };
    const onError = (err: Error): void => {
      cleanup();
      reject(err);
    };
    const onAbort = (): void => {
      cleanup();
      reject(signal.reason);
    };
    req.on('data', onData);
    req.on('end', onEnd);
    req.on('error', onError);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** The parts in one Buffer that owns its memory (a single part is a view into the socket's buffers). */
function joinOwned(parts: Buffer[], bytes: number): Buffer {
  const out = Buffer.allocUnsafeSlow(bytes);
  let offset = 0;
  for (const part of parts) offset += part.copy(out, offset);
  return out;
}
