import type { ChildProcess } from 'node:child_process';
import type { Socket } from 'node:net';
import type { Logger } from '../shared/log.js';
import type { DirectCallMessage, DirectCallReport } from '../shared/direct.js';
import { ignoreSendError } from './worker-probes.js';
import { SlotTable } from './slot-table.js';

// limits.directStreams (issue 10, docs/ONE-HOP.md): what the master holds for one worker process to hand it client
// connections and pass it requests as IPC calls. The process's handle (worker-handle.ts) owns one, feeds it the
// process's messages, and ends it when the process is gone; only this file changes that state.

/** Where an IPC call's reports go (master/direct-calls.ts). */
export interface DirectCallSink {
  report(msg: DirectCallReport): void;
  /** The worker read the call (`calls-taken`, or a report's `isTaken`). */
  taken(): void;
  /** The worker process ended before the call's last report. */
  lost(): void;
}

/** How an offered connection ended: true, its duplicate reached the worker process (`conn-taken`); false, lost. */
export type ConnectionSettled = (isTaken: boolean) => void;

interface QueuedConnection {
  id: number;
  socket: Socket;
  onSettled: ConnectionSettled;
}

/** What a worker's `ready` said it takes (shared/ipc.ts). */
export interface DirectAbilities {
  takesConnections?: boolean;
  takesCalls?: boolean;
  acksCalls?: boolean;
  takesLeases?: boolean;
  takesCuts?: boolean;
}

/** At most one warn line this often for connections a worker could not take (its file limit). */
const LOST_LOG_INTERVAL_MS = 10_000;

export class WorkerDirect {
  readonly #log: Logger;
  #child: ChildProcess | undefined;
  /** This worker process said it takes client connections (an older build would exit). */
  #takesConnections = false;
  /** The connection whose descriptor was sent and not yet taken (0: none). */
  #connectionInFlight = 0;
  /** Connections lost at the worker's file limit since the last warn line, and when that was (performance.now()). */
  #lostUnlogged = 0;
  #lostLoggedAtMs = -Infinity;
  /** Connections offered to this worker process, waiting for their turn (one at a time). */
  #connectionQueue: QueuedConnection[] = [];
  /** Told when the connection in flight has been taken, or lost. */
  #onConnectionSettled: ConnectionSettled | undefined = undefined;
  /** Lets the descriptor in flight close (holdOpen): its message was written, or this worker is gone. */
  #releaseInFlight: (() => void) | undefined = undefined;
  /** This worker process answers requests passed as IPC calls. */
  #takesCalls = false;
  /** … and reports each one taken before it runs it (`calls-taken`, or `call-report` isTaken from older builds). */
  #acksCalls = false;
  /** … and keeps write leases (shared/direct.ts): it takes `call-lease` (an older build would exit on it). */
  #takesLeases = false;
  /** … takes `cut` (an older build would exit on it), and was sent it. */
  #takesCuts = false;
  #isCut = false;
  /** IPC calls in this worker process, by id: where their reports go (slot-table.ts: not a Map). */
  readonly #calls = new SlotTable<DirectCallSink>();

  constructor(log: Logger) {
    this.#log = log;
  }

