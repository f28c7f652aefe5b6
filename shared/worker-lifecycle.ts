import type { Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { once } from 'node:events';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { Logger } from './log.js';
import { PROTOCOL_VERSION, assertNever, isMasterToWorker, type WorkerAddress, type WorkerToMaster } from './ipc.js';
import { DEADLINE_CUT_MESSAGE, DRAIN_CUT_MESSAGE, serializeError } from './errors.js';
import type { DirectCallMessage, DirectCallReport } from './direct.js';
import { LISTEN_BACKLOG } from './defaults.js';
import { LOOP_DELAY_RESOLUTION_MS } from './metric-names.js';

// The worker half of the master's handshake (STYLE §21–§23), shared by the real
// worker and by test builds so both behave alike towards the master: listen on
// 127.0.0.1:0, report `ready` with the address, drain and exit 0 on `shutdown`,
// exit when the IPC channel drops (the master is gone).

export interface WorkerLifecycleOptions {
  server: Server;
  log: Logger;
  /**
   * Keep-alive idle timeout of the worker's server; above the master agent's so
   * the master never reuses a socket the worker is closing. Default 65 s.
   */
  keepAliveTimeoutMs?: number;
  /** Answers the master's metrics request (SPEC §9). Absent: an empty list. */
  collectMetrics?: () => Promise<unknown[]>;
  /** The counters and histograms each health probe's answer carries (WorkerMetrics.collectCounters). Absent: none. */
  collectCounters?: () => Promise<unknown[]>;
  /** Called once when draining starts, before the server closes: abort long work here if needed. */
  onDrain?: () => void;
  /**
   * End every answer in flight now as failed (`shutting_down`, with `message`), so that a stream ends with its final
   * event rather than cut: at the master's shutdown deadline (IPC `cut`; answers written straight to clients, which
   * only this process can end so), and at this worker's own drain deadline, before its connections close. Absent: the
   * master cuts the former; the latter are cut.
   */
  cut?: (message: string) => void;
  /** Listen on this unix socket (WorkerSettings.socketPath); absent: 127.0.0.1 on a free port. */
  socketPath?: string | undefined;
  /**
   * A client connection's descriptor from the master (limits.directStreams) and its close. Absent: the handle is
   * closed at once, and requests naming it are answered through the master as usual.
   */
  connections?: {
    add(id: number, handle: object): void;
    remove(id: number): void;
    /** The master is gone: closes the connections no answer is being written to (worker/direct/connections.ts). */
    closeIdle?(): void;
  };
  /**
   * Requests passed as IPC `call` messages on those connections (limits.directStreams), answered straight to the
   * client; `idle` resolves when none is in flight (a drain waits for them as for the server's). Absent: the master
   * sends none.
   */
  calls?: DirectCalls;
  /**
   * The master reads `calls-taken` (WorkerSettings.readsCallsTaken): the calls read in one turn are reported taken in
   * one message. Absent or false: one `call-report` `isTaken` a call, as a master from before reads.
   */
  masterReadsCallsTaken?: boolean;
  /**
   * The master takes this worker's SIGTERM over once it is ready (WorkerSettings.takesSignals): the worker tells it
   * and serves on until its `shutdown`. Absent or false: a SIGTERM drains it at once, up to 5 s.
   */
  masterTakesSignals?: boolean;
  /** How long a SIGTERM told to the master waits for its answer before the worker drains on its own, ms (5 s). */
  signalAnswerMs?: number;
}

/** At a drain's deadline, how long the answers in flight have to end as failed ones before their connections close. */
const CUT_WAIT_MS = 1000;
/** A worker's own drain deadline after SIGTERM when no master takes the signal over, ms. */
const OWN_DRAIN_MS = 5000;

/** A worker's side of IPC calls (limits.directStreams; worker/server.ts). */
export interface DirectCalls {
  /** Answers the call straight to the client; `report` tells the master how it goes. */
  open(msg: DirectCallMessage, report: (msg: DirectCallReport) => void): void;
  /** Resolves once no call is in flight. */
  idle(): Promise<void>;
  /** IPC `call-lease`: the write lease of the call on connection `conn` runs to `writeBy` (shared/direct.ts). */
  lease?(conn: number, writeBy: number): void;
}

/** What child_process hands over for a socket sent as a raw handle: closable. */
interface RawHandle {
  close(): void;
}

// A worker whose master dies before runWorker is reached (still loading, or
// awaiting its upstream) must not live on alone. Registered at import, which
// happens before the entry's own code runs; runWorker takes over afterwards.
let isLifecycleRunning = false;
if (process.send !== undefined) {
  if (!process.connected) process.exit(0);
  process.once('disconnect', () => {
    if (!isLifecycleRunning) process.exit(0);
  });
}

function send(msg: WorkerToMaster): void {
  if (process.connected) process.send?.(msg);
}

/**
 * Sends `msg`, then calls `then(true)` once it is written to the channel: from then on the master reads it, whenever
 * this process ends (node calls back on the next tick when the write went through, as it almost always does, else when
 * the backed-up channel took it); `then(false)` when the channel is closed or the write failed at once. A held write
 * that never completes is also reported done (node passes no error then), but only once the master's end is gone:
 * no master is left to send the message's call anywhere else.
 */
function sendThen(msg: WorkerToMaster, then: (isSent: boolean) => void): void {
  if (!process.connected || process.send === undefined) return then(false);
  process.send(msg, undefined, undefined, (err: Error | null) => then(err === null));
}

/**
 * This process's resident set size, bytes, for the master's health probe; the last one read when it cannot be read now
 * (uv_resident_set_memory opens /proc/self/stat: at the descriptor limit it throws EMFILE, which killed the worker and
 * every stream on it).
 */
function residentBytes(): number {
  try {
    lastResidentBytes = process.memoryUsage.rss();
  } catch {
    // at the file limit: the last reading stands
  }
  return lastResidentBytes;
}

let lastResidentBytes = 0;

export async function runWorker(options: WorkerLifecycleOptions): Promise<void> {
  const { server, log } = options;
  isLifecycleRunning = true;
  server.keepAliveTimeout = options.keepAliveTimeoutMs ?? 65_000;
  server.headersTimeout = Math.max(server.headersTimeout, server.keepAliveTimeout + 1000);

  // Event-loop delay between two health probes, reported in `pong` (issue 9 part 3):
  // a worker stalled by a huge body or a sync loop shows up even if it recovers.
  const loopDelay = monitorEventLoopDelay({ resolution: LOOP_DELAY_RESOLUTION_MS });
  loopDelay.enable();

  let isDraining = false;
  /** `ready` sent: from then on a SIGTERM is the master's to act on (masterTakesSignals). */
  let isReady = false;
  /** Set once a SIGTERM was told to the master: it drains this worker if the master does not answer. */
  let signalTimer: NodeJS.Timeout | undefined;
  /** IPC calls read whose `calls-taken` (or `isTaken`) is queued or being written: in flight for a drain. */
  let callsBeingTaken = 0;
  let onCallsTaken: (() => void) | undefined;
  const callTaken = (isSent: boolean, msg: DirectCallMessage, calls: DirectCalls): void => {
    if (isSent) calls.open(msg, send);
    if (--callsBeingTaken === 0) onCallsTaken?.();
  };
  // The calls read in this turn: node emits every message of one read of the channel, each on its own tick, before a
  // tick queued by the first of them runs, so one `calls-taken` covers them all (~7 calls a read under load).
  let callsRead: DirectCallMessage[] = [];
  const reportCallsTaken = (calls: DirectCalls): void => {
    const batch = callsRead;
    callsRead = [];
    sendThen({ type: 'calls-taken', ids: batch.map((msg) => msg.id) }, (isSent) => {
      for (const msg of batch) callTaken(isSent, msg, calls);
    });
  };
  const allCallsTaken = (): Promise<void> =>
    callsBeingTaken === 0 ? Promise.resolve() : new Promise((resolve) => (onCallsTaken = resolve));
  const drain = (deadlineMs: number, reason: string): void => {
    if (isDraining) return;
    isDraining = true;
    clearTimeout(signalTimer);
    log.info({ deadlineMs, reason }, 'worker draining');
    options.onDrain?.();
    const closeAll = (): void => {
      server.closeAllConnections();
      process.exit(0);
    };
    const deadline = setTimeout(() => {
      if (options.cut === undefined) {
        log.warn('shutdown deadline reached, closing remaining connections');
        return closeAll();
      }
      // Their streams' final events first (what the master writes for those it relays at its own deadline); the
      // drain's `server.close` callback exits once they have ended, or this does.
      log.warn('shutdown deadline reached, ending the answers in flight, then closing remaining connections');
      options.cut(DRAIN_CUT_MESSAGE);
      setTimeout(closeAll, CUT_WAIT_MS).unref();
    }, deadlineMs);
    deadline.unref();
    server.close(() => {
      void allCallsTaken()
        .then(() => options.calls?.idle())
        .then(() => process.exit(0));
    });
    server.closeIdleConnections();
  };

  process.on('message', (msg: unknown, handle: unknown) => {
    if (!isMasterToWorker(msg)) {
      // STYLE §19: the worker treats an unknown message as a protocol error.
      log.error({ msg }, 'protocol error: unknown message from master');
      send({ type: 'fatal', error: { code: 'protocol_error', message: 'unknown message from master' } });
      process.exit(70);
    }
    switch (msg.type) {
      case 'shutdown':
        drain(msg.deadlineMs, 'master');
        break;
      case 'cut':
        log.warn({ reason: msg.reason ?? 'shutdown' }, 'a deadline passed: ending the answers in flight');
        options.cut?.(msg.reason === 'drain' ? DRAIN_CUT_MESSAGE : DEADLINE_CUT_MESSAGE);
        break;
      case 'signal-taken':
        // Too late when this worker drains already (no answer came in OWN_DRAIN_MS): its own drain goes on.
        if (isDraining) break;
        clearTimeout(signalTimer);
        log.info('SIGTERM taken over by the master: serving until it says to drain');
        break;
      case 'ping': {
        // The longest interval between two samples, less the interval itself: 0 when idle.
        const eventLoopDelayMs = loopDelay.count > 0 ? Math.max(0, loopDelay.max / 1e6 - LOOP_DELAY_RESOLUTION_MS) : 0;
        loopDelay.reset();
        const pong = { type: 'pong', replyTo: msg.id, rssBytes: residentBytes(), eventLoopDelayMs } as const;
        // Collected and sent in this same turn (collectCounters waits on no I/O; the JSON is made by send), so answers
        // go in the order their values were read.
        if (options.collectCounters === undefined) send(pong);
        else
          options.collectCounters().then(
            (counters) => send({ ...pong, counters }),
            () => send(pong),
          );
        break;
      }
      case 'metrics': {
        const collect = options.collectMetrics ?? (async () => []);
        collect().then(
          (metrics) => send({ type: 'metrics', replyTo: msg.id, metrics }),
          (err: unknown) => log.error({ err }, 'metrics collection failed'),
        );
        break;
      }
      case 'conn':
        send({ type: 'conn-taken', id: msg.id });
        if (typeof handle !== 'object' || handle === null) break;
        if (options.connections === undefined || isDraining) (handle as RawHandle).close();
        else options.connections.add(msg.id, handle);
        break;
      case 'conn-close':
        options.connections?.remove(msg.id);
        break;
      case 'call-lease':
        options.calls?.lease?.(msg.conn, msg.writeBy);
        break;
      case 'call': {
        const calls = options.calls;
        if (calls === undefined) {
          send({ type: 'call-report', id: msg.id, marks: '', isEnd: true });
          break;
        }
        // Reported taken, and run only once that report is in the channel: a call the master never heard taken when
        // this process ends never ran here, and the master sends it to another worker (master/direct-calls.ts), as
        // nginx passes a request no upstream got to the next one.
        callsBeingTaken++;
        if (options.masterReadsCallsTaken === true) {
          if (callsRead.push(msg) === 1) process.nextTick(reportCallsTaken, calls);
        } else {
          sendThen({ type: 'call-report', id: msg.id, marks: '', isTaken: true }, (isSent) =>
            callTaken(isSent, msg, calls),
          );
        }
        break;
      }
      default:
        assertNever(msg);
    }
  });
  // A message written after the master died and before this process read the channel's end (its loop busy, or not
  // scheduled, when the master went) fails with EPIPE, which node emits here, not to `send`: with no listener it was
  // an uncaught exception, and the worker died with the answers it writes straight to clients (limits.directStreams)
  // cut, where 'disconnect' (next) lets them end. `process.connected` is already false for the messages after it.
  process.on('error', (err) => log.debug({ err }, 'IPC write failed (the master is gone)'));
  // STYLE §23: a worker whose master is gone exits instead of serving alone.
  process.on('disconnect', () => {
    log.warn('IPC channel closed, exiting');
    // No master reads the client connections this process holds (limits.directStreams): idle ones close now.
    options.connections?.closeIdle?.();
    drain(5000, 'disconnect');
  });
  // A ready worker's SIGTERM is its master's to act on (WorkerSettings.takesSignals): sent to the whole process group
  // (systemd's default KillMode, `kill -- -PGID`) it reaches the master too, whose drain gives streams its whole
  // shutdownTimeoutMs; sent to this worker alone, the master starts a replacement and drains this one as it drains an
  // old build (limits.drainTimeoutMs), so nothing is refused meanwhile. A master that does not answer within
  // OWN_DRAIN_MS, a second SIGTERM, or a worker not ready yet: it drains on its own, as before.
  process.on('SIGTERM', () => {
    if (isDraining) return;
    if (options.masterTakesSignals !== true || !isReady || signalTimer !== undefined || !process.connected)
      return drain(OWN_DRAIN_MS, 'SIGTERM');
    send({ type: 'signal', signal: 'SIGTERM' });
    signalTimer = setTimeout(() => drain(OWN_DRAIN_MS, 'SIGTERM'), options.signalAnswerMs ?? OWN_DRAIN_MS);
  });
  // Ctrl-C and a terminal hangup reach the whole process group; the master
  // decides when workers drain, so they ignore both.
  process.on('SIGINT', () => undefined);
  process.on('SIGHUP', () => undefined);
  process.on('uncaughtException', (err) => {
    send({ type: 'fatal', error: serializeError(err) });
    log.fatal({ err }, 'uncaught exception');
    process.exit(1);
  });

  if (options.socketPath !== undefined) server.listen({ path: options.socketPath, backlog: LISTEN_BACKLOG });
  else server.listen({ port: 0, host: '127.0.0.1', backlog: LISTEN_BACKLOG });
  await once(server, 'listening');
  // After listening, only an accept can fail (EMFILE past libuv's reserve descriptor): the connection is lost, the
  // worker and its streams are not.
  server.on('error', (err) => log.error({ err }, 'accepting a connection failed'));
  const address = server.address();
  const reported: WorkerAddress =
    typeof address === 'string'
      ? { path: address }
      : { host: (address as AddressInfo).address, port: (address as AddressInfo).port };
  isReady = true;
  send({
    type: 'ready',
    protocol: PROTOCOL_VERSION,
    pid: process.pid,
    address: reported,
    ...(options.connections === undefined ? {} : { takesConnections: true }),
    ...(options.connections === undefined || options.calls === undefined ? {} : { takesCalls: true, acksCalls: true }),
    ...(options.calls?.lease === undefined ? {} : { takesLeases: true }),
    ...(options.cut === undefined ? {} : { takesCuts: true }),
  });
  log.info({ address: reported }, 'worker ready');
}
