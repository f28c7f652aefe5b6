import type { Config, VersionConfig } from '../shared/config.js';
import { GraygateError } from '../shared/errors.js';
import type { Logger } from '../shared/log.js';
import type { RoutingTable } from './router.js';
import type { Supervisor } from './supervisor.js';
import type { WorkerHandle } from './worker-handle.js';
import { RESTART_POLICY, type RestartPolicy } from './restart-policy.js';
import { replaceSignalled, restartAfterCrash, type CrashRestartDeps } from './crash-restart.js';
import { CanaryPairs, pairLabel } from './canary-pairs.js';
import { VersionState } from './version-state.js';
import { Retirement } from './retirement.js';
import { cancelSwap, endSwap, lostWorker, startSwap, stderrSummary, switchBuild, type PendingSwap } from './deploy.js';
import { buildOf, upstreamSecretEnvs, type Build, type DeployKind, type VersionView } from './version.js';
import type { ReloadPlan } from './reload-plan.js';

// The one owner of version state (issue 11): versions, their builds, weights,
// deploy records and the routing table live here, privately, and change only
// through these verbs — add, deploy, rollback, remove, setWeights,
// setPairWeights (a canary's) and applyReload. Everything else reads VersionView. Every build change is one swap
// (#swap): start the new build, move traffic in one step, drain and stop the
// old one; adding a version is a swap from nothing. A reload runs the swaps'
// halves itself, so that it changes all or nothing. A version's own state is
// version-state.ts; canary pairs canary-pairs.ts; crash restarts crash-restart.ts;
// draining and forgetting retirement.ts.

export interface SwapOptions {
  /**
   * Runs synchronously once the new build is ready, just before traffic moves to it: what must
   * end only when the swap is certain (the canary the version is in, SPEC §11). Default: nothing.
   */
  onSwitch?: () => void;
}

/** What a reload changed (applyReload). */
export interface ReloadApplied {
  added: string[];
  deployed: string[];
  removed: string[];
  /** The weights the file changed: name → new weight. */
  weights: Record<string, number>;
  /**
   * Canary pairs the reload dissolved (routing is the file's alone again), each as its versions, e.g. `v1+v2`
   * (canary-pairs.ts pairLabel).
   */
  pairs: string[];
}

export interface VersionRegistryOptions {
  config: Config;
  supervisor: Supervisor;
  log: Logger;
  /**
   * Called once a removed version's workers are gone (metrics drop its series), unless a version of the same
   * name was added while they drained: the name's series are that version's then.
   */
  onRemoved?: (name: string) => void;
  /** Called when a version is taken out of routing (its ended canary's record goes, before a namesake can come). */
  onUnrouted?: (name: string) => void;
  /** Crash restarts; default RESTART_POLICY (tests pass short delays, STYLE §34). */
  restartPolicy?: RestartPolicy;
}

/**
 * A version's weight in a set of changes, else its own. Own keys only: a version may be named `constructor`, which a
 * plain object's prototype answers (`{}.constructor` is a function, and every weight check passed or failed on it).
 */
function weightIn(weights: Readonly<Record<string, number>> | undefined, v: VersionState): number {
  return weights !== undefined && Object.hasOwn(weights, v.name) ? weights[v.name]! : v.weight;
}

export class VersionRegistry {
  readonly #versions = new Map<string, VersionState>();
  /** Names being added right now: a second add of the same name is refused, not raced. */
  readonly #adding = new Set<string>();
  /** Removed, their workers not gone yet (`removing`). */
  readonly #removing = new Set<VersionState>();
  /** A reload is starting its builds: other build changes wait for it to commit or fail (409). */
  #isReloading = false;
  readonly #supervisor: Supervisor;
  readonly #log: Logger;
  readonly #retirement: Retirement;
  readonly #onUnrouted: ((name: string) => void) | undefined;
  readonly #crashRestart: CrashRestartDeps;
  /** The master is shutting down: a worker that exits now is not restarted. */
  #isStopping = false;
  #config: Config;
  #routingTable: RoutingTable;
  /** Canary pairs routed in two levels (setPairWeights). */
  readonly #pairs = new CanaryPairs();

