import { once } from 'node:events';
import { rmSync } from 'node:fs';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Limits } from '../shared/config.js';
import { GraygateError } from '../shared/errors.js';
import { PROTOCOL_VERSION } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';
import { WorkerHandle, type ForkFunction } from './worker-handle.js';
import { neverInherited, type ExitReport } from './worker-process.js';
import { StartLimiter } from './start-limiter.js';
import { upstreamSecretEnvs, type Build } from './version.js';

// Worker processes, and nothing else (issue 11; STYLE §21–§23): forks them,
// watches for crashes, runs restart timers, probes health, stops them. Which
// workers a version has, and whether a crashed one is restarted, is the
// version registry's decision (version-registry.ts); the supervisor tells it
// of each unintended exit and runs what it decides.

export interface SupervisorOptions {
  log: Logger;
  /** Read at each fork: limits of the running config (ready timeout, sockets, health). */
  limits: () => Limits;
  /** Read at each fork: admin.redactEnv, the variables besides the admin token no worker inherits (neverInherited). */
  redactEnv: () => readonly string[];
  /**
   * Read at each fork: every version's `upstream.apiKeyEnv` and `upstream.proxyAuthEnv`. A worker inherits its own
   * version's secrets only: a version's entry can be any build, and the others' keys are none of its business.
   */
  keyEnvs?: () => Iterable<string>;
  /** Concurrent worker start-ups; default the machine's available parallelism (start-limiter.ts). */
  startLimiter?: StartLimiter;
  /** child_process.fork by default; injected by tests (STYLE §34). */
  fork?: ForkFunction;
  /** Level for the workers' loggers; default LOG_LEVEL, else info. */
  logLevel?: string;
  /**
   * A directory only this user can enter (mkdtemp, 0700): each worker listens on a unix socket in
   * it (issue 10: cheaper per write than TCP loopback, and no other local user can reach a worker).
   * Absent: workers listen on 127.0.0.1 ports.
   */
  socketDir?: string;
  /** Every worker's exit, intended or not, once its state is final (metrics keep its last counters). */
  onWorkerExit?: (handle: WorkerHandle) => void;
  /** Worker processes alive (forked, not yet exited) changed: how many there are now. */
  onAliveChange?: (alive: number) => void;
}

export interface SpawnOptions {
  version: string;
  instance: number;
  build: Build;
  /** An exit nobody asked for, while the master is not stopping. */
  onCrash: (handle: WorkerHandle, report: ExitReport) => void;
  /**
   * The worker was sent SIGTERM by someone else and left it to the master (WorkerSettings.takesSignals): whether the
   * master takes it over (WorkerHandleOptions.onSignal).
   */
  onSignal?: (handle: WorkerHandle) => boolean;
}

export class Supervisor {
  readonly #options: SupervisorOptions;
  readonly #log: Logger;
  readonly #startLimiter: StartLimiter;
  /** Every worker forked and not yet exited, whatever build it belongs to: stopAll ends them all. */
  readonly #alive = new Set<WorkerHandle>();
  readonly #timers = new Set<NodeJS.Timeout>();
  #healthTimer: NodeJS.Timeout | undefined;
  #isStopping = false;
  #nextSocket = 1;

  constructor(options: SupervisorOptions) {
    this.#options = options;
    this.#log = options.log;
    this.#startLimiter = options.startLimiter ?? new StartLimiter();
  }

  get isStopping(): boolean {
    return this.#isStopping;
  }

