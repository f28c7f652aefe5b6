import type { AgentOptions, ClientRequest } from 'node:http';
import { Agent, type AgentConnectionOptions, type AgentInternals } from '../shared/node-http.js';

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

const NodeAgent = Agent as unknown as new (options: AgentOptions) => Agent & AgentInternals;

/**
 * node's Agent, handed only the options that pick or open a connection. node:http gives an agent the whole request's
 * options, which from http-proxy-3 are 17 (its TLS fields among them, undefined) and copies them with the agent's own
 * into a new null-prototype object for every request, property by property: 5.5 % of the master's CPU under small
 * requests (docs/BENCHMARKS.md, "The agent's per-request copy"). The rest of them (method, path, headers) the
 * ClientRequest has already taken. No TLS to a worker: no server name to work out from the Host header.
 */
class WorkerAgent extends NodeAgent {
  override addRequest(req: ClientRequest, options: AgentConnectionOptions): void {
    super.addRequest(req, {
      host: options.host,
      port: options.port,
      socketPath: options.socketPath,
      localAddress: options.localAddress,
      family: options.family,
      servername: '',
    });
  }
}

/** The keep-alive agent master → one worker. Without it http-proxy-3 sends `Connection: close`. */
export function createWorkerAgent(options: WorkerAgentOptions): Agent {
  return new WorkerAgent({
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
