import { readFileSync } from 'node:fs';
import type { Config } from '../shared/config.js';

// A master under a low open-file limit (systemd's LimitNOFILE, docker's --ulimit nofile) reset connections past it
// without a line (libuv refuses them itself), and a worker could not be forked (EMFILE) while clients held every
// descriptor: connections a client opened and left silent, up to headTimeoutMs each, were enough to keep a crashed
// worker down. nginx bounds its connections (worker_connections) and warns at start when they exceed the limit; so
// does graygate: by default the main port holds no more connections than the limit leaves room for with every one of
// them in a request (limits.maxClientConnections), from the limit Linux reports (elsewhere, no bound).

/** Descriptors the master itself keeps beside its connections: ports, workers' pipes and channels, logs, files. */
const OWN_DESCRIPTORS = 64;

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
 * the client's connection, one for its worker's (a connection carries one request at a time), beside the idle ones
 * kept to each worker and the master's own. At least 1.
 */
export function clientConnectionsFor(
  fileLimit: number,
  config: Pick<Config, 'versions'> & { limits: Pick<Config['limits'], 'maxIdleSocketsPerWorker'> },
): number {
  const reserved = OWN_DESCRIPTORS + workerCount(config) * config.limits.maxIdleSocketsPerWorker;
  return Math.max(1, Math.floor((fileLimit - reserved) / 2));
}

/**
 * Descriptors the master can need at once for this config: every request a worker may admit holds two (the client's
 * connection and the one to its worker), plus its own.
 */
function descriptorsWanted(config: Pick<Config, 'versions' | 'limits'>): number {
  return workerCount(config) * config.limits.maxSocketsPerWorker * 2 + OWN_DESCRIPTORS;
}

/** The warn line at start when this open-file limit and the config disagree; undefined when they do not. */
export function fileLimitWarning(
  fileLimit: number,
  config: Pick<Config, 'versions' | 'limits'>,
): { fields: Record<string, number>; message: string } | undefined {
  const room = clientConnectionsFor(fileLimit, config);
  const { maxClientConnections } = config.limits;
  if (maxClientConnections !== undefined && maxClientConnections > room)
    return {
      fields: { fileLimit, maxClientConnections, room },
      message:
        'limits.maxClientConnections is more than the open-file limit leaves room for (two descriptors a ' +
        'connection in a request, the idle ones kept to workers, 64 of the master): past the room connections are ' +
        'reset and workers cannot start; raise the limit (ulimit -n, LimitNOFILE=, --ulimit nofile=) or leave ' +
        'limits.maxClientConnections out',
    };
  const wanted = descriptorsWanted(config);
  if (maxClientConnections === undefined && fileLimit < wanted)
    return {
      fields: { fileLimit, wanted, maxClientConnections: room },
      message:
        'open-file limit below what the config admits (2 per request a worker may take, ' +
        'limits.maxSocketsPerWorker): the main port holds maxClientConnections at once and closes connections past ' +
        'them as they come; raise it (ulimit -n, LimitNOFILE=, --ulimit nofile=)',
    };
  return undefined;
}
