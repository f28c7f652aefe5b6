import { Agent } from '../shared/node-http.js';

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

/**
 * Idle keep-alive sockets are closed by the master after this long, before the
 * worker's own keepAliveTimeout (65 s, shared/worker-lifecycle.ts) would close
 * them, so the master never writes a request onto a socket the worker is
 * closing. The agent would learn this from the worker's `Keep-Alive: timeout`
 * hint, but proxy.ts strips that hop-by-hop header from the response first.
 */
const WORKER_IDLE_SOCKET_TIMEOUT_MS = 60_000;

/** The keep-alive agent master → one worker. Without it http-proxy-3 sends `Connection: close`. */
export function createWorkerAgent(options: WorkerAgentOptions): Agent {
  return new Agent({
    keepAlive: true,
    maxSockets: options.maxSockets,
    maxFreeSockets: options.maxIdleSockets,
    // LIFO reuses warm sockets and lets the surplus idle ones time out.
    scheduling: 'lifo',
    // Applies to free sockets (the agent destroys them on timeout); on a busy
    // socket it only emits 'timeout', which nothing acts on, so silent streams live on.
    timeout: WORKER_IDLE_SOCKET_TIMEOUT_MS,
  });
}
