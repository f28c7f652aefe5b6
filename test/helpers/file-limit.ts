import { execFileSync, spawnSync } from 'node:child_process';
import { readdirSync } from 'node:fs';

// A process's open-file limit, lowered and restored with util-linux's prlimit (node has no setrlimit): how tests put
// a master or a worker at its descriptor limit.

export function hasPrlimit(): boolean {
  return spawnSync('prlimit', ['--version']).status === 0;
}

/** A process's soft limit of open files. */
export function nofileSoftLimit(pid: number): number {
  const out = execFileSync('prlimit', ['--pid', String(pid), '--nofile', '--raw', '--noheadings', '-o', 'SOFT']);
  return Number(out.toString().trim());
}

export function setNofile(pid: number, soft: number): void {
  execFileSync('prlimit', ['--pid', String(pid), `--nofile=${soft}:`]);
}

/** The descriptor number a process's next open would get: with the soft limit there, every open fails (EMFILE). */
export function lowestFreeFd(pid: number): number {
  const open = new Set(readdirSync(`/proc/${pid}/fd`).map(Number));
  let fd = 0;
  while (open.has(fd)) fd++;
  return fd;
}

/**
 * Puts a process at its descriptor limit (every open fails with EMFILE); returns what restores it, which teardown
 * also calls. The teardown's ignores a process that is gone (its test failed): a teardown that throws makes tap skip
 * the ones after it (the gateway's).
 */
export function atFileLimit(t: { teardown(fn: () => void): void }, pid: number): () => void {
  const soft = nofileSoftLimit(pid);
  t.teardown(() => {
    try {
      setNofile(pid, soft);
    } catch {
      // the process is gone
    }
  });
  setNofile(pid, lowestFreeFd(pid));
  return () => setNofile(pid, soft);
}
