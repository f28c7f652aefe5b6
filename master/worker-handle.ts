import { fork as nodeFork, type ChildProcess, type ForkOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { Agent, type RequestOptions } from 'node:http';
import type { Socket } from 'node:net';
import { relayLogLines, type Logger } from '../shared/log.js';
import { performance } from 'node:perf_hooks';
import {
  PROTOCOL_VERSION,
  WORKER_SETTINGS_ENV,
  assertNever,
  isReadyMessage,
  isWorkerToMaster,
  type WorkerSettings,
  type WorkerToMaster,
} from '../shared/ipc.js';
import type { AdmissionTarget } from './admission.js';
import type { DirectCallMessage, DirectCallReport } from '../shared/direct.js';
import { createWorkerAgent } from './worker-agent.js';
import type { StartLimiter } from './start-limiter.js';
import {
  collectStderr,
  endpointOf,
  workerExecArgv,
  workerNodeOptions,
  WorkerStartFailure,
  type ExitReport,
  type WorkerEndpoint,
} from './worker-process.js';

// One forked worker process and everything the master holds for it (STYLE §20:
// only this file changes a worker's state). Lifecycle:
//   starting → ready → draining → stopped
//   ready → unhealthy (missed health probes; killed, then crashed → restarted)
//   starting/ready → crashed (exit nobody asked for)

export type WorkerState = 'starting' | 'ready' | 'unhealthy' | 'draining' | 'stopped' | 'crashed';

/** limits.directStreams: where an IPC call's reports go (master/direct-calls.ts). */
export interface DirectCallSink {
  report(msg: DirectCallReport): void;
  /** The worker process ended before the call's last report. */
  lost(): void;
}

interface QueuedConnection {
  id: number;
  socket: Socket;
  onSettled: ConnectionSettled;
}

/** How an offered connection ended: true, its duplicate reached the worker process (`conn-taken`); false, lost. */
export type ConnectionSettled = (isTaken: boolean) => void;

/** What the last answered health probe said (SPEC §4a, issue 9 part 3). */
export interface WorkerHealth {
  /** Probes sent and not answered in a row. */
  misses: number;
  /** Resident set size at the last answer, bytes; 0 before the first. */
  rssBytes: number;
  /** Longest event-loop delay the worker saw between two probes, ms. */
  eventLoopDelayMs: number;
  /** Probe round trip at the last answer, ms. */
  probeRoundTripMs: number;
}

export type ForkFunction = (modulePath: string, args: readonly string[], options: ForkOptions) => ChildProcess;

export interface WorkerHandleOptions {
  /** Absolute path of the worker entry module. */
  entry: string;
  settings: WorkerSettings;
  /** Extra env for the worker (the version's `env`), on top of the master's. */
  env: Readonly<Record<string, string>>;
  /** How long the worker has to report ready, in ms. */
  readyTimeoutMs: number;
  /** maxSockets of the worker's agent: the admission slot count. */
  maxSockets: number;
  /** Idle keep-alive sockets kept to the worker. */
  maxIdleSockets: number;
  log: Logger;
  /** Environment variables the worker never inherits (SPEC §6: GRAYGATE_ADMIN_TOKEN and admin.redactEnv). */
  redactEnv: readonly string[];
  /** Bounds how many workers start at once; the ready timer starts at this worker's own fork. */
  startLimiter: StartLimiter;
  /** Injected for tests of the supervisor (STYLE §34); default child_process.fork. */
  fork?: ForkFunction;
  /** Grace before each kill escalation, ms; default KILL_GRACE_MS. */
  killGraceMs?: number;
}

/** Time a worker gets after SIGTERM before SIGKILL, and after its drain deadline before SIGTERM. */
const KILL_GRACE_MS = 2000;

/** Longest wait at stop for the worker's final metrics (as long as a scrape waits for one worker), ms. */
const FINAL_METRICS_DEADLINE_MS = 1000;

export interface WorkerHandleEvents {
  ready: [];
  exit: [ExitReport];
}

export class WorkerHandle extends EventEmitter<WorkerHandleEvents> implements AdmissionTarget {
  readonly version: string;
  readonly instance: number;
  readonly entry: string;
  readonly agent: Agent;
  /** What the worker was told at fork time. */
  readonly settings: WorkerSettings;
  /** Crashes this instance slot has had, carried over to its replacement by the supervisor. */
  restarts = 0;
  /**
   * Crashes of this instance slot in a row, this process's predecessors' (the registry's restart backoff); a process
   * up for the policy's stableAfterMs starts the count afresh, and a deploy's new handles start at 0.
   */
  consecutiveCrashes = 0;
  #state: WorkerState = 'starting';
  /** Its socket refused a connection (markUnreachable). */
  #isUnreachable = false;
  /** afterSignOfLife's callbacks, by the id of the ping sent for each (ids rise: the map is in their order). */
  readonly #lifeWaiters = new Map<number, () => void>();
  #child: ChildProcess | undefined;
  /** limits.directStreams: this worker process said it takes client connections (an older build would exit). */
  #takesConnections = false;
  /** limits.directStreams: the connection whose descriptor was sent and not yet taken (0: none). */
  #connectionInFlight = 0;
  /** limits.directStreams: connections offered to this worker process, waiting for their turn (one at a time). */
  #connectionQueue: QueuedConnection[] = [];
  /** limits.directStreams: told when the connection in flight has been taken, or lost. */
  #onConnectionSettled: ConnectionSettled | undefined = undefined;
  /** Lets the descriptor in flight close (holdOpen): its message was written, or this worker is gone. */
  #releaseInFlight: (() => void) | undefined = undefined;
  /** limits.directStreams: this worker process answers requests passed as IPC calls. */
  #takesCalls = false;
  /** limits.directStreams: … and reports each one taken before it runs it (`call-report` isTaken). */
  #acksCalls = false;
  /** limits.directStreams: IPC calls in this worker process, by id: where their reports go. */
  readonly #calls = new Map<number, DirectCallSink>();
  #endpoint: WorkerEndpoint | undefined;
  #readyAt = 0;
  #stderrTail: string[] = [];
  #isStopRequested = false;
  #isStarted = false;
  #exitReport: ExitReport | undefined;
  readonly #options: WorkerHandleOptions;
  readonly #log: Logger;

  constructor(options: WorkerHandleOptions) {
    super();
    this.#options = options;
    this.version = options.settings.version;
    this.instance = options.settings.instance;
    this.entry = options.entry;
    this.settings = options.settings;
    this.#log = options.log.child({ version: this.version, instance: this.instance });
    this.agent = createWorkerAgent({ maxSockets: options.maxSockets, maxIdleSockets: options.maxIdleSockets });
  }

  get state(): WorkerState {
    return this.#state;
  }
  get pid(): number | undefined {
    return this.#child?.pid;
  }
  get isAccepting(): boolean {
    return this.#state === 'ready' && !this.#isUnreachable;
  }

  /**
   * Its socket refused a connection: it is dying (the process is gone before its exit event comes) or listens no
   * more, so admission skips it from now on, and it is killed: its exit follows, and its crash restarts it.
   */
  markUnreachable(): void {
    this.#isUnreachable = true;
    this.#kill('SIGKILL');
  }

  /**
   * Calls `callback` once the worker has shown it is alive after now (it answered a ping sent now: IPC keeps order), or
   * once its process is gone. For the slot of a request whose connection to the worker closed under it (before or in
   * the middle of its answer): the worker may be dying, as a killed process's connections close before its listening
   * socket and before its exit is seen, and a request the slot went to now would be lost with it (a POST, which cannot
   * go twice, as a 502). Microseconds when it is well; its exit otherwise (a stuck one is killed by the health probes).
   * Only that slot waits: a client that makes the worker close connections on purpose (an early 431 and a close) holds
   * its own slots a little longer, nobody else's. One whose channel is closed cannot show it: it is exiting (a worker
   * closes it no other way), or a build that can be neither probed nor trusted; it is taken out and killed, and its
   * exit calls back.
   */
  afterSignOfLife(callback: () => void): void {
    const child = this.#child;
    if (child === undefined || this.#exitReport !== undefined) return callback();
    const id = this.#nextProbeId++;
    this.#lifeWaiters.set(id, callback);
    if (child.connected) child.send({ type: 'ping', id }, undefined, undefined, ignoreSendError);
    else this.markUnreachable();
  }

  get health(): WorkerHealth {
    return { ...this.#health };
  }
  /** Where the worker listens once ready: a unix socket or a loopback port. */
  get endpoint(): WorkerEndpoint {
    if (this.#endpoint === undefined) throw new Error(`worker ${this.version}#${this.instance} has no address yet`);
    return this.#endpoint;
  }

  /** node:http options for a request of the master's own to this worker (deploy probe, tests), through its agent. */
  requestOptions(path: string): RequestOptions {
    const endpoint = this.endpoint;
    const where =
      endpoint.socketPath === undefined
        ? { host: endpoint.host, port: endpoint.port }
        : { socketPath: endpoint.socketPath };
    return { ...where, path, agent: this.agent };
  }
  /** When it became ready, monotonic ms (performance.now()); 0 before. */
  get readyAt(): number {
    return this.#readyAt;
  }
  get exitReport(): ExitReport | undefined {
    return this.#exitReport;
  }

  /**
   * Forks the process; resolves once it reported ready, rejects with a WorkerStartFailure otherwise. Once: a handle is
   * one process for its whole life (a replacement is a new handle), which is what direct-connections.ts keys on.
   */
  async start(): Promise<void> {
    if (this.#isStarted) throw new Error(`worker ${this.version}#${this.instance}: start() called twice`);
    this.#isStarted = true;
    const release = await this.#options.startLimiter.acquire();
    try {
      if (this.#isStopRequested) {
        this.#state = 'stopped';
        const report: ExitReport = {
          code: null,
          signal: null,
          isIntended: true,
          reason: 'stopped before it started',
          stderrTail: [],
        };
        this.#exitReport = report;
        // Its end, as a process's: the supervisor counts it alive until then (a review: each failed deploy of several
        // instances left handles that never exited, and the client-connection bound they reserve shrank for good).
        this.emit('exit', report);
        throw new WorkerStartFailure(report);
      }
      await this.#fork();
    } finally {
      release();
    }
  }

  #fork(): Promise<void> {
    const fork = this.#options.fork ?? nodeFork;
    const env: NodeJS.ProcessEnv = {
      ...process.env,
      ...this.#options.env,
      [WORKER_SETTINGS_ENV]: JSON.stringify(this.#options.settings),
    };
    // SPEC §6: the admin token (and any variable named in admin.redactEnv) never reaches a worker.
    for (const name of this.#options.redactEnv) delete env[name];
    // The master's own (a build's env may set its own on purpose): quoted values and their spaces kept as written.
    if (this.#options.env?.['NODE_OPTIONS'] === undefined) {
      const nodeOptions = workerNodeOptions(env['NODE_OPTIONS']);
      if (nodeOptions === undefined) delete env['NODE_OPTIONS'];
      else env['NODE_OPTIONS'] = nodeOptions;
    }
    const execArgv = workerExecArgv(process.execArgv);
    // Log lines come through the master (shared/log.ts relayLogLines), but on a terminal, where each process writes
    // its own, pretty (no collector there to stall).
    const isTerminal = process.stdout.isTTY === true;
    const child = fork(this.#options.entry, [], {
      env,
      execArgv,
      stdio: ['ignore', isTerminal ? 'inherit' : 'pipe', 'pipe', 'ipc'],
      serialization: 'json',
    });
    this.#child = child;
    // A fork that made no process (EMFILE, ENFILE: the master at its descriptor limit) has no stdio at all, not null
    // ones, and no PID; node emits 'error' and 'close' next, handled below as any start that failed.
    if (child.stdout) relayLogLines(child.stdout);
    collectStderr(child, this.#stderrTail);
    child.on('internalMessage', this.#onInternalMessage);
    let failure: string | undefined;
    const fail = (reason: string): void => {
      failure ??= reason;
      this.#kill('SIGKILL');
    };
    return new Promise<void>((resolve, reject) => {
      const readyTimer = setTimeout(
        () => fail(`not ready within ${this.#options.readyTimeoutMs} ms`),
        this.#options.readyTimeoutMs,
      );
      child.on('message', (msg: unknown) => {
        try {
          onMessage(msg);
        } catch (err) {
          // One the master could not act on all the same (its bug or the build's): the master stays up and this worker
          // is replaced; a throw here, in the IPC listener, ended the master with every stream.
          const reason = `a message from it failed: ${err instanceof Error ? err.message : 'not an Error'}`;
          this.#log.error({ err, workerPid: child.pid }, 'a message from the worker failed');
          if (this.#state === 'starting') fail(reason);
          else this.markUnhealthy(reason);
        }
      });
      const onMessage = (msg: unknown): void => {
        if (!isWorkerToMaster(msg)) {
          // A build's `ready` the master cannot use ends its start now, not at readyTimeoutMs.
          if (isReadyMessage(msg) && this.#state === 'starting') return fail(readyProblem(msg.protocol));
          // STYLE §19 (under its own key: pino's own `msg` is the line's text).
          this.#log.warn({ ipcMessage: msg }, 'ignoring a malformed or unknown message from worker');
          return;
        }
        switch (msg.type) {
          case 'ready':
            if (msg.protocol !== PROTOCOL_VERSION) return fail(readyProblem(msg.protocol));
            // Too late: the ready timer or a protocol mismatch already failed this start.
            if (this.#state !== 'starting' || failure !== undefined) return;
            clearTimeout(readyTimer);
            this.#endpoint = endpointOf(msg.address);
            this.#takesConnections = msg.takesConnections === true;
            this.#takesCalls = this.#takesConnections && msg.takesCalls === true;
            this.#acksCalls = msg.acksCalls === true;
            this.#state = 'ready';
            this.#readyAt = performance.now();
            this.#log.info({ workerPid: child.pid, address: msg.address }, 'worker ready');
            resolve();
            this.emit('ready');
            break;
          case 'fatal':
            this.#log.error({ workerPid: child.pid, error: msg.error }, 'worker reported a fatal error');
            break;
          case 'metrics':
            this.#metricsWaiters.get(msg.replyTo)?.(msg.metrics);
            break;
          case 'pong':
            this.#onPong(msg);
            break;
          case 'conn-taken':
            if (this.#connectionInFlight === msg.id) this.#settleConnection(true);
            break;
          case 'call-report': {
            const sink = this.#calls.get(msg.id);
            if (sink === undefined) break;
            sink.report(msg);
            // After the report: one that throws leaves its call here, to be lost when the worker it replaces exits.
            if (msg.isEnd === true) this.#calls.delete(msg.id);
            break;
          }
          default:
            assertNever(msg);
        }
      };
      child.on('error', (err) => {
        this.#log.error({ err }, 'worker process error');
        fail(`could not start: ${err.message}`);
      });
      // 'close' rather than 'exit': stderr is fully read by then, so the report has the last lines.
      child.on('close', (code: number | null, signal: NodeJS.Signals | null) => {
        clearTimeout(readyTimer);
        const isIntended = this.#isStopRequested;
        const reason = failure ?? (signal !== null ? `killed by ${signal}` : `exited with code ${code}`);
        const report: ExitReport = { code, signal, isIntended, reason, stderrTail: [...this.#stderrTail] };
        this.#exitReport = report;
        this.#state = isIntended || failure !== undefined ? 'stopped' : 'crashed';
        this.#pendingProbe = 0;
        this.agent.destroy();
        for (const pending of this.#metricsWaiters.values()) pending(undefined);
        this.#metricsWaiters.clear();
        const waiting = [...this.#lifeWaiters.values()];
        this.#lifeWaiters.clear();
        const calls = [...this.#calls.values()];
        this.#calls.clear();
        for (const sink of calls) sink.lost();
        // Connections still waiting to be sent: none will be (a client connection may keep this handle for its life).
        this.#connectionQueue = [];
        this.#connectionInFlight = 0;
        this.#onConnectionSettled = undefined;
        this.#releaseInFlight?.();
        this.#releaseInFlight = undefined;
        (isIntended ? this.#log.info : this.#log.warn).call(
          this.#log,
          { workerPid: child.pid, code, signal, reason },
          'worker exited',
        );
        // The start fails if it never became ready, also when a stop made it 'draining' while it started (a master
        // stopping during a deploy: the deploy was never answered); a no-op once ready.
        reject(new WorkerStartFailure(report));
        this.emit('exit', report);
        // After the registry heard of the exit (its replacement is on its way): slots held for it are free now.
        for (const callback of waiting) callback();
      });
    });
  }

  /** Stops taking new requests (admission skips it); requests in flight go on. */
  drain(): void {
    if (this.#state === 'ready') this.#state = 'draining';
  }

  /**
   * Stops the process (STYLE §22). The caller has drained it and waited for
   * the master's own requests to it to finish (admission.whenIdle), so closing
   * the agent's idle keep-alive sockets first means no request can be written
   * onto a socket the worker is closing; then `shutdown` over IPC, wait for
   * exit up to deadlineMs, then SIGTERM, then SIGKILL. Resolves once the
   * process is gone.
   */
  async stop(deadlineMs: number, options: { finalMetrics?: boolean } = {}): Promise<void> {
    this.drain();
    this.agent.destroy();
    // SPEC §9: what its counters reached since the last scrape or health probe, kept once it exits
    // (master/retired-totals.ts). The caller waited for its requests to end, so this answer is its last word; a
    // crash has none but its last probe's answer. Not
    // taken from the drain deadline: a worker that never answers costs at most this wait more. Not asked
    // when the master itself stops (finalMetrics false): nobody will scrape it again.
    if (this.#state === 'draining' && options.finalMetrics !== false)
      await this.requestMetrics(Math.min(FINAL_METRICS_DEADLINE_MS, deadlineMs));
    await this.#terminate(deadlineMs);
  }

  async #terminate(deadlineMs: number): Promise<void> {
    const child = this.#child;
    // Not forked yet (waiting for a start slot): it never will be.
    this.#isStopRequested = true;
    if (child === undefined || child.exitCode !== null || child.signalCode !== null) {
      return;
    }
    const wasStarting = this.#state === 'starting';
    if (this.#state === 'ready' || this.#state === 'starting') this.#state = 'draining';
    const exited = new Promise<void>((resolve) => child.once('close', () => resolve()));
    // A starting worker serves nothing and may not listen for IPC yet: SIGTERM it.
    // One already dead, its channel's end not seen yet (killed by the health probes while it drained): the send fails
    // with EPIPE, which without a callback is the child's 'error', taken for a failed start (a probe's repro: an
    // error line with a stack, and the exit's reason "could not start: write EPIPE").
    if (child.connected && !wasStarting)
      child.send({ type: 'shutdown', deadlineMs }, undefined, undefined, ignoreSendError);
    else this.#kill('SIGTERM');
    const graceMs = this.#options.killGraceMs ?? KILL_GRACE_MS;
    const escalate = setTimeout(() => {
      this.#log.warn({ workerPid: child.pid }, 'worker did not exit in time, SIGTERM');
      this.#kill('SIGTERM');
      setTimeout(() => this.#kill('SIGKILL'), graceMs).unref();
    }, deadlineMs + graceMs);
    await exited;
    clearTimeout(escalate);
  }

  /** Kills at once (a failed deploy, a master that gives up). */
  destroy(): void {
    this.#isStopRequested = true;
    this.#kill('SIGKILL');
  }

  // Health probes over IPC (SPEC §4a, issue 9 part 3). A worker that stops
  // answering — SIGSTOP, an endless loop, a deadlock on a sync call — still
  // holds its sockets open and would hang every request sent to it.

  readonly #health: WorkerHealth = { misses: 0, rssBytes: 0, eventLoopDelayMs: 0, probeRoundTripMs: 0 };
  #pendingProbe = 0;
  #probeSentAtMs = 0;
  #nextProbeId = 1;

  /**
   * One health probe tick: counts a miss if the previous probe is still
   * unanswered, then sends the next. Returns the ticks in a row with no answer
   * to any probe. Only ready and draining workers are probed.
   */
  probe(nowMs: number): number {
    const child = this.#child;
    if ((this.#state !== 'ready' && this.#state !== 'draining') || child === undefined || !child.connected) return 0;
    if (this.#pendingProbe !== 0) this.#health.misses++;
    this.#pendingProbe = this.#nextProbeId++;
    this.#probeSentAtMs = nowMs;
    // A worker just killed may not have been heard to disconnect yet: the send fails (EPIPE) and its exit says why.
    child.send({ type: 'ping', id: this.#pendingProbe }, undefined, undefined, ignoreSendError);
    return this.#health.misses;
  }

  /**
   * limits.directStreams: queues a duplicate of a client connection's descriptor for this worker process (the master
   * keeps its own and goes on reading). False when the worker cannot take one; the answer then comes through the
   * master, as it does until the descriptor has arrived. `onSettled` hears whether it arrived, unless the worker
   * process ends first.
   */
  offerConnection(id: number, socket: Socket, onSettled: ConnectionSettled): boolean {
    if (this.#state !== 'ready' || !this.#takesConnections || this.#child === undefined || !this.#child.connected)
      return false;
    this.#connectionQueue.push({ id, socket, onSettled });
    this.#sendNextConnection();
    return true;
  }

  // One descriptor in flight at a time: node holds every later message to this worker, its health probes included,
  // until the worker acknowledges a handle, and a busy worker takes tens of ms to. 300 connections offered at once
  // held the probes for 12 s, and the worker was killed as unhealthy. A connection that closed while it waited is
  // skipped, never sent; one that closes while its message is being written stays open until the write is done
  // (holdOpen).
  #sendNextConnection(): void {
    const child = this.#child;
    while (this.#connectionInFlight === 0 && this.#connectionQueue.length > 0) {
      const { id, socket, onSettled } = this.#connectionQueue.shift()!;
      const handle = (socket as Socket & { _handle: NativeHandle | null })._handle;
      if (socket.destroyed || handle === null || child === undefined || !child.connected) continue;
      this.#connectionInFlight = id;
      this.#onConnectionSettled = onSettled;
      const release = holdOpen(handle);
      this.#releaseInFlight = release;
      const settle = (err: Error | null): void => {
        release();
        if (this.#releaseInFlight === release) this.#releaseInFlight = undefined;
        if (err !== null && this.#connectionInFlight === id) this.#settleConnection(false);
      };
      try {
        child.send(
          { type: 'conn', id },
          handle as unknown as Parameters<ChildProcess['send']>[1],
          { keepOpen: true },
          settle,
        );
      } catch (err) {
        settle(err instanceof Error ? err : new Error(String(err)));
      }
    }
  }

  /** The descriptor in flight arrived (`conn-taken`) or was lost (its send failed, or the worker could not take it). */
  #settleConnection(isTaken: boolean): void {
    const onSettled = this.#onConnectionSettled;
    this.#connectionInFlight = 0;
    this.#onConnectionSettled = undefined;
    onSettled?.(isTaken);
    this.#sendNextConnection();
  }

  /**
   * Node's own answer to a descriptor message that reached the worker process without its descriptor (the kernel
   * dropped it, MSG_CTRUNC: the worker was at its file limit). Sent with keepOpen, node neither resends it nor tells
   * the sender: without this, no `conn-taken` would ever come, and this worker would never be offered another
   * connection.
   */
  #onInternalMessage = (msg: unknown): void => {
    if (!isHandleNack(msg) || this.#connectionInFlight === 0) return;
    this.#log.warn(
      { workerPid: this.#child?.pid, conn: this.#connectionInFlight },
      'a connection did not reach the worker (its file limit?): its answers go through the master',
    );
    this.#settleConnection(false);
  };

  /** limits.directStreams: this worker process answers requests passed as IPC calls (its `ready` said so). */
  get takesCalls(): boolean {
    return this.#takesCalls && this.#state === 'ready';
  }

  /**
   * limits.directStreams: its calls are reported taken before they run, so one that was not when the process ended
   * never ran (master/direct-calls.ts); false for a build that does not say so: its calls are taken once sent.
   */
  get acksCalls(): boolean {
    return this.#acksCalls;
  }

  /**
   * limits.directStreams: passes a request to this worker process as an IPC call on a connection it holds; its reports
   * go to the sink `start` makes once it is sent, and `sink.lost()` if the process ends first. False when this process
   * takes no calls (the caller forwards the request over HTTP).
   */
  sendCall(msg: DirectCallMessage, start: () => DirectCallSink): boolean {
    const child = this.#child;
    if (!this.takesCalls || child === undefined || !child.connected) return false;
    child.send(msg, undefined, undefined, ignoreSendError);
    // Reports arrive in a later turn, read from the channel: the sink is in place by then.
    this.#calls.set(msg.id, start());
    return true;
  }

  /** The client connection `id` closed: the worker closes its duplicate. */
  closeConnection(id: number): void {
    const child = this.#child;
    if (child === undefined || !child.connected) return;
    child.send({ type: 'conn-close', id }, undefined, undefined, ignoreSendError);
  }

  /** Takes the worker out of routing and kills it; its exit counts as a crash, so the supervisor replaces it. */
  markUnhealthy(reason: string): void {
    if (this.#state !== 'ready' && this.#state !== 'draining') return;
    this.#state = 'unhealthy';
    this.#log.error({ workerPid: this.pid, reason, misses: this.#health.misses }, 'worker unhealthy, killing it');
    this.#kill('SIGKILL');
  }

  #onPong(msg: Extract<WorkerToMaster, { type: 'pong' }>): void {
    // Any answer shows the worker's loop ran just now (IPC is ordered), even one to a probe
    // already counted as missed: a worker, or a master, slowed by a busy machine answers late,
    // and a late answer must not add up to a kill. Only a worker that answers nothing does.
    this.#health.misses = 0;
    this.#health.rssBytes = msg.rssBytes;
    this.#health.eventLoopDelayMs = msg.eventLoopDelayMs;
    // IPC keeps order and the worker reads its counters as it answers: each answer's are at least the one's before.
    if (Array.isArray(msg.counters)) this.#lastCounters = msg.counters;
    // Its loop ran after each ping up to this one was sent (IPC keeps order).
    for (const [id, callback] of this.#lifeWaiters) {
      if (id > msg.replyTo) break;
      this.#lifeWaiters.delete(id);
      callback();
    }
    if (msg.replyTo !== this.#pendingProbe) return; // the latest probe is still out
    this.#pendingProbe = 0;
    this.#health.probeRoundTripMs = Math.max(0, performance.now() - this.#probeSentAtMs);
  }

  #kill(signal: NodeJS.Signals): void {
    const child = this.#child;
    // Never without a PID: a fork that made no process keeps a handle whose kill() signals PID 0, the master's own
    // process group (the master, every worker, and whatever shell started them).
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill(signal);
  }

  // Metrics over IPC (SPEC §9): request/response paired by id (STYLE §18).
  readonly #metricsWaiters = new Map<number, (metrics: unknown[] | undefined) => void>();
  #nextMetricsId = 1;
  #lastMetrics: unknown[] | undefined;
  #lastCounters: unknown[] | undefined;

  /** The worker's last answer to requestMetrics; the master keeps its counters once the process is gone. */
  get lastMetrics(): readonly unknown[] | undefined {
    return this.#lastMetrics;
  }

  /** The counters and histograms of the worker's last health probe answer (2 s old at most, by default). */
  get lastCounters(): readonly unknown[] | undefined {
    return this.#lastCounters;
  }

  /** This worker's metrics, or [] if it does not answer within deadlineMs (a stuck worker must not stall /metrics). */
  requestMetrics(deadlineMs: number): Promise<unknown[] | undefined> {
    const child = this.#child;
    if (child === undefined || !child.connected || this.#state === 'stopped' || this.#state === 'crashed') {
      return Promise.resolve(undefined);
    }
    const id = this.#nextMetricsId++;
    return new Promise((resolve) => {
      const timer = setTimeout(() => {
        this.#metricsWaiters.delete(id);
        resolve(undefined);
      }, deadlineMs);
      this.#metricsWaiters.set(id, (metrics) => {
        clearTimeout(timer);
        this.#metricsWaiters.delete(id);
        // IPC keeps order and a process's counters only go up: each answer is at least the one before.
        if (metrics !== undefined) this.#lastMetrics = metrics;
        resolve(metrics);
      });
      child.send({ type: 'metrics', id }, undefined, undefined, ignoreSendError);
    });
  }
}

/** IPC sends to a worker that is exiting fail; its own exit handling reports that. */
function ignoreSendError(): void {}

/** A connection's native handle (node's TCPWrap), as `socket._handle` holds it. */
interface NativeHandle {
  close(...args: unknown[]): void;
  readStop(): number;
}

/** A descriptor's held close: how many sends hold it (a connection on its way to several workers), the close asked. */
interface Hold {
  count: number;
  asked: unknown[] | undefined;
}

const holds = new WeakMap<NativeHandle, Hold>();

/**
 * Keeps a descriptor open while node writes it to a worker: its `close` (what `socket.destroy()` calls) is held until
 * every hold's returned function has run, then done as asked; meanwhile a destroyed socket reads nothing more (node's
 * parser, attached in C++, would still parse what comes). libuv reads the descriptor when it writes the message,
 * which waits while the channel is backed up (a stopped or busy worker). A handle closed meanwhile fails that write
 * (EBADF), the message is lost without an error, and node waits for the worker's acknowledgement for good, holding
 * every later message to it, health probes included (reproduced in test/e2e/hop-direct.test.ts). Each release is
 * idempotent.
 */
export function holdOpen(handle: NativeHandle): () => void {
  const hold = holds.get(handle) ?? shadowClose(handle);
  hold.count++;
  let isHeld = true;
  return () => {
    if (!isHeld) return;
    isHeld = false;
    if (--hold.count > 0) return;
    holds.delete(handle);
    Reflect.deleteProperty(handle, 'close'); // the prototype's close again
    if (hold.asked !== undefined) handle.close(...hold.asked);
  };
}

/** The first hold of a descriptor: its `close` only records what was asked, and stops reading. */
function shadowClose(handle: NativeHandle): Hold {
  const hold: Hold = { count: 0, asked: undefined };
  holds.set(handle, hold);
  handle.close = (...args: unknown[]): void => {
    hold.asked = args;
    handle.readStop();
  };
  return hold;
}

/** node's `NODE_HANDLE_NACK` (lib/internal/child_process.js): a handle message arrived without its handle. */
function isHandleNack(msg: unknown): boolean {
  return typeof msg === 'object' && msg !== null && (msg as { cmd?: unknown }).cmd === 'NODE_HANDLE_NACK';
}

/** Why a worker's `ready` fails its start: another protocol (a build of another release), or a shape not ours. */
function readyProblem(protocol: unknown): string {
  return typeof protocol === 'number' && protocol !== PROTOCOL_VERSION
    ? `worker speaks protocol ${protocol}, master ${PROTOCOL_VERSION}`
    : 'its ready message is malformed (a protocol number, an address {path} or {host, port})';
}
