import { Server as NetServer } from 'node:net';
import type { Server } from 'node:http';
import type { Logger } from '../shared/log.js';
import type { Supervisor } from './supervisor.js';

/** Requests in flight on the main port (the gateway): the thing shutdown waits for. */
export interface InflightRequests {
  readonly inflight: number;
  idle(): Promise<void>;
}

// SIGTERM/SIGINT (SPEC §10, STYLE §24): stop accepting, let in-flight requests
// and streams finish up to shutdownTimeoutMs (their responses carry
// `Connection: close`), close what connections remain, stop the workers, exit 0.
//
// A kept-alive connection with no request in flight is not closed at once: a client may have sent one that the
// master has not read yet, and closing would reset it unanswered (a POST a proxy in front cannot retry). Until the
// requests in flight are done, and for IDLE_GRACE_MS at least, such a request is answered (503 shutting_down,
// `Connection: close`: SPEC's shutting_down); then the connections left close. Admin calls are answered last: one
// waiting for workers (a deploy) ends when they stop.

/** How long kept-alive connections may still bring a request after the signal, ms (at most shutdownTimeoutMs). */
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
}

export async function shutdown(options: ShutdownOptions): Promise<void> {
  const { main, admin, inflight, refuseQueued, supervisor, log, deadlineMs } = options;
  // Monotonic: a wall-clock step (NTP, a resumed VM) must not shorten or stretch the drain.
  const started = performance.now();
  // net's close: no new connections. http's would also close idle ones at once (Node ≥ 19).
  for (const server of [main, admin]) NetServer.prototype.close.call(server);
  let deadline: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => {
    deadline = setTimeout(() => {
      log.warn({ deadlineMs, inflight: inflight.inflight }, 'shutdown deadline reached, cutting remaining requests');
      resolve();
    }, deadlineMs);
  });
  // No connection open: none can bring a request, nothing to wait for.
  const open = await new Promise<number>((resolve) => main.getConnections((err, n) => resolve(err === null ? n : 1)));
  const graceMs = open === 0 ? 0 : Math.min(IDLE_GRACE_MS, deadlineMs);
  const grace = new Promise<void>((resolve) => setTimeout(resolve, graceMs));
  await Promise.race([Promise.all([grace, inflight.idle()]), timedOut]);
  clearTimeout(deadline);
  // At the deadline, requests still queued are answered before their connections close (they were reset unanswered).
  refuseQueued();
  await new Promise((resolve) => setImmediate(resolve));
  // Nothing is in flight: what remains is idle or never sent a whole request.
  main.closeAllConnections();
  admin.closeIdleConnections();
  log.info({ durationMs: Math.round(performance.now() - started) }, 'in-flight requests finished, stopping workers');
  const remainingMs = Math.max(1000, deadlineMs - (performance.now() - started));
  await supervisor.stopAll(remainingMs);
  // An admin call that waited for a worker (a deploy's new build) was answered as the workers stopped.
  await new Promise((resolve) => setImmediate(resolve));
  admin.closeAllConnections();
  log.info({ durationMs: Math.round(performance.now() - started) }, 'graygate stopped');
}
