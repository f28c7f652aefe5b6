import { existsSync, mkdirSync, readFileSync, rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import type { MemoryProbe } from './memory-probe.js';
import { ROOT } from './paths.js';

// Extra node flags and environment for the graygate processes a scenario
// starts (issue 10: profiles and memory of master AND workers). Flags go into
// the master's execArgv (--cpu-prof is refused in NODE_OPTIONS), which its
// workers inherit, except preloads: master/worker-process.ts keeps `--import`
// from workers, so the memory probe travels in NODE_OPTIONS, which both read.
// Nothing else gets them: the load client and helpers run without.

const MEMORY_PROBE_ENTRY = join(ROOT, 'dist/scripts/loadtest/memory-probe.js');

export interface GraygateEnvOptions {
  /** More node flags for the master and its workers (--node-flags, --baseline-node-flags), e.g. V8 heap sizing. */
  nodeFlags?: readonly string[] | undefined;
  /** Write a .cpuprofile per process on exit into this directory (created). */
  cpuProfDir?: string | undefined;
  /** Preload memory-probe.js, writing into this directory (created). */
  memoryProbeDir?: string | undefined;
  /** With memoryProbeDir: also a heap snapshot per probe. */
  isHeapSnapshot?: boolean;
  /** With memoryProbeDir: processes run with --expose-gc and each probe also reports what is live after a full GC. */
  isLiveMemory?: boolean;
}

export interface GraygateLaunch {
  /** Node flags for the master (and, inherited, its workers). */
  execArgv: string[];
  env: Record<string, string>;
}

export function graygateLaunch(options: GraygateEnvOptions): GraygateLaunch {
  const execArgv: string[] = [...(options.nodeFlags ?? [])];
  const env: Record<string, string> = {};
  if (options.cpuProfDir !== undefined) {
    const dir = resolve(options.cpuProfDir);
    mkdirSync(dir, { recursive: true });
    // 1 ms sampling (the default); the profile is written when the process exits normally.
    execArgv.push('--cpu-prof', `--cpu-prof-dir=${dir}`);
  }
  if (options.memoryProbeDir !== undefined) {
    const dir = resolve(options.memoryProbeDir);
    mkdirSync(dir, { recursive: true });
    const inherited = process.env['NODE_OPTIONS'];
    env['NODE_OPTIONS'] = `${inherited === undefined ? '' : `${inherited} `}--import="${MEMORY_PROBE_ENTRY}"`;
    env['GRAYGATE_MEMORY_PROBE_DIR'] = dir;
    if (options.isHeapSnapshot === true) env['GRAYGATE_MEMORY_PROBE_SNAPSHOT'] = '1';
    if (options.isLiveMemory === true) execArgv.push('--expose-gc');
  }
  return { execArgv, env };
}

/** Sends SIGUSR2 to each PID and waits (up to timeoutMs) for their probe files. Missing ones are left out. */
export async function probeMemory(dir: string, pids: number[], timeoutMs: number): Promise<MemoryProbe[]> {
  const files = pids.map((pid) => join(resolve(dir), `memory-${pid}.json`));
  for (const file of files) rmSync(file, { force: true });
  for (const pid of pids) {
    try {
      process.kill(pid, 'SIGUSR2');
    } catch {
      // gone
    }
  }
  const deadline = performance.now() + timeoutMs;
  while (performance.now() < deadline && !files.every((f) => existsSync(f)))
    await new Promise((r) => setTimeout(r, 200));
  const out: MemoryProbe[] = [];
  for (const file of files) {
    try {
      out.push(JSON.parse(readFileSync(file, 'utf8')) as MemoryProbe);
    } catch {
      // not written in time
    }
  }
  return out;
}
