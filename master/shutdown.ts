import { Server as NetServer } from 'node:net';
import { setTimeout as delay } from 'node:timers/promises';
import type { Server } from 'node:http';
import type { Logger } from '../shared/log.js';
import type { Supervisor } from './supervisor.js';

/** Requests in flight on the main port (the gateway): the thing shutdown waits for. */
export interface InflightRequests {
  readonly inflight: number;
  /** Requests arrived so far: one came if it moved. */
  readonly arrived: number;
  idle(): Promise<void>;
}

// SIGTERM/SIGINT (SPEC §10, STYLE §24): stop accepting, let in-flight requests
// and streams finish up to shutdownTimeoutMs (their responses carry
// `Connection: close`), close what connections remain, stop the workers, exit 0.
//
// A kept-alive connection with no request in flight is not closed at once: a client may have sent one that the
// master has not read yet, and closing would reset it unanswered (a POST a proxy in front cannot retry). Until no
// request has been in flight for IDLE_GRACE_MS, such a request is answered (503 shutting_down, `Connection: close`:
// SPEC's shutting_down); then the connections left close. The grace counts from the last answer, not the signal: a
// stream whose headers went out before the signal said nothing of closing, and its client sends the next request on
// that connection as soon as the stream ends (a probe's: 1–2 of 30 such POSTs reset when the master closed its
// connections one loop turn after the last stream). Admin calls are answered last: one waiting for workers (a
// deploy) ends when they stop.

/** How long kept-alive connections may still bring a request after the last answer, ms (at most shutdownTimeoutMs). */
const IDLE_GRACE_MS = 1000;

export interface ShutdownOptions {
  /** The main port's server. */
  main: Server;
  /** The admin port's server. */
  admin: Server;
  inflight: InflightRequests;
  /** Answers the requests still waiting for a worker slot (503 shutting_down): at the deadline, none will get one. */
  refuseQueued: () => void;
  supervisor: Supervisor;
  log: Logger;
  deadlineMs: number;
  /**
   * The deadline passed with requests in flight: the master cuts them now (their log lines say so). What it returns is
   * waited for before the connections close (answers their workers end: gateway.ts cutAll).
   */
  onDeadline?: () => Promise<void> | void;
}

export async function shutdown(options: ShutdownOptions): Promise<void> {
  const { main, admin, inflight, refuseQueued, supervisor, log, deadlineMs } = options;
  // Monotonic: a wall-clock step (NTP, a resumed VM) must not shorten or stretch the drain.
  const started = performance.now();
  // net's close: no new connections. http's would also close idle ones at once (Node ≥ 19). The admin port stays
  // open until the workers have stopped, as Envoy's admin interface does while it drains: status and /metrics are
  // what an operator watches a drain with (calls that change something are refused 503 shutting_down).
  NetServer.prototype.close.call(main);
  let deadline: NodeJS.Timeout | undefined;
  let cutting: Promise<void> = Promise.resolve();
  const timedOut = new Promise<void>((resolve) => {
    deadline = setTimeout(() => {
      // Reached in the grace after the last answer, it cuts nothing.
      if (inflight.inflight > 0) {
        log.warn({ deadlineMs, inflight: inflight.inflight }, 'shutdown deadline reached, cutting remaining requests');
        cutting = Promise.resolve(options.onDeadline?.());
      }
      resolve();
    }, deadlineMs);
  });
  // No connection open: none can bring a request, nothing to wait for.
  const open = await new Promise<number>((resolve) => main.getConnections((err, n) => resolve(err === null ? n : 1)));
  const graceMs = open === 0 ? 0 : Math.min(IDLE_GRACE_MS, deadlineMs);
  const quiet = new AbortController();
  await Promise.race([quietFor(inflight, graceMs, quiet.signal), timedOut]);
  quiet.abort();
  clearTimeout(deadline);
  // At the deadline, requests still queued are answered before their connections close (they were reset unanswered).
  refuseQueued();
  await new Promise((resolve) => setImmediate(resolve));
  // Answers their workers end (limits.directStreams) keep their connections until then. Those cut after it get their
  // FIN in the loop's next poll: closed before it (in this turn), a socket's pending shutdown(2) is cancelled, and a
  // connection whose worker still holds a duplicate (a stopped one) stays open under it.
  await cutting;
  await new Promise((resolve) => setImmediate(resolve));
  // Nothing is in flight: what remains is idle or never sent a whole request.
  main.closeAllConnections();
  admin.closeIdleConnections();
  log.info({ durationMs: Math.round(performance.now() - started) }, 'in-flight requests finished, stopping workers');
  const remainingMs = Math.max(1000, deadlineMs - (performance.now() - started));
  await supervisor.stopAll(remainingMs);
  // An admin call that waited for a worker (a deploy's new build) was answered as the workers stopped.
  await new Promise((resolve) => setImmediate(resolve));
  NetServer.prototype.close.call(admin);
  admin.closeAllConnections();
  log.info({ durationMs: Math.round(performance.now() - started) }, 'graygate stopped');
}

/**
 * Resolves once no request has been in flight, and none has arrived, for `ms`. Each open connection brings at most
 * one more request (answered 503 with `Connection: close`, and no new connection is accepted), so this ends.
 */
async function quietFor(inflight: InflightRequests, ms: number, signal: AbortSignal): Promise<void> {
  while (!signal.aborted) {
    await inflight.idle();
    const arrived = inflight.arrived;
    await delay(ms, undefined, { signal }).catch(() => undefined);
    if (inflight.inflight === 0 && inflight.arrived === arrived) return;
  }
}
