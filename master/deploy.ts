import { request } from '../shared/node-http.js';
import { GraygateError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { WorkerHandle } from './worker-handle.js';
import type { VersionAdmission } from './admission.js';
import { isSameBuild, type Build, type DeployKind, type DeployRecord } from './version.js';

// Every build swap (SPEC §6, STYLE §21) in two halves: deploy, rollback, reload
// and add all start a build here (startSwap), then move traffic to it in one
// synchronous step (switchBuild); the version registry drains the old build.
// A reload starts all its builds before it switches any, so a build that fails
// leaves every version as it was (cancelSwap). Phases:
//   starting  fork the new build's workers, wait for each `ready`
//   probing   GET /v1/models on each must answer < 500
//   switching | draining | done
//   failed    a build that never gets ready is killed; the old one serves on

/** Builds a version ran before, kept as rollback targets. */
const MAX_PREVIOUS_BUILDS = 5;

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

function newDeployRecord(kind: DeployKind, from: Build | undefined, to: Build, oldPids: number[]): DeployRecord {
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

interface StartBuildOptions {
  version: string;
  build: Build;
  /** Creates instance `i` of the build (supervisor.spawn with the registry's crash handler). */
  spawn: (instance: number) => WorkerHandle;
  /** Updated in place: phase, newPids, error. */
  record: DeployRecord;
  /** The version's starting workers (status and metrics show them): the build's, until it fails or takes traffic. */
  starting: Set<WorkerHandle>;
  log: Logger;
}

/** Starts and probes a build's workers; on any failure kills them all and throws deploy_failed (SPEC §6). */
async function startBuild(options: StartBuildOptions): Promise<WorkerHandle[]> {
  const { version, build, record, log } = options;
  const workers = Array.from({ length: build.instances }, (_, instance) => options.spawn(instance));
  for (const w of workers) options.starting.add(w);
  try {
    record.phase = 'starting';
    await Promise.all(workers.map((w) => w.start()));
    record.phase = 'probing';
    await Promise.all(workers.map((w) => probeWorker(w)));
    record.newPids = workers.map((w) => w.pid ?? 0);
    return workers;
  } catch (err) {
    for (const w of workers) {
      w.destroy();
      options.starting.delete(w);
    }
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
    const tail = record.error.stderrTail.length > 0 ? `; last stderr: ${stderrSummary(record.error.stderrTail)}` : '';
    throw new GraygateError(
      'deploy_failed',
      `${version}: build ${build.entry} did not become ready: ${reason}${tail}`,
      { cause: err },
    );
  }
}

/** A thrown error's first line as node prints it: `Error: …`, `TypeError: …`, `Error [ERR_MODULE_NOT_FOUND]: …`. */
const ERROR_LINE = /^(?:[A-Z]\w*)?Error\b[^:]*: /;

/**
 * The last three stderr lines, and before them the last line naming an error if they do not (node prints a stack,
 * `code` and `requireStack` and its version after `Error: Cannot find module …`: a README walk-through got
 * `requireStack: [] | } | Node.js v20.20.2` for a missing entry).
 */
export function stderrSummary(tail: readonly string[]): string {
  const last = tail.slice(-3);
  const errorLine = tail.findLast((line) => ERROR_LINE.test(line.trimStart()));
  const lines = errorLine === undefined || last.includes(errorLine) ? last : [errorLine.trim(), '…', ...last];
  return lines.join(' | ');
}

/** The registry's state of a version, as a swap changes it. */
export interface SwapTarget {
  readonly name: string;
  build: Build;
  workers: WorkerHandle[];
  previousBuilds: Build[];
  /** A swap's new workers until its build takes traffic or fails (SwapTarget is the registry's VersionState). */
  readonly starting: Set<WorkerHandle>;
  isDeploying: boolean;
  lastDeploy: DeployRecord | undefined;
  readonly isRemoved: boolean;
  readonly admission: VersionAdmission<WorkerHandle>;
}

/** A swap's first half done: the new build's workers are ready and get no traffic yet. */
export interface PendingSwap<T extends SwapTarget> {
  target: T;
  build: Build;
  kind: DeployKind;
  /** A version being added: nothing to drain, no previous build. */
  isNew: boolean;
  record: DeployRecord;
  workers: WorkerHandle[];
  startedMs: number;
  /** This swap holds the version's lock (`isDeploying`): from its start until traffic moves, or it fails. */
  isLocking: boolean;
}

export interface StartSwapOptions {
  kind: DeployKind;
  isNew: boolean;
  spawn: (instance: number) => WorkerHandle;
  log: Logger;
}

/**
 * Starts `build` for `target`; the version is deploying (409 to another swap) until traffic moves to the new build
 * (switchBuild) or the swap fails (endSwap). Its old build drains after that, and a rollback need not wait for it.
 */
export async function startSwap<T extends SwapTarget>(
  target: T,
  build: Build,
  options: StartSwapOptions,
): Promise<PendingSwap<T>> {
  if (target.isDeploying)
    throw new GraygateError('deploy_in_progress', `a deploy of ${target.name} is already running`);
  target.isDeploying = true;
  const { kind, isNew } = options;
  const oldPids = target.workers.map((w) => w.pid ?? 0);
  const record = newDeployRecord(kind, isNew ? undefined : target.build, build, oldPids);
  target.lastDeploy = record;
  const pending: PendingSwap<T> = {
    target,
    build,
    kind,
    isNew,
    record,
    workers: [],
    startedMs: performance.now(),
    isLocking: true,
  };
  try {
    pending.workers = await startBuild({
      version: target.name,
      build,
      record,
      starting: target.starting,
      log: options.log,
      spawn: options.spawn,
    });
    return pending;
  } catch (err) {
    endSwap(pending);
    throw err;
  }
}

/**
 * The second half, synchronous: the next request goes to the new build (routing and admission
 * read `workers`). `onSwitch` runs first, once the swap is certain. Returns the old workers, to drain.
 */
export function switchBuild(
  pending: PendingSwap<SwapTarget>,
  options: { log: Logger; onSwitch?: (() => void) | undefined },
): readonly WorkerHandle[] {
  const { target, build, kind, isNew, record, workers } = pending;
  if (target.isRemoved) {
    for (const w of workers) w.destroy();
    throw new GraygateError('deploy_failed', `${target.name} was removed during the deploy`);
  }
  const lost = lostWorker(pending);
  if (lost !== undefined) {
    cancelSwap(pending, lost);
    throw new GraygateError('deploy_failed', lost);
  }
  options.onSwitch?.();
  record.phase = 'switching';
  const old = target.workers;
  const previous = target.build;
  target.build = build;
  target.workers = workers;
  for (const w of workers) target.starting.delete(w);
  // A rollback takes its build off the list as traffic moves, not once its drain is over: the version takes the next
  // swap from then on, and a second rollback during this one's drain goes one build further back.
  if (kind === 'rollback') target.previousBuilds.pop();
  // The build it replaces is one to roll back to, unless it is this one: a deploy of the running build (a pipeline's
  // retry of a deploy that had gone on, a restart, a build rebuilt in place) left it on the list, and the rollback
  // after it forked the running build again from the same files, rolling back nothing.
  else if (!isNew && !isSameBuild(previous, build)) {
    target.previousBuilds.push(previous);
    if (target.previousBuilds.length > MAX_PREVIOUS_BUILDS) target.previousBuilds.shift();
  }
  target.admission.pump();
  record.phase = 'draining';
  // The old build drains for up to limits.drainTimeoutMs (long streams finish): the version takes another swap now,
  // a rollback of a bad build first of all.
  releaseLock(pending);
  if (!isNew)
    options.log.info(
      { version: target.name, from: record.from, to: record.to, oldPids: record.oldPids, newPids: record.newPids },
      'traffic moved to new build',
    );
  return old;
}

/**
 * Why the new build cannot take traffic, if a worker of it is no longer ready: it was ready, then exited while
 * the swap waited (for its other instances, or for the other builds of a reload). Such a worker is in no
 * version's `workers` yet, so no crash handling restarts it: committed, it would serve nothing.
 */
export function lostWorker(pending: PendingSwap<SwapTarget>): string | undefined {
  const gone = pending.workers.find((w) => w.state !== 'ready');
  if (gone === undefined) return undefined;
  return `a new worker of ${pending.target.name} (pid ${gone.pid ?? '?'}) stopped being ready before traffic moved`;
}

/** A started build that will not be used (another build of the same reload failed): stopped, the record says why. */
export function cancelSwap(pending: PendingSwap<SwapTarget>, reason: string): void {
  for (const w of pending.workers) w.destroy();
  pending.record.phase = 'failed';
  pending.record.error = { reason, exitCode: null, signal: null, stderrTail: [] };
  endSwap(pending);
}

export function endSwap(pending: PendingSwap<SwapTarget>): void {
  for (const w of pending.workers) pending.target.starting.delete(w);
  pending.record.durationMs = Math.round(performance.now() - pending.startedMs);
  releaseLock(pending);
}

/** Once per swap: a swap that ends after the next one started (its drain) must not release that one's lock. */
function releaseLock(pending: PendingSwap<SwapTarget>): void {
  if (!pending.isLocking) return;
  pending.isLocking = false;
  pending.target.isDeploying = false;
}
