import { renameSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { getHeapSpaceStatistics, writeHeapSnapshot } from 'node:v8';
import { WORKER_SETTINGS_ENV } from '../../shared/ipc.js';

// Preloaded into graygate's master and workers by `--memory-probe`
// (NODE_OPTIONS=--import, see graygate-env.ts), never part of graygate itself:
// on SIGUSR2 the process writes what its RSS is made of (issue 10: "what is
// held per stream") to $GRAYGATE_MEMORY_PROBE_DIR/memory-<pid>.json, and with
// GRAYGATE_MEMORY_PROBE_SNAPSHOT=1 a V8 heap snapshot next to it first.

const dir = process.env['GRAYGATE_MEMORY_PROBE_DIR'];
const isSnapshot = process.env['GRAYGATE_MEMORY_PROBE_SNAPSHOT'] === '1';

/** What one probe writes; read back by readMemoryProbe. */
export interface MemoryProbe {
  pid: number;
  role: 'master' | 'worker';
  /** process.memoryUsage(), bytes. */
  memory: NodeJS.MemoryUsage;
  /** process.memoryUsage() after two full GCs, when the process runs with --expose-gc (what is live). */
  live: NodeJS.MemoryUsage | null;
  /** V8 heap spaces: used and committed bytes each. */
  heapSpaces: Array<{ name: string; usedBytes: number; committedBytes: number }>;
  /** process.getActiveResourcesInfo() counted by kind: sockets, timers, … held right now. */
  activeResources: Record<string, number>;
  /** Path of the heap snapshot, when one was asked for. */
  heapSnapshot: string | null;
  /** ms the snapshot took (the process is frozen meanwhile). */
  heapSnapshotMs: number | null;
}

if (dir !== undefined) {
  process.on('SIGUSR2', () => {
    const role = process.env[WORKER_SETTINGS_ENV] === undefined ? 'master' : 'worker';
    // Counted before the snapshot, which allocates.
    const memory = process.memoryUsage();
    const gc = (globalThis as { gc?: () => void }).gc;
    let live: NodeJS.MemoryUsage | null = null;
    if (gc !== undefined) {
      gc();
      gc(); // the first one's finalizers may free more (native buffers)
      live = process.memoryUsage();
    }
    const heapSpaces = getHeapSpaceStatistics().map((s) => ({
      name: s.space_name,
      usedBytes: s.space_used_size,
      committedBytes: s.physical_space_size,
    }));
    const activeResources: Record<string, number> = {};
    for (const kind of process.getActiveResourcesInfo()) activeResources[kind] = (activeResources[kind] ?? 0) + 1;
    let heapSnapshot: string | null = null;
    let heapSnapshotMs: number | null = null;
    if (isSnapshot) {
      const startedAt = performance.now();
      heapSnapshot = writeHeapSnapshot(join(dir, `heap-${role}-${process.pid}.heapsnapshot`));
      heapSnapshotMs = Math.round(performance.now() - startedAt);
    }
    const probe: MemoryProbe = {
      pid: process.pid,
      role,
      memory,
      live,
      heapSpaces,
      activeResources,
      heapSnapshot,
      heapSnapshotMs,
    };
    // Written aside, then renamed: the reader polls for the file and must never see half of it.
    const file = join(dir, `memory-${process.pid}.json`);
    writeFileSync(`${file}.tmp`, JSON.stringify(probe, null, 2));
    renameSync(`${file}.tmp`, file);
  });
}
