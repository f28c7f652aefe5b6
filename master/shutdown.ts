import type { Server } from 'node:http';
import type { Logger } from '../shared/log.js';
import type { Supervisor } from './supervisor.js';

// SIGTERM/SIGINT (SPEC §10, STYLE §24): stop accepting, let in-flight requests
// and streams finish up to shutdownTimeoutMs (their responses carry
// `Connection: close`), then stop the workers and exit 0.

export interface ShutdownOptions {
  servers: readonly Server[];
  /** The main server: its in-flight requests are waited for. */
  main: Server;
  supervisor: Supervisor;
  log: Logger;
  deadlineMs: number;
}

export async function shutdown(options: ShutdownOptions): Promise<void> {
  const { main, supervisor, log, deadlineMs } = options;
  const started = Date.now();
  const drained = new Promise<void>((resolve) => main.close(() => resolve()));
  for (const server of options.servers) if (server !== main) server.close();
  for (const server of options.servers) server.closeIdleConnections();
  let deadline: NodeJS.Timeout | undefined;
  const timedOut = new Promise<void>((resolve) => {
    deadline = setTimeout(() => {
      log.warn({ deadlineMs }, 'shutdown deadline reached, closing remaining connections');
      for (const server of options.servers) server.closeAllConnections();
      resolve();
    }, deadlineMs);
  });
  await Promise.race([drained, timedOut]);
  clearTimeout(deadline);
  const remainingMs = Math.max(1000, deadlineMs - (Date.now() - started));
  await supervisor.stopAll(remainingMs);
  log.info({ durationMs: Date.now() - started }, 'graygate stopped');
}
