import type { ChildProcess } from 'node:child_process';
import { performance } from 'node:perf_hooks';
import type { WorkerToMaster } from '../shared/ipc.js';

// What the master asks one worker process over IPC and pairs with its answers by id (STYLE §18): health probes
// (SPEC §4a, issue 9 part 3; a worker that stops answering — SIGSTOP, an endless loop, a deadlock on a sync call —
// still holds its sockets open and would hang every request sent to it), the signs of life a request's slot waits for,
// and metrics (SPEC §9). The process's handle (worker-handle.ts) owns one and decides when to ask; only this file
// changes what the answers said.

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

/** IPC sends to a worker that is exiting fail; its own exit handling reports that. */
export function ignoreSendError(): void {}

export class WorkerProbes {
  #child: ChildProcess | undefined;
  readonly #health: WorkerHealth = { misses: 0, rssBytes: 0, eventLoopDelayMs: 0, probeRoundTripMs: 0 };
  #pendingProbe = 0;
  #probeSentAtMs = 0;
  /** Pings' ids, health probes' and signs of life's alike: a pong answers every ping up to its own. */
  #nextProbeId = 1;
  /** waitForLife's callbacks, by the id of the ping sent for each (ids rise: the map is in their order). */
  readonly #lifeWaiters = new Map<number, () => void>();
  readonly #metricsWaiters = new Map<number, (metrics: unknown[] | undefined) => void>();
  #nextMetricsId = 1;
  #lastMetrics: unknown[] | undefined;
  #lastCounters: unknown[] | undefined;

  attach(child: ChildProcess): void {
    this.#child = child;
  }

  get health(): WorkerHealth {
    return { ...this.#health };
  }

  /** Health probes missed in a row right now. */
  get misses(): number {
    return this.#health.misses;
  }

  /**
   * One health probe tick (the handle probes only ready and draining workers): counts a miss if the previous probe is
   * still unanswered, then sends the next. Returns the ticks in a row with no answer to any probe.
   */
  probe(nowMs: number): number {
    const child = this.#child;
    if (child === undefined || !child.connected) return 0;
    if (this.#pendingProbe !== 0) this.#health.misses++;
    this.#pendingProbe = this.#nextProbeId++;
    this.#probeSentAtMs = nowMs;
    // A worker just killed may not have been heard to disconnect yet: the send fails (EPIPE) and its exit says why.
    child.send({ type: 'ping', id: this.#pendingProbe }, undefined, undefined, ignoreSendError);
    return this.#health.misses;
  }

  /**
   * Sends a ping whose answer calls `callback` (WorkerHandle.afterSignOfLife), or calls it when the process ends
   * (end). False when its channel is closed: nothing was sent, and only the process's end will call back.
   */
  waitForLife(callback: () => void): boolean {
    const id = this.#nextProbeId++;
    this.#lifeWaiters.set(id, callback);
    const child = this.#child;
    if (child === undefined || !child.connected) return false;
    child.send({ type: 'ping', id }, undefined, undefined, ignoreSendError);
    return true;
  }

  onPong(msg: Extract<WorkerToMaster, { type: 'pong' }>): void {
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

  /** The worker's last answer to requestMetrics; the master keeps its counters once the process is gone. */
  get lastMetrics(): readonly unknown[] | undefined {
    return this.#lastMetrics;
  }

  /** The counters and histograms of the worker's last health probe answer (2 s old at most, by default). */
  get lastCounters(): readonly unknown[] | undefined {
    return this.#lastCounters;
  }

  /** Its metrics, or undefined if it does not answer within deadlineMs (a stuck worker must not stall /metrics). */
  requestMetrics(deadlineMs: number): Promise<unknown[] | undefined> {
    const child = this.#child;
    if (child === undefined || !child.connected) return Promise.resolve(undefined);
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

  onMetrics(msg: Extract<WorkerToMaster, { type: 'metrics' }>): void {
    this.#metricsWaiters.get(msg.replyTo)?.(msg.metrics);
  }

  /**
   * The process is gone: no probe is out, metrics asked for are answered with nothing, and the signs of life waited
   * for are returned, for the handle to call once the registry has heard of the exit.
   */
  end(): Array<() => void> {
    this.#pendingProbe = 0;
    for (const pending of this.#metricsWaiters.values()) pending(undefined);
    this.#metricsWaiters.clear();
    const waiting = [...this.#lifeWaiters.values()];
    this.#lifeWaiters.clear();
    return waiting;
  }
}
