import type { Config } from '../shared/config.js';
import { VersionAdmission } from './admission.js';
import type { WorkerHandle } from './worker-handle.js';
import type { Build, DeployRecord, VersionView } from './version.js';

// A version's mutable state (issue 11). Only version-registry.ts makes and
// changes one, with the helpers it hands one to (deploy.ts's swaps,
// crash-restart.ts); every other module reads it as a VersionView.

export class VersionState implements VersionView {
  readonly name: string;
  weight: number;
  build: Build;
  workers: WorkerHandle[] = [];
  readonly draining = new Set<WorkerHandle>();
  /** Waiting for `draining` to empty (whenDrained). */
  #onDrained: Array<() => void> = [];
  readonly starting = new Set<WorkerHandle>();
  readonly admission: VersionAdmission<WorkerHandle>;
  restarts = 0;
  previousBuilds: Build[] = [];
  lastDeploy: DeployRecord | undefined;
  isDeploying = false;
  isRemoved = false;

  constructor(name: string, weight: number, build: Build, config: Config) {
    this.name = name;
    this.weight = weight;
    this.build = build;
    const { limits } = config;
    this.admission = new VersionAdmission<WorkerHandle>({
      maxSocketsPerWorker: limits.maxSocketsPerWorker,
      maxQueue: limits.maxQueuePerVersion,
      queueTimeoutMs: limits.queueTimeoutMs,
      workers: () => this.workers,
    });
  }

  get hasReadyWorker(): boolean {
    return this.workers.some((w) => w.isAccepting);
  }

  /** Resolves once none of this version's old builds drains (the swaps' old workers, the registry's #retire). */
  whenDrained(): Promise<void> {
    if (this.draining.size === 0) return Promise.resolve();
    return new Promise((resolve) => this.#onDrained.push(resolve));
  }

  /** A draining worker stopped. */
  drained(worker: WorkerHandle): void {
    this.draining.delete(worker);
    if (this.draining.size === 0) for (const resolve of this.#onDrained.splice(0)) resolve();
  }
}
