import { runLoad, type LoadOptions } from './load.js';

// A short unrecorded run before the measured one: the first seconds of a
// fresh Node process are JIT compilation, not capacity.

export async function warmUp(
  options: Omit<LoadOptions, 'durationS' | 'onTick'> & { durationS: number },
): Promise<void> {
  if (options.durationS <= 0) return;
  await runLoad({ ...options, connections: Math.min(options.connections, 50) });
}

/** Warm-up length for a measured run of `durationS`: 2 s, or a fifth of short runs. */
export function warmUpSeconds(durationS: number): number {
  return Math.min(2, Math.max(1, Math.round(durationS / 5)));
}
