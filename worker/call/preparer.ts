import { Worker } from 'node:worker_threads';
import { GraygateError } from '../../shared/errors.js';
import type { BuildOptions, UpstreamAdapter } from '../upstream/format-adapter.js';
import type { EndpointKind } from '../types.js';
import {
  fromTransferred,
  prepareCall,
  toJobError,
  toTransferable,
  type PreparedCall,
  type PrepareJob,
  type PrepareReply,
  type PrepareThreadData,
} from './prepare.js';

// Issue 9 part 5: parsing a body costs time in proportion to its size (on a
// 2-core machine a legitimate 9.5 MB prompt took ~130 ms to decode, parse and
// re-serialise), and every ms of it stalls every stream of the worker. So a
// body over `inlineMaxBytes` is prepared on one helper thread, started on the
// first such body, and the event loop only moves memory to it and back. The
// limits of request/chat-request.ts bound what one body costs the thread. An
// idle thread stops, which gives its heap (garbage of the last bodies
// included) back at once: an idle worker holds no thread.

export interface RequestPreparerOptions {
  /** The version's converter: builds the upstream request. */
  adapter: UpstreamAdapter;
  build: BuildOptions;
  /**
   * Largest body prepared on the event loop, bytes. Default 32 KiB: whatever
   * its shape, such a body costs the loop a few ms (see CHAT_REQUEST_LIMITS).
   */
  inlineMaxBytes?: number;
  /**
   * The thread stops after this long without a job, ms. Default 10 000; the next large body starts it again (~0.1 s).
   */
  threadIdleMs?: number;
  /**
   * Module the helper thread runs. Default prepare-thread.js beside
   * this file; tests of the TypeScript sources pass the built one.
   */
  threadUrl?: URL;
}

const DEFAULT_INLINE_MAX_BYTES = 32 * 1024;
const DEFAULT_THREAD_IDLE_MS = 10_000;

interface Waiter {
  resolve: (call: PreparedCall) => void;
  reject: (err: unknown) => void;
}

export class RequestPreparer {
  readonly #options: RequestPreparerOptions;
  readonly #inlineMaxBytes: number;
  readonly #waiters = new Map<number, Waiter>();
  #thread: Worker | undefined;
  #nextId = 1;
  #isClosed = false;
  #onIdle: (() => void) | undefined;
  #idleTimer: NodeJS.Timeout | undefined;

  constructor(options: RequestPreparerOptions) {
    this.#options = options;
    this.#inlineMaxBytes = options.inlineMaxBytes ?? DEFAULT_INLINE_MAX_BYTES;
  }

  /** Whether the helper thread is running (it starts with the first large body). */
  get hasThread(): boolean {
    return this.#thread !== undefined;
  }

  /**
   * Parses, validates and converts a request body of endpoint `kind` (default chat); rejects with
   * invalid_request, or with the signal's reason once it aborts. A large
   * body's memory moves to the thread: the caller must not use it afterwards.
   */
  prepare(body: Buffer, options: { signal: AbortSignal; kind?: EndpointKind }): Promise<PreparedCall> {
    const { signal } = options;
    const kind = options.kind ?? 'chat';
    if (signal.aborted) return Promise.reject(signal.reason);
    if (body.length <= this.#inlineMaxBytes) {
      try {
        return Promise.resolve(prepareCall(kind, body, this.#options.adapter, this.#options.build));
      } catch (err) {
        return Promise.reject(err);
      }
    }
    if (this.#isClosed) return Promise.reject(new GraygateError('shutting_down'));
    const thread = (this.#thread ??= this.#startThread());
    clearTimeout(this.#idleTimer);
    const id = this.#nextId++;
    return new Promise<PreparedCall>((resolve, reject) => {
      // The thread cannot be interrupted mid-job: a client that left just stops waiting, and the reply is dropped.
      const onAbort = (): void => this.#settle(id, () => reject(signal.reason));
      signal.addEventListener('abort', onAbort, { once: true });
      this.#waiters.set(id, {
        resolve: (call) => {
          signal.removeEventListener('abort', onAbort);
          resolve(call);
        },
        reject: (err) => {
          signal.removeEventListener('abort', onAbort);
          reject(err);
        },
      });
      const { bytes, transfer } = toTransferable(body);
      thread.postMessage({ id, kind, body: bytes } satisfies PrepareJob, transfer);
    });
  }

  /** Takes no more large bodies; the thread stops once the jobs it has are answered. Idempotent. */
  async close(): Promise<void> {
    this.#isClosed = true;
    if (this.#waiters.size > 0) await new Promise<void>((resolve) => (this.#onIdle = resolve));
    await this.#stopThread();
  }

  /** Stops the thread now; waiting callers get shutting_down. Idempotent. */
  async destroy(): Promise<void> {
    this.#isClosed = true;
    this.#failAll(new GraygateError('shutting_down'));
    await this.#stopThread();
  }

  #startThread(): Worker {
    const data: PrepareThreadData = { format: this.#options.adapter.format, build: this.#options.build };
    // No execArgv: the thread runs built JavaScript and needs none of the process's flags (a test runner's
    // TypeScript loader, inherited, made each thread start take 1.5 s).
    const thread = new Worker(this.#options.threadUrl ?? new URL('./prepare-thread.js', import.meta.url), {
      workerData: data,
      execArgv: [],
    });
    // The thread never keeps the process alive: a worker exits when its server closes.
    thread.unref();
    thread.on('message', (reply: PrepareReply) => {
      this.#settle(reply.id, (waiter) => {
        if (!reply.ok) return waiter.reject(toJobError(reply));
        const request = {
          path: reply.path,
          headers: reply.headers,
          body: fromTransferred(reply.body),
          model: reply.model,
        };
        waiter.resolve({
          request,
          isStream: reply.isStream,
          includeUsage: reply.includeUsage,
          encoding: reply.encoding,
          choices: reply.choices,
        });
      });
    });
    // A crashed thread fails its jobs; the next large body starts a new one.
    thread.on('error', (err) =>
      this.#onThreadGone(
        thread,
        new GraygateError('internal_error', 'the request preparing thread failed', { cause: err }),
      ),
    );
    thread.on('exit', (code) =>
      this.#onThreadGone(
        thread,
        new GraygateError('internal_error', `the request preparing thread exited with code ${code}`),
      ),
    );
    return thread;
  }

  #settle(id: number, act: (waiter: Waiter) => void): void {
    const waiter = this.#waiters.get(id);
    if (waiter === undefined) return;
    this.#waiters.delete(id);
    act(waiter);
    if (this.#waiters.size > 0) return;
    this.#onIdle?.();
    if (this.#thread !== undefined && !this.#isClosed) {
      this.#idleTimer = setTimeout(
        () => void this.#stopThread(),
        this.#options.threadIdleMs ?? DEFAULT_THREAD_IDLE_MS,
      ).unref();
    }
  }

  #onThreadGone(thread: Worker, err: GraygateError): void {
    if (this.#thread !== thread) return;
    this.#thread = undefined;
    this.#failAll(err);
  }

  #failAll(err: unknown): void {
    for (const id of [...this.#waiters.keys()]) this.#settle(id, (waiter) => waiter.reject(err));
  }

  async #stopThread(): Promise<void> {
    clearTimeout(this.#idleTimer);
    const thread = this.#thread;
    this.#thread = undefined;
    if (thread !== undefined) await thread.terminate();
  }
}
