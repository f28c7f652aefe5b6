import { resolve as resolvePath } from 'node:path';
import { performance } from 'node:perf_hooks';
import type { Config, Limits, UpstreamConfig, VersionConfig } from '../shared/config.js';
import { PROTOCOL_VERSION } from '../shared/ipc.js';
import type { Logger } from '../shared/log.js';
import { VersionAdmission } from './admission.js';
import type { RoutingTable } from './router.js';
import { WorkerHandle, type ExitReport, type ForkFunction } from './worker-handle.js';
import { nextRestartDelayMs, RESTART_POLICY } from './restart-policy.js';
import { StartLimiter } from './start-limiter.js';
import type { DeployRecord } from './deploy.js';

// Owns every version's worker processes (SPEC §4, §10): starts them, restarts
// crashes with capped backoff, and stops them. Routing reads `routingTable`;
// admission reads each group's current workers.

/** What a version runs: the part of its config a deploy replaces. */
export interface Build {
  entry: string;
  instances: number;
  env: Readonly<Record<string, string>>;
  upstream: UpstreamConfig;
}

export class VersionGroup {
  readonly name: string;
  weight: number;
  build: Build;
  /** The current build's workers; admission and routing use only these. */
  workers: WorkerHandle[] = [];
  /** Old builds' workers finishing their in-flight requests. */
  readonly draining = new Set<WorkerHandle>();
  readonly admission: VersionAdmission<WorkerHandle>;
  restarts = 0;
  consecutiveCrashes = 0;
  /** Builds this version ran before, newest last, for rollback. */
  readonly previousBuilds: Build[] = [];
  lastDeploy: DeployRecord | undefined;
  isDeploying = false;
  /** Set once the version is removed: no restart may bring its workers back. */
  isRemoved = false;

  constructor(name: string, weight: number, build: Build, limits: Limits) {
    this.name = name;
    this.weight = weight;
    this.build = build;
    this.admission = new VersionAdmission<WorkerHandle>({
      maxSocketsPerWorker: limits.maxSocketsPerWorker,
      maxQueue: limits.maxQueuePerVersion,
      queueTimeoutMs: limits.queueTimeoutMs,
      workers: () => this.workers,
    });
  }

  get hasReadyWorker(): boolean {
    return this.workers.some((w) => w.state === 'ready');
  }
}

/** SPEC §6: never in a worker's environment, whatever admin.redactEnv says. */
export const ADMIN_TOKEN_ENV = 'GRAYGATE_ADMIN_TOKEN';

export interface SupervisorOptions {
  config: Config;
  log: Logger;
  /** Concurrent worker start-ups; default the machine's available parallelism (start-limiter.ts). */
  startLimiter?: StartLimiter;
  /** Injected in supervisor tests (STYLE §34). */
  fork?: ForkFunction;
}

export function buildOf(version: VersionConfig): Build {
  return { entry: resolvePath(version.entry), instances: version.instances, env: version.env, upstream: version.upstream };
}

export class Supervisor {
  readonly versions = new Map<string, VersionGroup>();
  #config: Config;
  #routingTable: RoutingTable;
  #isStopping = false;
  readonly #log: Logger;
  readonly #fork: ForkFunction | undefined;
  readonly #restartTimers = new Set<NodeJS.Timeout>();
  /** Every worker forked and not yet exited, whatever build or list it belongs to: stopAll ends them all. */
  readonly #alive = new Set<WorkerHandle>();
  readonly #startLimiter: StartLimiter;
  #healthTimer: NodeJS.Timeout | undefined;

  constructor(options: SupervisorOptions) {
    this.#config = options.config;
    this.#log = options.log;
    this.#fork = options.fork;
    this.#startLimiter = options.startLimiter ?? new StartLimiter();
    for (const [name, version] of Object.entries(options.config.versions)) {
      this.versions.set(name, new VersionGroup(name, version.weight, buildOf(version), options.config.limits));
    }
    this.#routingTable = this.#buildRoutingTable();
  }

  get config(): Config {
    return this.#config;
  }
  get routingTable(): RoutingTable {
    return this.#routingTable;
  }
  get isReady(): boolean {
    for (const group of this.versions.values()) if (!group.hasReadyWorker) return false;
    return true;
  }
  get isStopping(): boolean {
    return this.#isStopping;
  }

  /** Starts every version's workers; resolves when all are ready, rejects with the first failure. */
  async startAll(): Promise<void> {
    this.#startHealthProbes();
    const starts: Promise<void>[] = [];
    for (const group of this.versions.values()) {
      group.workers = this.spawnBuild(group, group.build);
      starts.push(...group.workers.map((w) => w.start()));
    }
    await Promise.all(starts);
  }

