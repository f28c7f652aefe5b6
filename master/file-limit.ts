import { readFileSync } from 'node:fs';
import type { Config } from '../shared/config.js';

// A master under a low open-file limit (systemd's LimitNOFILE, docker's --ulimit nofile) reset connections past it
// without a line (libuv refuses them itself), and a worker could not be forked (EMFILE) while clients held every
// descriptor: connections a client opened and left silent, up to headTimeoutMs each, were enough to keep a crashed
// worker down. nginx bounds its connections (worker_connections) and warns at start when they exceed the limit; so
// does graygate: by default the main port holds no more connections than the limit leaves room for with every one of
// them in a request (limits.maxClientConnections), from the limit Linux reports (elsewhere, no bound).

/** Descriptors the master keeps beside its connections: ports, logs, files, a fork's pipes while it starts. */
const OWN_DESCRIPTORS = 64;

/** The master's descriptors for each worker process: its stdio pipes and IPC channel (measured: 3). */
const PER_WORKER_DESCRIPTORS = 4;

/** Connections the admin port holds at once (its server's maxConnections): reserved beside the main port's. */
export const ADMIN_MAX_CONNECTIONS = 64;

/**
 * Connections the main port accepts past its bound, each answered `503 too_many_connections` (health paths are
 * answered) and closed: a client, or a kubelet's probe, learns why instead of being reset. Past these, Node closes a
 * connection as it accepts it.
 */
export const OVER_BOUND_CONNECTIONS = 32;

/** This process's soft limit of open files, as /proc/self/limits says; undefined where there is none to read. */
export function openFileLimit(limitsText = readLimits()): number | undefined {
  const line = limitsText?.split('\n').find((l) => l.startsWith('Max open files'));
  const soft = line?.slice('Max open files'.length).trim().split(/\s+/)[0];
  return soft === undefined || !/^\d+$/.test(soft) ? undefined : Number(soft);
}

function readLimits(): string | undefined {
  try {
    return readFileSync('/proc/self/limits', 'utf8');
  } catch {
    return undefined;
  }
}

/** Worker processes of a config's versions. */
function workerCount(config: Pick<Config, 'versions'>): number {
  return Object.values(config.versions).reduce((sum, v) => sum + v.instances, 0);
}

/**
 * Client connections the master can hold under this open-file limit, each with a request in flight: one descriptor for
 * the client's connection and one for its worker's (a connection carries one request at a time); beside them each
 * worker's own descriptors and the idle sockets its agent keeps (never more than the connections that opened them),
 * the admin port's connections, those answered past the bound, and the master's own. At least 1. `workers`: worker
 * processes alive (starting, ready, draining): the bound follows them as versions are added, deployed and removed.
 */
export function clientConnectionsFor(fileLimit: number, workers: number, maxIdleSocketsPerWorker: number): number {
  const fixed = OWN_DESCRIPTORS + workers * PER_WORKER_DESCRIPTORS + ADMIN_MAX_CONNECTIONS + OVER_BOUND_CONNECTIONS;
  const room = fileLimit - fixed;
  // 2C + workers × min(idle, C) ≤ room: with C ≥ idle, C = (room − workers × idle) / 2; else room / (2 + workers).
  const withIdleFull = Math.floor((room - workers * maxIdleSocketsPerWorker) / 2);
  const bound = withIdleFull >= maxIdleSocketsPerWorker ? withIdleFull : Math.floor(room / (2 + workers));
  return Math.max(1, bound);
}

/** The warn line at start when this open-file limit and the config disagree; undefined when they do not. */
export function fileLimitWarning(
  fileLimit: number,
  config: Pick<Config, 'versions' | 'limits'>,
): { fields: Record<string, number>; message: string } | undefined {
  const room = clientConnectionsFor(fileLimit, workerCount(config), config.limits.maxIdleSocketsPerWorker);
  const { maxClientConnections } = config.limits;
  if (maxClientConnections !== undefined && maxClientConnections > room)
    return {
      fields: { fileLimit, maxClientConnections, room },
      message:
        'limits.maxClientConnections is more than the open-file limit leaves room for (two descriptors a ' +
        "connection in a request, the workers' own and their idle sockets, the admin port's, the master's): past " +
        'the room connections are reset and workers cannot start; raise the limit (ulimit -n, LimitNOFILE=, ' +
        '--ulimit nofile=) or leave limits.maxClientConnections out',
    };
  const admitted = workerCount(config) * config.limits.maxSocketsPerWorker;
  if (maxClientConnections === undefined && room < admitted)
    return {
      fields: { fileLimit, maxClientConnections: room, admitted },
      message:
        'open-file limit below what the config admits: the main port holds maxClientConnections at once (two ' +
        'descriptors each in a request), fewer than the requests its workers may take (limits.maxSocketsPerWorker ' +
        '× instances); connections past it are answered 503 too_many_connections; raise it (ulimit -n, ' +
        'LimitNOFILE=, --ulimit nofile=)',
    };
  return undefined;
}
