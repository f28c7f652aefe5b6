import { fork as nodeFork, type ChildProcess, type ForkOptions } from 'node:child_process';
import { EventEmitter } from 'node:events';
import type { Agent, RequestOptions } from 'node:http';
import type { Socket } from 'node:net';
import { relayLogLines, type Logger } from '../shared/log.js';
import { MAX_TIMER_MS } from '../shared/defaults.js';
import { performance } from 'node:perf_hooks';
import { PROTOCOL_VERSION, assertNever, isReadyMessage, isWorkerToMaster, type WorkerSettings } from '../shared/ipc.js';
import type { AdmissionTarget } from './admission.js';
import type { DirectCallMessage } from '../shared/direct.js';
import { createWorkerAgent } from './worker-agent.js';
import { WorkerDirect, type ConnectionSettled, type DirectCallSink } from './worker-direct.js';
import { WorkerProbes, ignoreSendError, type WorkerHealth } from './worker-probes.js';
import type { StartLimiter } from './start-limiter.js';
import {
  collectStderr,
  endpointOf,
  workerExecArgv,
  workerEnv,
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

export type { WorkerHealth } from './worker-probes.js';

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
  /**
   * The ready worker was sent SIGTERM by someone else and left it to the master (IPC `signal`,
   * WorkerSettings.takesSignals): true when the master takes it over (a replacement starts, or the worker is on its
   * way out already and the master's `shutdown` follows). Absent, or false: the worker is told to drain now, as it
   * did on its own before (SIGNAL_DRAIN_MS), and takes no new request meanwhile.
   */
  onSignal?: () => boolean;
}

/** Time a worker gets after SIGTERM before SIGKILL, and after its drain deadline before SIGTERM. */
const KILL_GRACE_MS = 2000;
/** How long a worker told to end its answers at a deadline (cutAnswers) has before they are cut, ms. */
export const CUT_GRACE_MS = 1000;

/** The drain a worker sent SIGTERM is told to do when the master does not take the signal over, ms (as its own). */
const SIGNAL_DRAIN_MS = 5000;

/** Longest wait at stop for the worker's final metrics (as long as a scrape waits for one worker), ms. */
const FINAL_METRICS_DEADLINE_MS = 1000;

export interface WorkerHandleEvents {
  ready: [];
  exit: [ExitReport];
  /** The worker was sent SIGTERM (not by the master) and left it to the master (IPC `signal`): answered now. */
  signal: [];
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
  /** Health probes, signs of life and metrics over IPC. */
  readonly #probes = new WorkerProbes();
  #child: ChildProcess | undefined;
  /** limits.directStreams: the connections handed to this process and the requests passed to it as IPC calls. */
  readonly #direct: WorkerDirect;
  #endpoint: WorkerEndpoint | undefined;
  #readyAt = 0;
  #stderrTail: string[] = [];
  #isStopRequested = false;
  /** Its `signal` came (IPC): answered once. */
  #isSignalled = false;
  /** When the drain of the master's stop (#terminate) ends, monotonic ms: a `signal` read meanwhile gets the rest. */
  #stopDeadlineAt = 0;
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
    this.#direct = new WorkerDirect(this.#log);
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
    if (!this.#probes.waitForLife(callback)) this.markUnreachable();
  }

