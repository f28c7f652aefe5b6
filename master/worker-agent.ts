import { Agent } from 'node:http';

export interface WorkerAgentOptions {
  /**
   * Concurrent requests to the worker (SPEC §4 maxSocketsPerWorker). A stream
   * holds its socket for its whole life, so this is a concurrency limit, not an
   * idle cap. Admission never lets more requests through, so the agent's own
   * unbounded `requests` queue stays empty.
   */
  maxSockets: number;
  /** Idle keep-alive sockets kept to the worker, like nginx's `keepalive` (SPEC §4). */
  maxIdleSockets: number;
}

/** The keep-alive agent master → one worker. Without it http-proxy-3 sends `Connection: close`. */
export function createWorkerAgent(options: WorkerAgentOptions): Agent {
  return new Agent({
    keepAlive: true,
    maxSockets: options.maxSockets,
    maxFreeSockets: options.maxIdleSockets,
    // LIFO reuses warm sockets and lets the surplus idle ones time out.
    scheduling: 'lifo',
  });
}