  /** The forked process: its node-internal messages tell of a descriptor that did not arrive. */
  attach(child: ChildProcess): void {
    this.#child = child;
    child.on('internalMessage', this.#onInternalMessage);
  }

  /** What its `ready` said. */
  onReady(abilities: DirectAbilities): void {
    this.#takesConnections = abilities.takesConnections === true;
    this.#takesCalls = this.#takesConnections && abilities.takesCalls === true;
    this.#acksCalls = abilities.acksCalls === true;
    this.#takesLeases = this.#takesCalls && abilities.takesLeases === true;
    this.#takesCuts = abilities.takesCuts === true;
  }

  /** See WorkerHandle.offerConnection; the handle checks that the worker is ready. */
  offerConnection(id: number, socket: Socket, onSettled: ConnectionSettled): boolean {
    if (!this.#takesConnections || this.#child === undefined || !this.#child.connected) return false;
    this.#connectionQueue.push({ id, socket, onSettled });
    this.#sendNextConnection();
    return true;
  }

  /** Its `conn-taken`. */
  onConnectionTaken(id: number): void {
    if (this.#connectionInFlight === id) this.#settleConnection(true);
  }

  /** A `call-report`. */
  onCallReport(msg: DirectCallReport): void {
    const sink = this.#calls.get(msg.id);
    if (sink === undefined) return;
    sink.report(msg);
    // After the report: one that throws leaves its call here, to be lost when the worker it replaces exits.
    if (msg.isEnd === true) this.#calls.delete(msg.id);
  }

  /** A `calls-taken`. */
  onCallsTaken(ids: readonly number[]): void {
    for (const id of ids) this.#calls.get(id)?.taken();
  }

  /** Its `ready` said it answers IPC calls (the handle adds: and it is ready). */
  get takesCalls(): boolean {
    return this.#takesCalls;
  }

  /** See WorkerHandle.acksCalls. */
  get acksCalls(): boolean {
    return this.#acksCalls;
  }

  /** See WorkerHandle.sendCall; the handle checks that it takes calls now. The call's id is given here. */
  sendCall(msg: DirectCallMessage, start: () => DirectCallSink): boolean {
    const child = this.#child;
    if (child === undefined || !child.connected) return false;
    const id = this.#calls.open();
    msg.id = id;
    try {
      child.send(msg, undefined, undefined, ignoreSendError);
      // Reports arrive in a later turn, read from the channel: the sink is in place by then.
      this.#calls.set(id, start());
    } catch (err) {
      this.#calls.delete(id); // a message node could not serialise, or a call that could not start: no sink
      throw err;
    }
    return true;
  }

  /** See WorkerHandle.renewLease. */
  renewLease(conn: number, writeBy: number): void {
    const child = this.#child;
    if (!this.#takesLeases || child === undefined || !child.connected) return;
    child.send({ type: 'call-lease', conn, writeBy }, undefined, undefined, ignoreSendError);
  }

  /** See WorkerHandle.cutAnswers. */
  cutAnswers(reason?: 'drain'): boolean {
    const child = this.#child;
    if (!this.#takesCuts || child === undefined || !child.connected) return false;
    if (!this.#isCut)
      child.send({ type: 'cut', ...(reason === undefined ? {} : { reason }) }, undefined, undefined, ignoreSendError);
    this.#isCut = true;
    return true;
  }

  /** The client connection `id` closed: the worker closes its duplicate. */
  closeConnection(id: number): void {
    const child = this.#child;
    if (child === undefined || !child.connected) return;
    child.send({ type: 'conn-close', id }, undefined, undefined, ignoreSendError);
  }

  /**
   * The process is gone (its channel read to the end): its calls are lost (told in no particular order), and the
   * connections still waiting to be sent never will be (a client connection may keep the handle for its life).
   */
  end(): void {
    for (const sink of this.#calls.clear()) sink.lost();
    this.#connectionQueue = [];
    this.#connectionInFlight = 0;
    this.#onConnectionSettled = undefined;
    this.#releaseInFlight?.();
    this.#releaseInFlight = undefined;
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
    // At most one line every LOST_LOG_INTERVAL_MS: at its file limit a worker loses every connection offered (a probe:
    // 154 lines in a burst), and each is still served through the master.
    this.#lostUnlogged++;
    if (performance.now() - this.#lostLoggedAtMs >= LOST_LOG_INTERVAL_MS) {
      this.#log.warn(
        { workerPid: this.#child?.pid, conn: this.#connectionInFlight, sinceLastLine: this.#lostUnlogged },
        'a connection did not reach the worker (its file limit?): its answers go through the master',
      );
      this.#lostUnlogged = 0;
      this.#lostLoggedAtMs = performance.now();
    }
    this.#settleConnection(false);
  };
}

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