  /** Forks a build's workers (not started). The deploy state machine uses this too. */
  spawnBuild(group: VersionGroup, build: Build): WorkerHandle[] {
    return Array.from({ length: build.instances }, (_, instance) => this.#spawn(group, build, instance));
  }

  // Watching starts at fork time: a worker that dies while other versions are
  // still starting is restarted too. Only members of the group's current build
  // are restarted; others (an abandoned or retired build) are ignored.
  #watchCrash(group: VersionGroup, handle: WorkerHandle): void {
    handle.once('exit', (report: ExitReport) => {
      this.#alive.delete(handle);
      if (report.isIntended || this.#isStopping || group.isRemoved) return;
      const slot = group.workers.indexOf(handle);
      if (slot === -1) return; // no longer the current build
      // A worker that stayed up a while was healthy: start counting afresh.
      if (handle.readyAt > 0 && Date.now() - handle.readyAt > RESTART_POLICY.stableAfterMs) group.consecutiveCrashes = 0;
      group.consecutiveCrashes++;
      if (group.consecutiveCrashes > RESTART_POLICY.maxConsecutiveCrashes) {
        this.#log.error({ version: group.name, crashes: group.consecutiveCrashes }, 'worker keeps crashing, giving up on restarts');
        return;
      }
      const delayMs = nextRestartDelayMs(group.consecutiveCrashes);
      this.#log.warn({ version: group.name, instance: handle.instance, delayMs, reason: report.reason }, 'restarting crashed worker');
      const timer = setTimeout(() => {
        this.#restartTimers.delete(timer);
        if (this.#isStopping || group.isRemoved || group.workers[slot] !== handle) return;
        const replacement = this.#spawn(group, group.build, handle.instance);
        replacement.restarts = handle.restarts + 1;
        group.workers[slot] = replacement;
        group.restarts++;
        replacement.start().then(
          () => group.admission.pump(),
          (err: unknown) => this.#log.warn({ version: group.name, err }, 'restarted worker failed to start'),
        );
      }, delayMs);
      this.#restartTimers.add(timer);
    });
  }

  #spawn(group: VersionGroup, build: Build, instance: number): WorkerHandle {
    const limits = this.#config.limits;
    const version = group.name;
    const handle = new WorkerHandle({
      entry: build.entry,
      env: build.env,
      settings: {
        protocol: PROTOCOL_VERSION,
        version,
        instance,
        upstream: build.upstream,
        limits: { maxBodyBytes: limits.maxBodyBytes, shutdownTimeoutMs: limits.shutdownTimeoutMs },
        logLevel: process.env['LOG_LEVEL'] ?? 'info',
      },
      readyTimeoutMs: limits.readyTimeoutMs,
      maxSockets: limits.maxSocketsPerWorker,
      maxIdleSockets: limits.maxIdleSocketsPerWorker,
      log: this.#log,
      redactEnv: [ADMIN_TOKEN_ENV, ...this.#config.admin.redactEnv],
      startLimiter: this.#startLimiter,
      ...(this.#fork === undefined ? {} : { fork: this.#fork }),
    });
    this.#alive.add(handle);
    this.#watchCrash(group, handle);
    return handle;
  }

  /** Makes `workers` the group's current build in one step and watches them for crashes. */
  switchBuild(group: VersionGroup, build: Build, workers: WorkerHandle[]): WorkerHandle[] {
    const old = group.workers;
    group.build = build;
    group.workers = workers;
    group.consecutiveCrashes = 0;
    group.admission.pump();
    return old;
  }

  /** Drains and stops workers that are no longer current. */
  async retire(group: VersionGroup, workers: readonly WorkerHandle[]): Promise<void> {
    for (const w of workers) group.draining.add(w);
    await Promise.all(workers.map((w) => w.stop(this.#config.limits.shutdownTimeoutMs)));
    for (const w of workers) group.draining.delete(w);
  }

  setWeights(weights: Readonly<Record<string, number>>): void {
    for (const [name, weight] of Object.entries(weights)) {
      const group = this.versions.get(name);
      if (group !== undefined) group.weight = weight;
    }
    this.#routingTable = this.#buildRoutingTable();
  }

  addGroup(group: VersionGroup): void {
    this.versions.set(group.name, group);
    this.#routingTable = this.#buildRoutingTable();
  }

  removeGroup(name: string): VersionGroup | undefined {
    const group = this.versions.get(name);
    if (group !== undefined) group.isRemoved = true;
    this.versions.delete(name);
    this.#routingTable = this.#buildRoutingTable();
    return group;
  }

  /** Replaces the config the supervisor reads limits and routing from (after a validated reload). */
  setConfig(config: Config): void {
    this.#config = config;
    this.#routingTable = this.#buildRoutingTable();
  }

  // SPEC §4a: every healthIntervalMs each ready or draining worker is probed over
  // IPC; one that misses healthMisses probes in a row is taken out of routing and
  // killed, and the crash path restarts it. Its in-flight requests end with
  // worker_error when its sockets close.
  #startHealthProbes(): void {
    if (this.#healthTimer !== undefined) return;
    const { healthIntervalMs } = this.#config.limits;
    this.#healthTimer = setInterval(() => {
      const { healthMisses } = this.#config.limits;
      const now = performance.now();
      for (const worker of this.#alive) {
        const misses = worker.probe(now);
        if (misses >= healthMisses) worker.markUnhealthy(`missed ${misses} health probes in a row (every ${healthIntervalMs} ms)`);
      }
    }, healthIntervalMs);
    this.#healthTimer.unref();
  }

  /** Stops every worker: drain up to deadlineMs, then SIGTERM/SIGKILL. No restarts from here on. */
  async stopAll(deadlineMs: number): Promise<void> {
    this.#isStopping = true;
    clearInterval(this.#healthTimer);
    for (const timer of this.#restartTimers) clearTimeout(timer);
    this.#restartTimers.clear();
    // Every live process, including builds a deploy or add is still starting.
    await Promise.all([...this.#alive].map((w) => w.stop(deadlineMs)));
  }

  /** Kills every worker at once (fatal start-up failure). */
  destroyAll(): void {
    this.#isStopping = true;
    clearInterval(this.#healthTimer);
    for (const w of this.#alive) w.destroy();
  }

  #buildRoutingTable(): RoutingTable {
    const versions = [...this.versions.values()]
      .map((g) => ({ name: g.name, weight: g.weight }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { routing: this.#config.routing, versions };
  }
}
