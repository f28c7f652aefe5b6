import { fileURLToPath } from 'node:url';
import { pickListening, waitForMessage } from '../loadtest/ipc-wait.js';
import { forkTracked } from '../loadtest/processes.js';

// The benchmarks' fake model upstream (hop-latency.ts --upstream) in a process of its own, so its CPU is the
// yardstick; stopped with everything else forkTracked starts.

const HOP_LATENCY = fileURLToPath(new URL('./hop-latency.js', import.meta.url));

/** Forks the upstream and resolves with its address once it listens, and its PID (its CPU is the yardstick). */
export async function startHopUpstream(signal: AbortSignal): Promise<{ url: string; pid: number }> {
  const up = forkTracked('hop upstream', HOP_LATENCY, ['--upstream'], {});
  const { url } = await waitForMessage(up, { pick: pickListening, timeoutMs: 15_000, signal });
  return { url, pid: up.pid };
}
