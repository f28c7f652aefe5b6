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

export interface ShutdownOptions {
  servers: readonly Server[];
  inflight: InflightRequests;
  supervisor: Supervisor;
  log: Logger;
  deadlineMs: number;
}

export async function shutdown(options: ShutdownOptions): Promise<void> {
  const { servers, inflight, supervisor, log, deadlineMs } = options;
  const started = Date.now();
  for (const server of servers) {
    server.close();
    server.closeIdleConnections();
  }
  let deadline: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => {
    deadline = setTimeout(() => {
      log.warn({ deadlineMs, inflight: inflight.inflight }, 'shutdown deadline reached, cutting remaining requests');
      resolve();
    }, deadlineMs);
  });
  await Promise.race([inflight.idle(), timedOut]);
  clearTimeout(deadline);
  // Nothing is in flight: what remains is idle or never sent a request.
  for (const server of servers) server.closeAllConnections();
  log.info({ durationMs: Date.now() - started }, 'in-flight requests finished, stopping workers');
  const remainingMs = Math.max(1000, deadlineMs - (Date.now() - started));
  await supervisor.stopAll(remainingMs);
  log.info({ durationMs: Date.now() - started }, 'graygate stopped');
}
