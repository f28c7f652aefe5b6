import type { Logger } from '../shared/log.js';
import { nextRestartDelayMs, type RestartPolicy } from './restart-policy.js';
import type { VersionState } from './version-state.js';
import type { WorkerHandle } from './worker-handle.js';
import type { ExitReport } from './worker-process.js';

// STYLE §23: only the current build's workers are restarted, with capped backoff,
// and never after the version is removed; a worker that stayed up a while was
// healthy, so the crash count starts afresh (measured on the monotonic clock: a
// wall-clock step must neither forgive a crash loop nor hold a stable worker's crash against it).

export interface CrashRestartDeps {
  log: Logger;
  policy: RestartPolicy;
  /** The master is shutting down: nothing is restarted. */
  isStopping(): boolean;
  /** Runs `fn` after `delayMs` unless the supervisor stops first. */
  later(delayMs: number, fn: () => void): void;
  /** A new worker of `state`'s current build in `instance`'s slot, not started. */
  spawn(state: VersionState, instance: number): WorkerHandle;
}

/** It stayed ready long enough that its crash count starts afresh. */
function isStable(handle: WorkerHandle, policy: RestartPolicy): boolean {
  return handle.readyAt > 0 && performance.now() - handle.readyAt > policy.stableAfterMs;
}

/** A worker of `state` exited unasked: restart it in its slot after the policy's delay, if it is still current. */
export function restartAfterCrash(
  state: VersionState,
  handle: WorkerHandle,
  report: ExitReport,
  deps: CrashRestartDeps,
): void {
  if (state.isRemoved) return;
  if (deps.isStopping()) {
    deps.log.info(
      { version: state.name, instance: handle.instance, reason: report.reason },
      'worker exited during shutdown, not restarted',
    );
    return;
  }
  const slot = state.workers.indexOf(handle);
  if (slot === -1) return; // no longer the current build
  const { policy } = deps;
  // Counted per instance, as Kubernetes counts a container's restarts: one crash of every instance at once (an OOM
  // kill of the pod's processes) is one crash each, not a crash loop of the version (a probe's repro: 11 instances
  // killed once each, the last restarted after 5 minutes).
  const crashes = (isStable(handle, policy) ? 0 : handle.consecutiveCrashes) + 1;
  const delayMs = nextRestartDelayMs(crashes, policy);
  if (crashes > policy.maxConsecutiveCrashes) {
    deps.log.error(
      { version: state.name, instance: handle.instance, crashes, delayMs },
      'worker keeps crashing, restarting it slowly',
    );
  } else {
    deps.log.warn(
      { version: state.name, instance: handle.instance, delayMs, reason: report.reason },
      'restarting crashed worker',
    );
  }
  deps.later(delayMs, () => {
    if (state.isRemoved || state.workers[slot] !== handle) return;
    const replacement = deps.spawn(state, handle.instance);
    replacement.restarts = handle.restarts + 1;
    replacement.consecutiveCrashes = crashes;
    state.workers[slot] = replacement;
    state.restarts++;
    replacement.start().then(
      () => state.admission.pump(),
      (err: unknown) =>
        // Stopped on purpose as it started (a deploy moved traffic to another build, the master stops): no failure.
        (err as { report?: ExitReport }).report?.isIntended === true
          ? deps.log.info({ version: state.name, instance: handle.instance }, 'restarted worker stopped as it started')
          : deps.log.warn({ version: state.name, err }, 'restarted worker failed to start'),
    );
  });
}

/**
 * A worker of `state` was sent SIGTERM by someone other than the master (an operator's `kill PID`, a tool) and left it
 * to the master (IPC `signal`). As a deploy swaps a build, a replacement starts (after restartPolicy.signalSettleMs:
 * a group kill's own signal to the master may come later), takes the worker's slot once ready,
 * and the worker drains as an old build's does (no new requests, the master's own finish within limits.drainTimeoutMs,
 * then `shutdown`): nothing is refused or cut. Not a crash: no backoff, and the instance's crash count is kept. A
 * replacement that fails to start leaves the worker serving (an error line says so; a second SIGTERM drains it on its
 * own, and its exit is then a crash). While the master stops, or for a worker already on its way out (an old build, a
 * removed version, one draining), nothing: the `shutdown` it gets then is the signal's answer. Returns whether the
 * master took the signal over; false for a worker in no slot (a new build whose swap is not done): it drains now.
 */
export function replaceSignalled(
  state: VersionState,
  handle: WorkerHandle,
  deps: Pick<CrashRestartDeps, 'log' | 'isStopping' | 'spawn' | 'later' | 'policy'> & {
    retire: (state: VersionState, workers: readonly WorkerHandle[]) => Promise<void>;
  },
): boolean {
  if (deps.isStopping() || state.isRemoved || handle.state === 'draining') return true;
  const slot = state.workers.indexOf(handle);
  if (slot === -1 || handle.state !== 'ready') return false;
  // Not at once: a SIGTERM sent to the whole process group reaches the workers' `signal` to the master before, or
  // well after, the master's own signal (a review: in half of the group kills of 4 workers, 2 to 4 replacements were
  // forked, each a synchronous fork of ~20 ms, before the master began to stop; libuv blocks signals across a fork).
  // The worker serves on meanwhile.
  deps.later(deps.policy.signalSettleMs, () => {
    // Meanwhile the master began to stop, the version was removed, a deploy or a crash took the slot, or the worker
    // drains or exited: whatever ends it answers the signal.
    if (deps.isStopping() || state.isRemoved || state.workers[slot] !== handle || handle.state !== 'ready') return;
    replace(state, handle, slot, deps);
  });
  return true;
}

function replace(
  state: VersionState,
  handle: WorkerHandle,
  slot: number,
  deps: Parameters<typeof replaceSignalled>[2],
): void {
  const { log } = deps;
  const fields = { version: state.name, instance: handle.instance, workerPid: handle.pid };
  log.warn(fields, 'worker sent SIGTERM: a replacement starts, then it drains');
  const replacement = deps.spawn(state, handle.instance);
  replacement.restarts = handle.restarts + 1;
  // Its crashes in a row, as a crash would count them: none once it was stable (an old crash loop's count, never reset
  // while the worker served, put its replacement's first crash in the crash-loop delay, a review).
  replacement.consecutiveCrashes = isStable(handle, deps.policy) ? 0 : handle.consecutiveCrashes;
  // Shown `starting` in status and metrics until it takes the slot, as a deploy's new build is (it was in neither).
  state.starting.add(replacement);
  replacement.start().then(
    () => {
      state.starting.delete(replacement);
      // Meanwhile a deploy or a crash took the slot, the version was removed, or the master began to stop (which stops
      // this one too): the replacement is not needed.
      if (state.isRemoved || deps.isStopping() || state.workers[slot] !== handle) {
        void replacement.stop(0);
        return;
      }
      state.workers[slot] = replacement;
      state.restarts++;
      state.admission.pump();
      log.info({ ...fields, replacementPid: replacement.pid }, 'worker sent SIGTERM replaced: it drains');
      deps.retire(state, [handle]).catch((err: unknown) => log.error({ ...fields, err }, 'draining it failed'));
    },
    (err: unknown) => {
      state.starting.delete(replacement);
      if ((err as { report?: ExitReport }).report?.isIntended === true)
        log.info(fields, 'the replacement of a worker sent SIGTERM was stopped as it started');
      else
        log.error(
          { ...fields, err },
          'the replacement of a worker sent SIGTERM failed to start: it serves on (a second SIGTERM drains it)',
        );
    },
  );
}
