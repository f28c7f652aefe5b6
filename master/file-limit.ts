import { readFileSync } from 'node:fs';
import type { Config } from '../shared/config.js';

// A master under a low open-file limit (systemd's LimitNOFILE, docker's --ulimit nofile) resets connections past it
// without a line: libuv refuses them itself, and a worker cannot be forked (EMFILE). nginx warns at start when its
// worker_connections exceed the limit; so does graygate, from the limit Linux reports (elsewhere, nothing).

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

/**
 * Descriptors the master can need at once for this config: every request a worker may admit holds two (the client's
 * connection and the one to its worker), plus its own.
 */
export function descriptorsWanted(config: Pick<Config, 'versions' | 'limits'>): number {
  const workers = Object.values(config.versions).reduce((sum, v) => sum + v.instances, 0);
  return workers * config.limits.maxSocketsPerWorker * 2 + OWN_DESCRIPTORS;
}
