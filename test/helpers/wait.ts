import type { Gateway } from './gateway.js';
import { admin } from './gateway.js';
import type { VersionStatus, WorkerStatus } from '../../master/admin/status.js';

// The admin API's own types: tests read what the API declares it returns.
// Tests read running workers only, so their pid is known.
export type WorkerRow = WorkerStatus & { pid: number };
export type VersionRow = Omit<VersionStatus, 'workers' | 'lastDeploy'> & {
  workers: WorkerRow[];
  lastDeploy: { phase: string; error?: { reason: string; stderrTail: string[] } } | null;
};

export async function status(gw: Gateway): Promise<Record<string, VersionRow>> {
  const { body } = await admin<{ versions: Record<string, VersionRow> }>(gw, 'GET', '/admin/status');
  return body.versions;
}

/**
 * Polls the admin status until `condition` holds. The gateway exposes no
 * push events, so this is the event; bounded so a broken test fails rather
 * than hangs.
 */
export async function waitForStatus(
  gw: Gateway,
  condition: (versions: Record<string, VersionRow>) => boolean,
  what = 'status condition',
  attempts = 5000,
): Promise<Record<string, VersionRow>> {
  for (let i = 0; i < attempts; i++) {
    const versions = await status(gw);
    if (condition(versions)) return versions;
    await new Promise((r) => setImmediate(r));
  }
  throw new Error(`${what} never became true`);
}

export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