  get health(): WorkerHealth {
    return this.#probes.health;
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
    const env = workerEnv(process.env, this.#options);
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
    this.#direct.attach(child);
    this.#probes.attach(child);
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
            this.#direct.onReady(msg);
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
            this.#probes.onMetrics(msg);
            break;
          case 'pong':
            this.#probes.onPong(msg);
            break;
          case 'conn-taken':
            this.#direct.onConnectionTaken(msg.id);
            break;
          case 'call-report':
            this.#direct.onCallReport(msg);
            break;
          case 'calls-taken':
            this.#direct.onCallsTaken(msg.ids);
            break;
          case 'signal':
            // Once a process: each answer can start a replacement, and a build's own IPC code may send it again and
            // again (a review: five made five forks). The shared lifecycle sends one.
            if (this.#isSignalled) break;
            this.#isSignalled = true;
            this.#log.info({ workerPid: child.pid, signal: msg.signal }, 'worker was sent SIGTERM');
            // Once the messages read with it have been acted on: a `ready` read in the same turn has made a
            // replacement current by then (crash-restart.ts replaceSignalled, a promise's continuation).
            setImmediate(() => {
              try {
                this.#answerSignal(child);
              } catch (err) {
                // Out of the message listener's try: a throw here ended the master with every stream.
                this.#log.error({ err, workerPid: child.pid }, 'answering a worker sent SIGTERM failed');
              }
            });
            break;
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
        this.agent.destroy();
        const waiting = this.#probes.end();
        this.#direct.end();
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

  /**
   * IPC `signal`: `signal-taken` when the master takes the SIGTERM over (onSignal), else `shutdown`. The master's own
   * stop under way is the answer (#terminate SIGTERMs a worker it has not heard `ready` from, which may have sent it
   * meanwhile: taken over, that worker served on until readyTimeoutMs or the kill escalation, a review); one the
   * master does not take (a new build's, its swap not done) drains now, as it did on its own before.
   */
  #answerSignal(child: ChildProcess): void {
    if (!child.connected || child.exitCode !== null || child.signalCode !== null) return;
    let deadlineMs = SIGNAL_DRAIN_MS;
    if (this.#isStopRequested) deadlineMs = Math.max(0, this.#stopDeadlineAt - performance.now());
    else if (this.#options.onSignal?.() === true) {
      child.send({ type: 'signal-taken' }, undefined, undefined, ignoreSendError);
      this.emit('signal');
      return;
    } else {
      this.#log.warn({ workerPid: child.pid, deadlineMs }, 'worker sent SIGTERM is not replaced: it drains now');
      this.drain();
    }
    child.send({ type: 'shutdown', deadlineMs }, undefined, undefined, ignoreSendError);
    this.emit('signal');
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
    this.#stopDeadlineAt = performance.now() + deadlineMs;
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
    const escalate = setTimeout(
      () => {
        this.#log.warn({ workerPid: child.pid }, 'worker did not exit in time, SIGTERM');
        this.#kill('SIGTERM');
        setTimeout(() => this.#kill('SIGKILL'), graceMs).unref();
      },
      Math.min(deadlineMs + graceMs, MAX_TIMER_MS),
    ); // past it node fires at once (a drainTimeoutMs of ~24.8 days)
    await exited;
    clearTimeout(escalate);
  }

  /** Kills at once (a failed deploy, a master that gives up). */
  destroy(): void {
    this.#isStopRequested = true;
    this.#kill('SIGKILL');
  }

  /**
   * One health probe tick (SPEC §4a; WorkerProbes.probe): the misses in a row. Only ready and draining workers are
   * probed.
   */
  probe(nowMs: number): number {
    if (this.#state !== 'ready' && this.#state !== 'draining') return 0;
    return this.#probes.probe(nowMs);
  }

  /**
   * limits.directStreams: queues a duplicate of a client connection's descriptor for this worker process (the master
   * keeps its own and goes on reading). False when the worker cannot take one; the answer then comes through the
   * master, as it does until the descriptor has arrived. `onSettled` hears whether it arrived, unless the worker
   * process ends first.
   */
  offerConnection(id: number, socket: Socket, onSettled: ConnectionSettled): boolean {
    return this.#state === 'ready' && this.#direct.offerConnection(id, socket, onSettled);
  }

  /** limits.directStreams: this worker process answers requests passed as IPC calls (its `ready` said so). */
  get takesCalls(): boolean {
    return this.#direct.takesCalls && this.#state === 'ready';
  }

  /**
   * limits.directStreams: its calls are reported taken before they run, so one that was not when the process ended
   * never ran (master/direct-calls.ts); false for a build that does not say so: its calls are taken once sent.
   */
  get acksCalls(): boolean {
    return this.#direct.acksCalls;
  }

  /**
   * limits.directStreams: passes a request to this worker process as an IPC call on a connection it holds; its reports
   * go to the sink `start` makes once it is sent, and `sink.lost()` if the process ends first. False when this process
   * takes no calls (the caller forwards the request over HTTP).
   */
  sendCall(msg: DirectCallMessage, start: () => DirectCallSink): boolean {
    return this.takesCalls && this.#direct.sendCall(msg, start);
  }

  /** The client connection `id` closed: the worker closes its duplicate. */
  closeConnection(id: number): void {
    this.#direct.closeConnection(id);
  }

  /**
   * A deadline passed (the master's shutdown, or `drain`: this old build's drain): this worker process ends every
   * answer in flight as failed (`shutting_down`), a stream with its final event, those it writes straight to clients
   * (limits.directStreams) too, whose framing only it knows; within CUT_GRACE_MS, normally a few ms. False when it
   * cannot be asked (a build from before `cut`, or a process gone): the master cuts them itself.
   */
  cutAnswers(reason?: 'drain'): boolean {
    return (this.#state === 'ready' || this.#state === 'draining') && this.#direct.cutAnswers(reason);
  }

  /** limits.directStreams: renews the write lease of the call on connection `conn` (shared/direct.ts), if kept. */
  renewLease(conn: number, writeBy: number): void {
    this.#direct.renewLease(conn, writeBy);
  }

  /** Takes the worker out of routing and kills it; its exit counts as a crash, so the supervisor replaces it. */
  markUnhealthy(reason: string): void {
    if (this.#state !== 'ready' && this.#state !== 'draining') return;
    this.#state = 'unhealthy';
    this.#log.error({ workerPid: this.pid, reason, misses: this.#probes.misses }, 'worker unhealthy, killing it');
    this.#kill('SIGKILL');
  }

  #kill(signal: NodeJS.Signals): void {
    const child = this.#child;
    // Never without a PID: a fork that made no process keeps a handle whose kill() signals PID 0, the master's own
    // process group (the master, every worker, and whatever shell started them).
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) child.kill(signal);
  }

  /** The worker's last answer to requestMetrics; the master keeps its counters once the process is gone. */
  get lastMetrics(): readonly unknown[] | undefined {
    return this.#probes.lastMetrics;
  }

  /** The counters and histograms of the worker's last health probe answer (2 s old at most, by default). */
  get lastCounters(): readonly unknown[] | undefined {
    return this.#probes.lastCounters;
  }

  /** Its metrics, or undefined without an answer within deadlineMs (a stuck worker must not stall a scrape). */
  requestMetrics(deadlineMs: number): Promise<unknown[] | undefined> {
    if (this.#state === 'stopped' || this.#state === 'crashed') return Promise.resolve(undefined);
    return this.#probes.requestMetrics(deadlineMs);
  }
}

/** Why a worker's `ready` fails its start: another protocol (a build of another release), or a shape not ours. */
function readyProblem(protocol: unknown): string {
  return typeof protocol === 'number' && protocol !== PROTOCOL_VERSION
    ? `worker speaks protocol ${protocol}, master ${PROTOCOL_VERSION}`
    : 'its ready message is malformed (a protocol number, an address {path} or {host, port})';
}
