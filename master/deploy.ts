import { request } from 'node:http';
import { GraygateError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { WorkerHandle } from './worker-handle.js';
import type { Build, DeployKind, DeployRecord } from './version.js';

// The first half of every build swap (SPEC §6, STYLE §21): deploy, rollback,
// reload and add all start a build here, and the version registry does the
// rest (switch traffic, drain the old build). Phases:
//   starting  fork the new build's workers, wait for each `ready`
//   probing   GET /v1/models on each must answer < 500
//   switching | draining | done   (version-registry.ts)
//   failed    a build that never gets ready is killed; the old one serves on

const PROBE_TIMEOUT_MS = 5000;

/** Answers < 500 on GET /v1/models, through the worker's own agent. */
function probeWorker(worker: WorkerHandle, timeoutMs = PROBE_TIMEOUT_MS): Promise<void> {
  return new Promise((resolve, reject) => {
    const req = request({ ...worker.requestOptions('/v1/models'), signal: AbortSignal.timeout(timeoutMs) }, (res) => {
      res.resume();
      if ((res.statusCode ?? 500) < 500) resolve();
      else reject(new Error(`health probe answered ${res.statusCode}`));
    });
    req.on('error', (err) => reject(new Error(`health probe failed: ${err.message}`)));
    req.end();
  });
}

export function newDeployRecord(kind: DeployKind, from: Build | undefined, to: Build, oldPids: number[]): DeployRecord {
  return {
    kind,
    from: from?.entry ?? null,
    to: to.entry,
    phase: 'starting',
    startedAt: new Date().toISOString(),
    oldPids,
    newPids: [],
  };
}

export interface StartBuildOptions {
  version: string;
  build: Build;
  /** Creates instance `i` of the build (supervisor.spawn with the registry's crash handler). */
  spawn: (instance: number) => WorkerHandle;
  /** Updated in place: phase, newPids, error. */
  record: DeployRecord;
  log: Logger;
}

/** Starts and probes a build's workers; on any failure kills them all and throws deploy_failed (SPEC §6). */
export async function startBuild(options: StartBuildOptions): Promise<WorkerHandle[]> {
  const { version, build, record, log } = options;
  const workers = Array.from({ length: build.instances }, (_, instance) => options.spawn(instance));
  try {
    record.phase = 'starting';
    await Promise.all(workers.map((w) => w.start()));
    record.phase = 'probing';
    await Promise.all(workers.map((w) => probeWorker(w)));
    record.newPids = workers.map((w) => w.pid ?? 0);
    return workers;
  } catch (err) {
    for (const w of workers) w.destroy();
    // A start failure carries its exit report as data (worker-handle.ts WorkerStartFailure).
    const report = (
      err as { report?: { reason: string; code: number | null; signal: string | null; stderrTail: string[] } }
    ).report;
    const reason = report?.reason ?? (err as Error).message;
    record.phase = 'failed';
    record.error = {
      reason,
      exitCode: report?.code ?? null,
      signal: report?.signal ?? null,
      stderrTail: report?.stderrTail ?? [],
    };
    log.warn({ version, entry: build.entry, reason }, 'new build abandoned');
    const tail =
      record.error.stderrTail.length > 0 ? `; last stderr: ${record.error.stderrTail.slice(-3).join(' | ')}` : '';
    throw new GraygateError(
      'deploy_failed',
      `${version}: build ${build.entry} did not become ready: ${reason}${tail}`,
      { cause: err },
    );
  }
}