  constructor(options: VersionRegistryOptions) {
    this.#config = options.config;
    this.#supervisor = options.supervisor;
    this.#log = options.log;
    this.#retirement = new Retirement({
      log: this.#log,
      drainTimeoutMs: () => this.#config.limits.drainTimeoutMs,
      isRouted: (name) => this.#versions.has(name),
      onRemoved: options.onRemoved,
    });
    this.#onUnrouted = options.onUnrouted;
    this.#crashRestart = {
      log: this.#log,
      policy: options.restartPolicy ?? RESTART_POLICY,
      isStopping: () => this.#isStopping,
      later: (delayMs, fn) => this.#supervisor.later(delayMs, fn),
      spawn: (state, instance) => this.#spawn(state, state.build, instance),
    };
    for (const [name, version] of Object.entries(options.config.versions)) {
      this.#versions.set(name, new VersionState(name, version.weight, buildOf(version), options.config));
    }
    this.#routingTable = this.#buildRoutingTable();
  }

  get config(): Config {
    return this.#config;
  }
  get routingTable(): RoutingTable {
    return this.#routingTable;
  }
  get versions(): ReadonlyMap<string, VersionView> {
    return this.#versions;
  }

  /**
   * Removed versions whose workers still serve what waited for them, or drain (retirement.ts): out of `versions` and
   * routing, in status and metrics until they are gone (a churn probe: a removed version's stream went on for minutes
   * in no status row and no series).
   */
  get removing(): ReadonlySet<VersionView> {
    return this.#removing;
  }
  /**
   * Every upstream secret variable (`upstream.apiKeyEnv` and `upstream.proxyAuthEnv`) of the running config's versions
   * and running builds.
   */
  keyEnvs(): Set<string> {
    const names = new Set<string>();
    const upstreams = [
      ...Object.values(this.#config.versions).map((version) => version.upstream),
      ...[...this.#versions.values()].map((version) => version.build.upstream),
    ];
    for (const upstream of upstreams) for (const name of upstreamSecretEnvs(upstream)) names.add(name);
    return names;
  }
  /** Every version has a ready worker (SPEC §4a /readyz). */
  get isReady(): boolean {
    for (const v of this.#versions.values()) if (!v.hasReadyWorker) return false;
    return true;
  }

  get(name: string): VersionView | undefined {
    return this.#versions.get(name);
  }

  /** A version's weight, or undefined when it does not exist. */
  weightOf(name: string): number | undefined {
    return this.#versions.get(name)?.weight;
  }

  /** The version, or 404 unknown_version listing the known ones. */
  require(name: string): VersionView {
    return this.#state(name);
  }

  /** Starts every configured version's workers; resolves when all are ready, rejects with the first failure. */
  async startAll(): Promise<void> {
    this.#supervisor.startHealthProbes();
    const starts: Promise<void>[] = [];
    for (const state of this.#versions.values()) {
      state.workers = this.#spawnBuild(state, state.build);
      // The failure names its version and build: with 40 versions, "exited with code 1" alone named nothing. And
      // what the worker said last, as a deploy's failure does: a build of another protocol said why only above it.
      const named = (err: unknown): never => {
        const reason = err instanceof Error ? err.message : String(err);
        const tail = (err as { report?: { stderrTail?: readonly string[] } } | null)?.report?.stderrTail ?? [];
        const said = tail.length > 0 ? `; last stderr: ${stderrSummary(tail)}` : '';
        throw new Error(`version ${state.name} (${state.build.entry}): ${reason}${said}`, { cause: err });
      };
      starts.push(...state.workers.map((w) => w.start().catch(named)));
    }
    await Promise.all(starts);
  }

  /** Adds a version; it becomes routable once its workers are ready (SPEC §6: 201 then). */
  async add(name: string, version: VersionConfig): Promise<VersionView> {
    this.refuseChangesNow();
    // A retried add (its first call timed out while the workers start) is told the add is under way: "exists; deploy"
    // sent it to a deploy, which answered 404 unknown_version.
    if (this.#adding.has(name))
      throw new GraygateError('version_exists', `version "${name}" is being added: it is routable once it is ready`);
    if (this.#versions.has(name)) {
      throw new GraygateError('version_exists', `version "${name}" exists; deploy to change its build`);
    }
    this.#adding.add(name);
    try {
      const state = new VersionState(name, version.weight, buildOf(version), this.#config);
      await this.#swap(state, state.build, 'add');
      this.#log.info({ version: name, entry: state.build.entry, weight: version.weight }, 'version added');
      return state;
    } finally {
      this.#adding.delete(name);
    }
  }

  /** Swaps a version's build (SPEC §6 deploy); answers when the old workers are gone. */
  async deploy(name: string, build: Build, options: SwapOptions = {}): Promise<VersionView> {
    this.refuseChangesNow();
    const state = this.#state(name);
    await this.#swap(state, build, 'deploy', options.onSwitch);
    return state;
  }

  /** Deploys the build before the current one (SPEC §6 rollback). */
  async rollback(name: string, options: SwapOptions = {}): Promise<VersionView> {
    this.refuseChangesNow();
    const state = this.#state(name);
    const previous = state.previousBuilds.at(-1);
    if (previous === undefined) throw new GraygateError('no_previous_build', `version "${name}" has no previous build`);
    // Off the list as traffic moves (switchBuild).
    await this.#swap(state, previous, 'rollback', options.onSwitch);
    return state;
  }

  /**
   * Throws what remove(name) would refuse with, changing nothing. `weights` (default none):
   * weights that will hold by then (a canary aborted first gives its baseline the pair's sum).
   */
  assertRemovable(name: string, options: { weights?: Readonly<Record<string, number>> } = {}): void {
    this.refuseChangesNow();
    const state = this.#state(name);
    if (this.#config.routing.default === name) {
      throw new GraygateError(
        'invalid_request',
        `version "${name}" is the routing default; change routing.default first`,
      );
    }
    const weightOf = (v: VersionState): number => weightIn(options.weights, v);
    const othersWeighted = [...this.#versions.values()].some((v) => v.name !== name && weightOf(v) > 0);
    if (!othersWeighted)
      throw new GraygateError('invalid_request', `version "${name}" is the last version with weight > 0`);
    if (state.isDeploying)
      throw new GraygateError('deploy_in_progress', `a deploy of ${name} is running; remove it once that finishes`);
  }

  /**
   * The master is shutting down (SIGTERM, SIGINT): workers that exit from now on are not restarted, and none sent
   * SIGTERM is replaced. A SIGTERM to the whole process group (systemd's default KillMode, `kill -- -PGID`) reaches
   * the workers too: a ready one leaves it to the master (its `signal`, read before or after the master's own signal:
   * crash-restart.ts replaceSignalled waits restartPolicy.signalSettleMs), one not ready drains and exits on it; the
   * master restarted each during its own drain (a probe).
   */
  stopRestarts(): void {
    this.#isStopping = true;
  }

  /** The master's shutdown deadline: requests still waiting for a slot are answered with `err`. */
  refuseQueued(err: unknown): void {
    for (const state of this.#versions.values()) state.admission.refuseWaiting(err);
  }

  /** Stops routing to a version, serves its waiting requests, drains and stops its workers, forgets it. */
  async remove(name: string): Promise<VersionView> {
    this.assertRemovable(name);
    const state = this.#unroute(name);
    await this.#retireRemoved(state);
    return state;
  }

  /**
   * Sets the named weights at once, others unchanged (SPEC §6): unknown name 404, all zero 400. A canary pair (below)
   * with a version among them is two versions again.
   */
  setWeights(weights: Readonly<Record<string, number>>): void {
    // The reload's commit applies the file's weights: a change made meanwhile would be acknowledged, then undone.
    this.refuseChangesNow();
    this.#checkWeights(weights);
    // A weight set to what it was moves nothing, and keeps the pair.
    for (const [name, weight] of Object.entries(weights))
      if (this.#versions.get(name)!.weight !== weight) this.#pairs.ungroup(name);
    this.#apply(weights);
  }

  /**
   * A canary's weights, at each step and at its end (SPEC §11): its pair is chosen as one candidate named after the
   * baseline (or the group the baseline is already in), then one of the two (weighted-choice.ts), from now on until a
   * change of either's weight made another way (setWeights) or a reload (every pair); leaving routing leaves it.
   */
  setPairWeights(canary: string, baseline: string, weights: Readonly<Record<string, number>>): void {
    this.#checkWeights(weights);
    this.#pairs.pair(canary, baseline);
    this.#apply(weights);
  }

  #apply(weights: Readonly<Record<string, number>>): void {
    for (const [name, weight] of Object.entries(weights)) this.#versions.get(name)!.weight = weight;
    this.#routingTable = this.#buildRoutingTable();
  }

  #checkWeights(weights: Readonly<Record<string, number>>): void {
    for (const name of Object.keys(weights)) this.#state(name);
    const after = [...this.#versions.values()].map((v) => weightIn(weights, v));
    if (after.every((w) => w === 0))
      throw new GraygateError('invalid_request', 'at least one version needs a weight > 0');
  }

  /**
   * Applies a reloaded config all or nothing (SPEC §6 reload, §11): every new or changed build
   * starts first, with no traffic; if one fails, the started ones are stopped and nothing has
   * changed (deploy_failed). Then, in one synchronous step, `onCommit` runs (the canaries end),
   * versions are added, builds switched, the file's routing and weights applied and removed
   * versions taken out of routing; old builds and removed versions drain afterwards, for up to
   * limits.drainTimeoutMs: the reload answers once it committed (as `nginx -s reload` does), and the next reload,
   * a config watch's next weight step, need not wait for a long stream on an old build (status shows it `draining`).
   */
  async applyReload(plan: ReloadPlan, options: { onCommit: () => void }): Promise<ReloadApplied> {
    this.#checkReload(plan);
    this.#isReloading = true;
    let pending: PendingSwap<VersionState>[];
    try {
      pending = await this.#startAll(plan);
    } finally {
      this.#isReloading = false;
    }
    // From here to the switches nothing awaits, so no worker can exit in between.
    const lost = pending.map(lostWorker).find((reason) => reason !== undefined);
    if (lost !== undefined) {
      for (const p of pending) cancelSwap(p, `the reload could not commit: ${lost}`);
      for (const [name] of plan.adds) this.#adding.delete(name);
      throw new GraygateError('deploy_failed', `config not reloaded, nothing changed: ${lost}`);
    }
    try {
      options.onCommit();
    } catch (err) {
      for (const p of pending) cancelSwap(p, 'the reload could not commit');
      for (const [name] of plan.adds) this.#adding.delete(name);
      throw err;
    }
    const applied: ReloadApplied = { added: [], deployed: [], removed: [], weights: {}, pairs: [] };
    const old = pending.map((p) => {
      (p.isNew ? applied.added : applied.deployed).push(p.target.name);
      return this.#switch(p);
    });
    for (const [name] of plan.adds) this.#adding.delete(name);
    for (const name of applied.added) this.#log.info({ version: name }, 'version added');
    this.#config = plan.next;
    // The file applies, and it has no canary pairs: routing is the file's alone again, as an instance that started
    // from it routes (SPEC §3, §13: the same user on the same version on every instance and across restarts; §11:
    // after a reload the file's weights apply). A pair kept because its weights were the file's had sent ~35 % of
    // sticky users elsewhere than a fresh instance with the same config hash.
    // Only a pair whose weight another version than its namesake holds routes otherwise than the two apart would.
    applied.pairs = this.#pairs
      .clear()
      .filter(([group, versions]) => versions.some((v) => v !== group && (this.#versions.get(v)?.weight ?? 0) > 0))
      .map(([group, versions]) => pairLabel(group, versions));
    for (const [name, version] of Object.entries(plan.next.versions)) {
      const state = this.#state(name);
      if (state.weight !== version.weight) applied.weights[name] = version.weight;
      state.weight = version.weight;
    }
    const removed = plan.removes.map((name) => this.#unroute(name));
    applied.removed = removed.map((s) => s.name);
    this.#routingTable = this.#buildRoutingTable();
    void Promise.all([
      ...pending.map((p, i) => this.#finishSwap(p, old[i]!)),
      ...removed.map((state) => this.#retireRemoved(state)),
    ]).catch((err: unknown) => this.#log.error({ err }, 'draining after a reload failed'));
    return applied;
  }

  /** What would make a reload fail half-way, checked before anything starts. */
  #checkReload(plan: ReloadPlan): void {
    this.refuseChangesNow();
    for (const [name] of plan.adds) {
      if (this.#versions.has(name) || this.#adding.has(name))
        throw new GraygateError('version_exists', `config not reloaded: version "${name}" is being added meanwhile`);
    }
    for (const name of [...plan.deploys.map(([n]) => n), ...plan.removes]) {
      if (this.#state(name).isDeploying)
        throw new GraygateError(
          'deploy_in_progress',
          `config not reloaded, nothing changed: a deploy of ${name} is running; reload once it finishes`,
        );
    }
  }

  /** Starts every build of a reload; when one fails, stops the others and throws (nothing changed). */
  async #startAll(plan: ReloadPlan): Promise<PendingSwap<VersionState>[]> {
    const added = plan.adds.map(([name, version]) => {
      this.#adding.add(name);
      return new VersionState(name, version.weight, buildOf(version), this.#config);
    });
    const swaps: Array<[VersionState, Build]> = [
      ...added.map((state): [VersionState, Build] => [state, state.build]),
      ...plan.deploys.map(([name, build]): [VersionState, Build] => [this.#state(name), build]),
    ];
    const results = await Promise.allSettled(swaps.map(([state, build]) => this.#startSwap(state, build, 'reload')));
    const failures = results.flatMap((r) => (r.status === 'rejected' ? [r.reason as Error] : []));
    const pending = results.flatMap((r) => (r.status === 'fulfilled' ? [r.value] : []));
    if (failures.length === 0) return pending;
    for (const p of pending) cancelSwap(p, 'another build of the same reload did not become ready');
    for (const [name] of plan.adds) this.#adding.delete(name);
    const stopped = failures.find((err) => err instanceof GraygateError && err.code === 'shutting_down');
    if (stopped !== undefined) throw stopped;
    throw new GraygateError(
      'deploy_failed',
      `config not reloaded, nothing changed: ${failures.map((err) => err.message).join('; ')}`,
      { cause: failures[0] },
    );
  }

  // One build swap (SPEC §6, STYLE §21). `state` is new (kind 'add') or current.
  async #swap(state: VersionState, build: Build, kind: DeployKind, onSwitch?: () => void): Promise<void> {
    const pending = await this.#startSwap(state, build, kind);
    let old: readonly WorkerHandle[];
    try {
      old = this.#switch(pending, onSwitch);
    } catch (err) {
      endSwap(pending);
      throw err;
    }
    await this.#finishSwap(pending, old);
  }

  #startSwap(state: VersionState, build: Build, kind: DeployKind): Promise<PendingSwap<VersionState>> {
    const isNew = kind === 'add' || !this.#versions.has(state.name);
    return startSwap(state, build, { kind, isNew, log: this.#log, spawn: (i) => this.#spawn(state, build, i) }).catch(
      (err: unknown) => {
        // The shutdown stopped the new build as it started: not the build's failure (500 deploy_failed "killed by
        // SIGTERM" blamed it).
        if (!this.#isStopping) throw err;
        throw new GraygateError(
          'shutting_down',
          `the master is shutting down: the ${kind} of ${state.name} was stopped, nothing changed`,
          { cause: err },
        );
      },
    );
  }

  /** The swap's second half, synchronous; a new version becomes routable here. Returns the old workers. */
  #switch(pending: PendingSwap<VersionState>, onSwitch?: () => void): readonly WorkerHandle[] {
    const old = switchBuild(pending, { log: this.#log, onSwitch });
    if (pending.isNew) {
      // Named as a pair that outlived its namesake, and weighted, the two would hash alike at the top level; with
      // weight 0 it takes no weighted traffic, and the pair stays until it gets some.
      if (pending.target.weight > 0) this.#pairs.dissolve(pending.target.name);
      this.#versions.set(pending.target.name, pending.target);
      this.#routingTable = this.#buildRoutingTable();
    }
    return old;
  }

  async #finishSwap(pending: PendingSwap<VersionState>, old: readonly WorkerHandle[]): Promise<void> {
    try {
      await this.#retirement.retire(pending.target, old);
      pending.record.phase = 'done';
    } finally {
      endSwap(pending);
    }
  }

  async #retireRemoved(state: VersionState): Promise<void> {
    try {
      await this.#retirement.retireRemoved(state);
    } finally {
      this.#removing.delete(state);
    }
  }

  /** Takes a version out of routing at once; its waiting requests and its workers still run (retirement.ts). */
  #unroute(name: string): VersionState {
    const state = this.#state(name);
    state.isRemoved = true;
    this.#versions.delete(name);
    this.#removing.add(state);
    this.#retirement.unrouted(name);
    // It leaves its canary pair; the others keep the pair's name (a promoted canary's baseline is removed next).
    this.#pairs.leave(name);
    this.#routingTable = this.#buildRoutingTable();
    state.admission.close(new GraygateError('no_ready_worker', `version "${name}" was removed`));
    this.#onUnrouted?.(name);
    return state;
  }

  /**
   * What an operator's change (add, deploy, rollback, remove, weights, a reload, canaries) checks first: 409 while a
   * reload starts builds (SPEC §6), which its commit would undo; 503 once the master is shutting down (a deploy whose
   * body came after SIGTERM forked workers the shutdown had not counted, and answered 200).
   */
  refuseChangesNow(): void {
    if (this.#isStopping)
      throw new GraygateError('shutting_down', 'the master is shutting down: nothing is changed now');
    if (this.#isReloading)
      throw new GraygateError('deploy_in_progress', 'a config reload is starting builds; try again once it ends');
  }

  #spawnBuild(state: VersionState, build: Build): WorkerHandle[] {
    return Array.from({ length: build.instances }, (_, i) => this.#spawn(state, build, i));
  }

  #spawn(state: VersionState, build: Build, instance: number): WorkerHandle {
    return this.#supervisor.spawn({
      version: state.name,
      instance,
      build,
      onCrash: (handle, report) => restartAfterCrash(state, handle, report, this.#crashRestart),
      onSignal: (handle) =>
        replaceSignalled(state, handle, {
          ...this.#crashRestart,
          retire: (s, workers) => this.#retirement.retire(s, workers),
        }),
    });
  }

  #state(name: string): VersionState {
    const state = this.#versions.get(name);
    if (state === undefined) {
      const adding = this.#adding.has(name) ? ` (it is being added: it is known once it is ready)` : '';
      throw new GraygateError(
        'unknown_version',
        `unknown version "${name}"${adding}; known versions: ${[...this.#versions.keys()].join(', ')}`,
      );
    }
    return state;
  }

  #buildRoutingTable(): RoutingTable {
    const versions = [...this.#versions.values()]
      .map((v) => ({ name: v.name, weight: v.weight, pair: this.#pairs.groupOf(v.name) }))
      .sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
    return { routing: this.#config.routing, versions };
  }
}
