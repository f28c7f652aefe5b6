import type { Tracked } from './processes.js';

export interface WaitForMessageOptions<T> {
  /** Picks the message we wait for; returns undefined for any other. */
  pick: (msg: unknown) => T | undefined;
  /** Give up after this long, in ms. */
  timeoutMs: number;
  signal?: AbortSignal;
}

/**
 * Resolves with the first IPC message `pick` accepts; rejects if the process exits, times out or the run is aborted.
 */
export function waitForMessage<T>(p: Tracked, options: WaitForMessageOptions<T>): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const cleanup = (): void => {
      clearTimeout(timer);
      p.child.off('message', onMessage);
      p.child.off('exit', onExit);
      options.signal?.removeEventListener('abort', onAbort);
    };
    const onMessage = (msg: unknown): void => {
      const value = options.pick(msg);
      if (value === undefined) return;
      cleanup();
      resolve(value);
    };
    const onExit = (code: number | null, signal: string | null): void => {
      cleanup();
      reject(new Error(`${p.name} exited (${signal ?? code}) before it was ready:\n${p.stderrTail()}`));
    };
    const onAbort = (): void => {
      cleanup();
      reject(options.signal?.reason);
    };
    const timer = setTimeout(() => {
      cleanup();
      reject(new Error(`${p.name} was not ready within ${options.timeoutMs} ms:\n${p.stderrTail()}`));
    }, options.timeoutMs);
    p.child.on('message', onMessage);
    p.child.once('exit', onExit);
    options.signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** `{type:'listening', url, …}`, the message graygate's master and our helper processes send. */
export function pickListening(msg: unknown): { url: string; adminUrl?: string; pid?: number } | undefined {
  if (typeof msg !== 'object' || msg === null) return undefined;
  const m = msg as { type?: unknown; url?: unknown };
  return m.type === 'listening' && typeof m.url === 'string' ? (msg as { url: string }) : undefined;
}