  /** Creates a worker (call start() on it); watched from fork time, so a crash while others start is seen too. */
  spawn(options: SpawnOptions): WorkerHandle {
    // stopAll stops the workers alive when it begins: one forked later would outlive the master.
    if (this.#isStopping) throw new GraygateError('shutting_down', 'the master is shutting down: no worker is started');
    const limits = this.#options.limits();
    const { version, instance, build } = options;
    const { onSignal } = options;
    const handle: WorkerHandle = new WorkerHandle({
      entry: build.entry,
      env: build.env,
      settings: {
        protocol: PROTOCOL_VERSION,
        version,
        instance,
        upstream: build.upstream,
        limits: {
          maxBodyBytes: limits.maxBodyBytes,
          shutdownTimeoutMs: limits.shutdownTimeoutMs,
          maxSocketsPerWorker: limits.maxSocketsPerWorker,
          workerHeadersTimeoutMs: limits.workerHeadersTimeoutMs,
          maxHeaderBytes: limits.maxHeaderBytes,
          maxBufferedAnswerBytes: limits.maxBufferedAnswerBytes,
        },
        logLevel: this.#options.logLevel ?? process.env['LOG_LEVEL'] ?? 'info',
        readsCallsTaken: true,
        takesSignals: true,
        ...(this.#options.socketDir === undefined
          ? {}
          : { socketPath: join(this.#options.socketDir, `w${this.#nextSocket++}.sock`) }),
      },
      readyTimeoutMs: limits.readyTimeoutMs,
      maxSockets: limits.maxSocketsPerWorker,
      maxIdleSockets: limits.maxIdleSocketsPerWorker,
      log: this.#log,
      redactEnv: [...neverInherited(this.#options.redactEnv()), ...othersKeys(this.#options.keyEnvs?.(), build)],
      startLimiter: this.#startLimiter,
      ...(this.#options.fork === undefined ? {} : { fork: this.#options.fork }),
      ...(onSignal === undefined ? {} : { onSignal: () => onSignal(handle) }),
    });
    this.#alive.add(handle);
    this.#options.onAliveChange?.(this.#alive.size);
    handle.once('exit', (report: ExitReport) => {
      this.#alive.delete(handle);
      this.#options.onAliveChange?.(this.#alive.size);
      const socketPath = handle.settings.socketPath;
      if (socketPath !== undefined) rmSync(socketPath, { force: true });
      this.#options.onWorkerExit?.(handle);
      if (!report.isIntended && !this.#isStopping) options.onCrash(handle, report);
    });
    return handle;
  }

  /** Runs `fn` after delayMs unless the master starts stopping first (restart backoff). */
  later(delayMs: number, fn: () => void): void {
    if (this.#isStopping) return;
    const timer = setTimeout(() => {
      this.#timers.delete(timer);
      if (!this.#isStopping) fn();
    }, delayMs);
    this.#timers.add(timer);
  }

  // SPEC §4a: every healthIntervalMs each ready or draining worker is probed over
  // IPC; one that misses healthMisses probes in a row is taken out of routing and
  // killed, and its exit is a crash like any other (restarted by the registry).
  // Its in-flight requests end with worker_error when its sockets close.
  startHealthProbes(): void {
    if (this.#healthTimer !== undefined) return;
    const { healthIntervalMs } = this.#options.limits();
    this.#healthTimer = setInterval(() => {
      const { healthMisses } = this.#options.limits();
      const now = performance.now();
      for (const worker of this.#alive) {
        const misses = worker.probe(now);
        if (misses >= healthMisses)
          worker.markUnhealthy(`missed ${misses} health probes in a row (every ${healthIntervalMs} ms)`);
      }
    }, healthIntervalMs);
    this.#healthTimer.unref();
  }

  /** Stops every worker: drain up to deadlineMs, then SIGTERM/SIGKILL. No restarts from here on. */
  async stopAll(deadlineMs: number): Promise<void> {
    this.#beginStopping();
    // Every live process, including builds a deploy or add is still starting.
    await Promise.all([...this.#alive].map((w) => w.stop(deadlineMs, { finalMetrics: false })));
  }

  /**
   * Kills every worker at once (a fatal start-up failure, a second signal). Resolves once each has exited and been
   * reaped; one never forked (waiting for a start slot) never does, so callers bound the wait.
   */
  destroyAll(): Promise<void> {
    this.#beginStopping();
    // A handle still waiting for a start slot has no process to wait for: destroyed, it never forks one.
    const exits = [...this.#alive].filter((w) => w.pid !== undefined).map((w) => once(w, 'exit'));
    for (const w of this.#alive) w.destroy();
    return Promise.all(exits).then(() => undefined);
  }

  #beginStopping(): void {
    this.#isStopping = true;
    clearInterval(this.#healthTimer);
    for (const timer of this.#timers) clearTimeout(timer);
    this.#timers.clear();
  }
}

/**
 * The secret variables (keys, proxy credentials) of versions other than `build`'s, as inherited from the master: a
 * variable shared with its own is its own, and one its own `env` sets is not inherited.
 */
function othersKeys(keyEnvs: Iterable<string> | undefined, build: SpawnOptions['build']): string[] {
  const own = new Set(upstreamSecretEnvs(build.upstream));
  return keyEnvs === undefined ? [] : [...keyEnvs].filter((name) => !own.has(name) && !Object.hasOwn(build.env, name));
}
