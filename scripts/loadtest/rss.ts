import { readFileSync, readdirSync } from 'node:fs';

// Resident memory by PID from /proc/<pid>/status (Linux). Sampled from outside
// so the measured processes run unmodified.

/** VmRSS in bytes, or undefined when the process is gone or /proc is absent. */
function readRssBytes(pid: number): number | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const match = /^VmRSS:\s+(\d+)\s+kB/m.exec(status);
    return match === null ? undefined : Number(match[1]) * 1024;
  } catch {
    return undefined;
  }
}

/**
 * VmRSS as the kernel splits it (/proc/<pid>/status), bytes: anonymous memory (the process's own: heaps, stacks)
 * and file-backed pages (mostly the node binary's code and data, one copy shared by every node process: two
 * processes' RSS counts it twice). Undefined when the process is gone.
 */
export function readRssSplit(pid: number): { anon: number; file: number } | undefined {
  try {
    const status = readFileSync(`/proc/${pid}/status`, 'utf8');
    const kb = (field: string): number => Number(new RegExp(`^${field}:\\s+(\\d+)\\s+kB`, 'm').exec(status)?.[1] ?? 0);
    return { anon: kb('RssAnon') * 1024, file: (kb('RssFile') + kb('RssShmem')) * 1024 };
  } catch {
    return undefined;
  }
}

// utime + stime in clock ticks (USER_HZ, 100 on Linux) from /proc/<pid>/stat.
const TICKS_PER_S = 100;

/** CPU time the process used so far, in ms, or undefined when it is gone. */
export function readCpuMs(pid: number): number | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // After "pid (comm) ": field 3 is state, so utime (14) and stime (15) are at 11 and 12.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return ((Number(fields[11]) + Number(fields[12])) * 1000) / TICKS_PER_S;
  } catch {
    return undefined;
  }
}

/** Groups of PIDs to sample, e.g. `{ master: [123], workers: [124, 125] }`. */
export type PidGroups = Record<string, number[]>;

export interface RssSample {
  /** ms since the sampler started. */
  tMs: number;
  /** Summed RSS per group, in bytes. */
  bytes: Record<string, number>;
  /** Summed CPU time used so far per group, in ms (processes that exited drop out: compare with cpuMsBetween). */
  cpuMs: Record<string, number>;
  /** CPU time used so far per group and PID, in ms: what cpuMsBetween takes each process's own delta from. */
  cpuByPid: Record<string, Record<number, number>>;
}

export interface RssSamplerOptions {
  /** Sampling period in ms. Default 250. */
  intervalMs?: number;
  /** The PIDs to sample; called on every tick (keep it cheap) so restarted or swapped workers are followed. */
  pids: () => PidGroups;
}

export class RssSampler {
  readonly samples: RssSample[] = [];
  readonly #options: RssSamplerOptions;
  readonly #startedAt = performance.now();
  readonly #timer: NodeJS.Timeout;

  constructor(options: RssSamplerOptions) {
    this.#options = options;
    this.sample();
    this.#timer = setInterval(() => this.sample(), options.intervalMs ?? 250);
  }

  sample(): RssSample {
    const bytes: Record<string, number> = {};
    const cpuMs: Record<string, number> = {};
    const cpuByPid: Record<string, Record<number, number>> = {};
    for (const [group, pids] of Object.entries(this.#options.pids())) {
      bytes[group] = pids.reduce((sum, pid) => sum + (readRssBytes(pid) ?? 0), 0);
      const byPid: Record<number, number> = (cpuByPid[group] = {});
      for (const pid of pids) {
        const ms = readCpuMs(pid);
        if (ms !== undefined) byPid[pid] = ms;
      }
      cpuMs[group] = Object.values(byPid).reduce((sum, ms) => sum + ms, 0);
    }
    const s = { tMs: Math.round(performance.now() - this.#startedAt), bytes, cpuMs, cpuByPid };
    this.samples.push(s);
    return s;
  }

  /** Highest sample of a group between two sampler times (default: all), in bytes. */
  peak(group: string, fromMs = 0, toMs = Infinity): number {
    let peak = 0;
    for (const s of this.samples) if (s.tMs >= fromMs && s.tMs <= toMs) peak = Math.max(peak, s.bytes[group] ?? 0);
    return peak;
  }

  /**
   * CPU time a group used between two sampler times, in ms: each process's own last reading minus its own first,
   * summed. The group's sum in the last sample minus that in the first lost a process that exited meanwhile (a
   * target dying mid-run reported a negative CPU %) and counted a restarted worker's whole life as the window's.
   */
  cpuMsBetween(group: string, fromMs = 0, toMs = Infinity): number {
    const first = new Map<number, number>();
    const last = new Map<number, number>();
    for (const s of this.samples) {
      if (s.tMs < fromMs || s.tMs > toMs) continue;
      for (const [pid, ms] of Object.entries(s.cpuByPid[group] ?? {})) {
        if (!first.has(Number(pid))) first.set(Number(pid), ms);
        last.set(Number(pid), ms);
      }
    }
    let sum = 0;
    for (const [pid, ms] of last) sum += ms - first.get(pid)!;
    return sum;
  }

  /** Average CPU use of a group between two sampler times, in % of one core (200 = two cores busy). */
  cpuPercent(group: string, fromMs = 0, toMs = Infinity): number {
    const inside = this.samples.filter((s) => s.tMs >= fromMs && s.tMs <= toMs);
    const first = inside[0];
    const last = inside.at(-1);
    if (first === undefined || last === undefined || last.tMs === first.tMs) return 0;
    return Math.round((this.cpuMsBetween(group, first.tMs, last.tMs) / (last.tMs - first.tMs)) * 100);
  }

  latest(group: string): number {
    return this.samples.at(-1)?.bytes[group] ?? 0;
  }

  /** ms on the sampler's clock, to mark phases (load start and stop). */
  now(): number {
    return Math.round(performance.now() - this.#startedAt);
  }

  stop(): void {
    clearInterval(this.#timer);
    this.sample();
  }
}

export function toMb(bytes: number): number {
  return Math.round((bytes / (1024 * 1024)) * 10) / 10;
}

/** PIDs whose process group is `pgid` (e.g. nginx's master and workers), from /proc/<pid>/stat. */
export function processGroupMembers(pgid: number): number[] {
  const out: number[] = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      // "pid (comm) state ppid pgrp …": comm may hold spaces, so split after the last ')'.
      const stat = readFileSync(`/proc/${entry}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      if (Number(fields[2]) === pgid) out.push(Number(entry));
    } catch {
      // gone meanwhile
    }
  }
  return out;
}

/** Whole-machine CPU from /proc/stat: busy and total time so far, in ms summed over all cores. */
export function readBoxCpuMs(): { busyMs: number; totalMs: number } {
  try {
    // "cpu  user nice system idle iowait irq softirq steal …" in USER_HZ ticks.
    const fields = readFileSync('/proc/stat', 'utf8').split('\n', 1)[0]!.trim().split(/\s+/).slice(1, 9).map(Number);
    const total = fields.reduce((a, b) => a + b, 0);
    const idle = (fields[3] ?? 0) + (fields[4] ?? 0);
    return { busyMs: ((total - idle) * 1000) / TICKS_PER_S, totalMs: (total * 1000) / TICKS_PER_S };
  } catch {
    return { busyMs: 0, totalMs: 0 };
  }
}
