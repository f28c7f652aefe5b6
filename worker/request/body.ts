import type { IncomingMessage } from 'node:http';
import { GraygateError } from '../../shared/errors.js';

// Request bodies are read with a byte bound (SPEC §4 maxBodyBytes, issue 3
// part 1): a declared Content-Length over it is refused before reading, and a
// chunked body stops being collected the moment it crosses the bound. The
// caller answers 413 with `Connection: close`, so the rest is never read.

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
  if (Number.isFinite(declared) && declared > maxBytes) {
    return Promise.reject(new GraygateError('body_too_large', `request body is too large (${declared} bytes, limit ${maxBytes})`));
  }
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    let bytes = 0;
    const cleanup = (): void => {
      req.off('data', onData);
      req.off('end', onEnd);
      req.off('error', onError);
      signal.removeEventListener('abort', onAbort);
    };
    const onData = (chunk: Buffer): void => {
      bytes += chunk.length;
      if (bytes > maxBytes) {
        cleanup();
        req.pause();
        reject(new GraygateError('body_too_large', `request body is too large (over ${maxBytes} bytes)`));
        return;
      }
      parts.push(chunk);
    };
    const onEnd = (): void => {
      cleanup();
      resolve(parts.length === 1 ? parts[0]! : Buffer.concat(parts, bytes));
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
