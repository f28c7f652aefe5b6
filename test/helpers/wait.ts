import { setTimeout } from 'node:timers/promises';
import type { Gateway } from './gateway.js';
import { admin } from './gateway.js';
import type { VersionStatus, WorkerStatus } from '../../master/admin/status.js';
import type { CanaryStatus } from '../../master/canary/controller.js';

// The admin API's own types: tests read what the API declares it returns.
// Tests read running workers only, so their pid is known.
export type WorkerRow = WorkerStatus & { pid: number };
export type VersionRow = Omit<VersionStatus, 'workers' | 'lastDeploy'> & {
  workers: WorkerRow[];
  lastDeploy: {
    kind: string;
    phase: string;
    newPids: number[];
    error?: { reason: string; stderrTail: string[] };
  } | null;
};

/**
 * The pause between two looks at the admin API while waiting for it to change. Status changes when a
 * worker starts, stops, is probed or ends a request: 10 ms apart loses nothing a test waits for,
 * where a loop with no pause kept the master and this process busy for the whole wait (a core of
 * CI's two), slowing the other test file that runs beside it.
 */
export function pollPause(): Promise<void> {
  return setTimeout(POLL_MS);
}
const POLL_MS = 10;

export async function status(gw: Gateway): Promise<Record<string, VersionRow>> {
  const { body } = await admin<{ versions: Record<string, VersionRow> }>(gw, 'GET', '/admin/status');
  return body.versions;
}

/**
 * Looks with `look` until `condition` holds what it found, with pollPause() between looks: for what has no push
 * event (an admin or worker answer), polling is the event. Bounded (`attempts`, ≥ 30 s of pauses by default) so a
 * broken test fails naming `what` and the last value seen, rather than hangs.
 */
export async function pollUntil<T>(
  look: () => Promise<T>,
  condition: (value: T) => boolean,
  what: string,
  attempts = 3000,
  describeLast: (value: T | undefined) => string = describe,
): Promise<T> {
  let last: T | undefined;
  for (let i = 0; i < attempts; i++) {
    if (i > 0) await pollPause();
    last = await look();
    if (condition(last)) return last;
  }
  throw new Error(`${what} never became true in ${attempts} looks; the last: ${describeLast(last)}`);
}

function describe(value: unknown): string {
  const text = typeof value === 'string' ? value : (JSON.stringify(value) ?? String(value));
  return text.length > 2000 ? `${text.slice(0, 2000)}…` : text;
}

/**
 * Polls the admin status until `condition` holds. The gateway exposes no
 * push events, so this is the event; bounded (≥ 30 s of pauses) so a broken
 * test fails rather than hangs.
 */
export function waitForStatus(
  gw: Gateway,
  condition: (versions: Record<string, VersionRow>) => boolean,
  what = 'status condition',
  attempts = 3000,
): Promise<Record<string, VersionRow>> {
  return pollUntil(() => status(gw), condition, what, attempts);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/** The canary of version `name`, as GET /admin/versions/:name/canary answers it. */
export async function canaryOf(gw: Gateway, name: string): Promise<CanaryStatus> {
  return (await admin<CanaryStatus>(gw, 'GET', `/admin/versions/${name}/canary`)).body;
}
