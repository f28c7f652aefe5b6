import { request } from 'node:http';
import { GraygateError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { Build, Supervisor, VersionGroup } from './supervisor.js';
import type { ExitReport, WorkerHandle } from './worker-handle.js';

// Swapping a version's worker build (SPEC §6, STYLE §21), one state machine:
//   starting  fork the new build's workers, wait for each `ready`
//   probing   GET /v1/models on each must answer < 500
//   switching make them the version's workers in one step (routing and
//             admission read the group's list, so the next request goes there)
//   draining  old workers finish in-flight requests and streams, then exit
//   done | failed  a build that never gets ready is killed; the old one serves on

export type DeployKind = 'deploy' | 'rollback' | 'reload' | 'add';
export type DeployPhase = 'starting' | 'probing' | 'switching' | 'draining' | 'done' | 'failed';

export interface DeployRecord {
  kind: DeployKind;
  from: string | null;
  to: string;
  phase: DeployPhase;
  startedAt: string;
  durationMs?: number;
  /** Only on failure: why the new build was abandoned. */
  error?: { reason: string; exitCode: number | null; signal: string | null; stderrTail: string[] };
  oldPids: number[];
  newPids: number[];
}

const PROBE_TIMEOUT_MS = 5000;
const MAX_PREVIOUS_BUILDS = 5;

/** Answers < 500 on GET /v1/models, through the worker's own agent. */
export function probeWorker(worker: WorkerHandle, timeoutMs = PROBE_TIMEOUT_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request(new URL('/v1/models', worker.target), { agent: worker.agent, signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      res.resume();
      if ((res.statusCode ?? 500) < 500) resolve();
      else reject(new Error(`health probe answered ${res.statusCode}`));
    });
    req.on('error', (err) => reject(new Error(`health probe failed: ${err.message}`)));
    req.end();
  });
}

/** Starts and probes a build's workers; on any failure kills them all and throws deploy_failed. */
export async function startBuild(supervisor: Supervisor, group: VersionGroup, build: Build, record: DeployRecord, log: Logger): Promise<WorkerHandle[]> {
  const workers = supervisor.spawnBuild(group, build);
  try {
    record.phase = 'starting';
    await Promise.all(workers.map((w) => w.start()));
    record.phase = 'probing';
    await Promise.all(workers.map((w) => probeWorker(w)));
    record.newPids = workers.map((w) => w.pid ?? 0);
    return workers;
  } catch (err) {
    for (const w of workers) w.destroy();
    // STYLE §7: branch on the code, not on the class.
    const report = (err as { code?: string }).code === 'worker_start_failed' ? (err as { report: ExitReport }).report : undefined;
    const reason = report?.reason ?? (err as Error).message;
    record.phase = 'failed';
    record.error = { reason, exitCode: report?.code ?? null, signal: report?.signal ?? null, stderrTail: report?.stderrTail ?? [] };
    log.warn({ version: group.name, entry: build.entry, reason }, 'new build abandoned');
    const tail = record.error.stderrTail.length > 0 ? `; last stderr: ${record.error.stderrTail.slice(-3).join(' | ')}` : '';
    throw new GraygateError('deploy_failed', `${group.name}: build ${build.entry} did not become ready: ${reason}${tail}`, { cause: err });
  }
}

/** Runs one deploy of `build` onto `group`; resolves when the old workers are gone. */
export async function deployBuild(
  supervisor: Supervisor,
  group: VersionGroup,
  build: Build,
  kind: DeployKind,
  log: Logger,
): Promise<DeployRecord> {
  if (group.isDeploying) throw new GraygateError('deploy_in_progress', `a deploy of ${group.name} is already running`);
  group.isDeploying = true;
  const started = Date.now();
  const record: DeployRecord = {
    kind,
    from: group.build.entry,
    to: build.entry,
    phase: 'starting',
    startedAt: new Date(started).toISOString(),
    oldPids: group.workers.map((w) => w.pid ?? 0),
    newPids: [],
  };
  group.lastDeploy = record;
  try {
    const workers = await startBuild(supervisor, group, build, record, log);
    if (group.isRemoved) {
      for (const w of workers) w.destroy();
      throw new GraygateError('deploy_failed', `${group.name} was removed during the deploy`);
    }
    record.phase = 'switching';
    const previous = group.build;
    const old = supervisor.switchBuild(group, build, workers);
    if (kind !== 'rollback') {
      group.previousBuilds.push(previous);
      if (group.previousBuilds.length > MAX_PREVIOUS_BUILDS) group.previousBuilds.shift();
    }
    record.phase = 'draining';
    log.info({ version: group.name, from: record.from, to: record.to, oldPids: record.oldPids, newPids: record.newPids }, 'traffic moved to new build');
    await supervisor.retire(group, old);
    record.phase = 'done';
    return record;
  } finally {
    record.durationMs = Date.now() - started;
    group.isDeploying = false;
  }
}
