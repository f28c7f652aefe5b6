import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import {
  entrySchema,
  envSchema,
  idleTimeoutWarnings,
  instancesSchema,
  parseWith,
  upstreamSchema,
  versionSchema,
  upstreamConnectionsProblem,
  weightSchema,
  type Config,
  type UpstreamConfig,
} from '../../shared/config.js';
import { VERSION_NAME } from '../../shared/defaults.js';
import { GraygateError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { loadConfig } from '../config-file.js';
import type { VersionRegistry } from '../version-registry.js';
import type { CanaryManager, CanaryPair } from '../canary/manager.js';
import type { CanaryStatus } from '../canary/controller.js';
import { unsetSecretWarnings, type Build, type DeployRecord, type VersionView } from '../version.js';
import { planReload } from '../reload-plan.js';
import type { ClientConnectionsStatus } from '../client-connections.js';
import type { LastReload } from '../metrics.js';
import { statusOf, versionStatus, type StatusBody, type VersionStatus } from './status.js';

// What the admin API and SIGHUP do (SPEC §6, §10): bodies validated with the
// same schema library as the config, then handed to the version registry, the
// one owner of version state. Each call answers once the change is complete.

const weightsBody = z.record(
  z.string().regex(VERSION_NAME, 'version names must match ^[a-z0-9][a-z0-9._-]{0,31}$'),
  weightSchema,
);
const addBody = versionSchema.extend({
  name: z.string().regex(VERSION_NAME, 'must match ^[a-z0-9][a-z0-9._-]{0,31}$'),
});
// The file's own schemas, so a deploy says what the file and an add say ("instances: must be ≤ 64").
const deployBody = z.strictObject({
  entry: entrySchema.optional(),
  instances: instancesSchema.optional(),
  env: envSchema.optional(),
  upstream: upstreamSchema.optional(),
});

function parseBody<S extends z.ZodType>(schema: S, raw: unknown): z.output<S> {
  const result = parseWith(schema, raw);
  if (!result.ok) throw new GraygateError('invalid_request', result.problems.join('\n'));
  return result.value;
}

function absoluteEntry(entry: string): string {
  return isAbsolute(entry) ? entry : resolvePath(entry);
}

function realpathOrSelf(path: string): string {
  try {
    return realpathSync(path);
  } catch {
    return path; // a missing entry fails later, as deploy_failed with the fork's reason
  }
}

/**
 * SPEC §6: an entry given to add/deploy runs code by design, so it must live
 * under one of admin.entryRoots (default: the working directory). Symlinks are
 * resolved first, so a link inside a root cannot point outside it.
 */
function isEntryAllowed(entry: string, roots: readonly string[]): boolean {
  const real = realpathOrSelf(entry);
  return roots.some((root) => {
    const rel = relative(realpathOrSelf(resolvePath(root)), real);
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
  });
}

/** What started a reload: `POST /admin/reload`, the signal, or `config.watch` (its log line says which). */
export type ReloadTrigger = 'admin' | 'SIGHUP' | 'watch';

export interface ReloadResult {
  /** configHash of the file now applied (SPEC §13 graygate_config_info). */
  hash: string;
  applied: string[];
  /** Changes that only take effect after a restart (listen/admin addresses, limits of running versions). */
  restartRequired: string[];
  /** What the applied file asks that works against itself: a version's pings the idle timeout would cut. */
  warnings: string[];
}

export interface OperationsOptions {
  registry: VersionRegistry;
  /** Canaries end when their versions change underneath them (SPEC §11). */
  canaries: CanaryManager;
  log: Logger;
  /** The config file SIGHUP and POST /admin/reload re-read. */
  configPath: string;
  env: NodeJS.ProcessEnv;
  /** configHash of the file the master started with (config-file.ts). */
  configHash: string;
  /** A reload turned `config.watch` on or off (main.ts starts or stops the watch). */
  onWatchChange?: (isOn: boolean) => void;
  /** The main port's connections and their bound (master/client-connections.ts), read for each status. */
  clientConnections?: () => ClientConnectionsStatus;
}

export class Operations {
  readonly #registry: VersionRegistry;
  readonly #canaries: CanaryManager;
  readonly #log: Logger;
  readonly #options: OperationsOptions;
  #reloading: Promise<ReloadResult> | undefined;
  /** A reload asked for while one runs: it runs once more afterwards, reading the file then. */
  #reloadAgain: Promise<ReloadResult> | undefined;
  /** What asked for the reload that waits (#reloadAgain). */
  readonly #againTriggers = new Set<ReloadTrigger>();
  #configHash: string;
  #lastReload: LastReload = { isSuccessful: true, successAtMs: Date.now() };

  constructor(options: OperationsOptions) {
    this.#registry = options.registry;
    this.#canaries = options.canaries;
    this.#log = options.log;
    this.#options = options;
    this.#configHash = options.configHash;
  }

  /** The last reload's outcome, for graygate_config_last_reload_*: a start counts as an applied file. */
  get lastReload(): LastReload {
    return this.#lastReload;
  }

  /** sha256 (first 12 hex) of the config file applied last (SPEC §13). */
  get configHash(): string {
    return this.#configHash;
  }

  status(): StatusBody {
    const body = statusOf(this.#registry.versions.values(), this.#registry.removing);
    for (const [name, version] of Object.entries(body.versions)) {
      const canary = this.#canaries.lastFor(name);
      if (canary !== undefined) version.canary = canary;
    }
    const clientConnections = this.#options.clientConnections?.();
    return {
      ...body,
      configHash: this.#configHash,
      ...(clientConnections === undefined ? {} : { clientConnections }),
    };
  }

  /** PUT /admin/weights: the named weights at once, others unchanged. */
  setWeights(raw: unknown): StatusBody {
    const weights = parseBody(weightsBody, raw);
    // A reload starting builds is the first thing to wait for: "abort the canary first" would be refused too.
    this.#registry.refuseChangesNow();
    for (const name of Object.keys(weights)) {
      const canary = this.#canaries.activeFor(name);
      if (canary !== undefined) {
        throw new GraygateError(
          'canary_in_progress',
          `${name} is in the ${canary.state} canary of ${canary.version}; abort it first (DELETE /admin/versions/${canary.version}/canary)`,
        );
      }
    }
    this.#registry.setWeights(weights);
    this.#log.info({ weights }, 'weights changed');
    return this.status();
  }

  /** POST /admin/versions: serves only once its workers are ready. */
  async addVersion(raw: unknown): Promise<VersionStatus> {
    const { name, ...version } = parseBody(addBody, raw);
    this.#checkConnections('upstream', version.upstream);
    const added = await this.#registry.add(name, { ...version, entry: this.#allowedEntry(version.entry) });
    return withWarnings(versionStatus(added), this.#warn({ [name]: version }));
  }

  /** 400 for an upstream whose connections are fewer than a worker admits, as the file's check says (config.ts). */
  #checkConnections(path: string, upstream: Pick<UpstreamConfig, 'maxConnections'> | undefined): void {
    const limit = this.#registry.config.limits.maxSocketsPerWorker;
    const problem = upstreamConnectionsProblem(path, upstream?.maxConnections, limit);
    if (problem !== undefined) throw new GraygateError('invalid_request', problem);
  }

  /**
   * A warn line for each version whose pings a set limits.workerIdleTimeoutMs cuts (config.ts), and for each secret
   * variable a version names that is not set (version.ts), as at start, for what an add, a deploy, a rollback or a
   * reload brings (a probe: only the start's config was looked at).
   */
  #warn(
    versions: Readonly<Record<string, { env: Readonly<Record<string, string>>; upstream: UpstreamConfig }>>,
  ): string[] {
    const warnings = [
      ...idleTimeoutWarnings({ limits: this.#registry.config.limits, versions }),
      ...unsetSecretWarnings(versions, this.#options.env, this.#registry.config.admin.redactEnv),
    ];
    for (const warning of warnings) this.#log.warn(warning);
    return warnings;
  }

  /** The absolute entry, or 400 when it lies outside admin.entryRoots. */
  #allowedEntry(entry: string): string {
    const absolute = absoluteEntry(entry);
    const configured = this.#registry.config.admin.entryRoots;
    const roots = configured.length > 0 ? configured : [process.cwd()];
    if (!isEntryAllowed(absolute, roots)) {
      throw new GraygateError(
        'invalid_request',
        `entry: ${absolute} is outside admin.entryRoots (${roots.map((r) => resolvePath(r)).join(', ')})`,
      );
    }
    return absolute;
  }

  /**
   * POST /admin/versions/:name/deploy. The canary the version is in ends when traffic moves to
   * the new build, not before: a refused or failed deploy leaves it running (SPEC §11).
   */
  async deploy(name: string, raw: unknown): Promise<VersionStatus> {
    const current = this.#registry.require(name).build;
    const body = parseBody(deployBody, raw);
    this.#checkConnections('upstream', body.upstream);
    const build: Build = {
      entry: body.entry === undefined ? current.entry : this.#allowedEntry(body.entry),
      instances: body.instances ?? current.instances,
      env: body.env ?? current.env,
      upstream: body.upstream ?? current.upstream,
    };
    const answer = await this.#swapAnswer(name, 'redeployed', (onSwitch) =>
      this.#registry.deploy(name, build, { onSwitch }),
    );
    return withWarnings(answer, this.#warn({ [name]: build }));
  }

  /** POST /admin/versions/:name/rollback: the build before the current one. */
  async rollback(name: string): Promise<VersionStatus> {
    const answer = await this.#swapAnswer(name, 'rolled back', (onSwitch) =>
      this.#registry.rollback(name, { onSwitch }),
    );
    const build = this.#registry.get(name)?.build; // removed meanwhile: nothing to warn of
    return build === undefined ? answer : withWarnings(answer, this.#warn({ [name]: build }));
  }

  /**
   * A deploy's or rollback's answer, given once its old build is gone: the version as it is then, with this swap's
   * own record, taken as traffic moved (a later swap, taken during this one's drain, is the version's `lastDeploy` by
   * then, and the answer and the CLI's "deployed … (pids …) in … ms" described that one). As traffic moves, the
   * version's canary ends (SPEC §11).
   */
  async #swapAnswer(
    name: string,
    done: string,
    swap: (onSwitch: () => void) => Promise<VersionView>,
  ): Promise<VersionStatus> {
    let record: DeployRecord | undefined;
    let aborted: CanaryPair | undefined;
    const view = await swap(() => {
      aborted = this.#canaries.abortFor(name, `${name} was ${done}`);
      record = this.#registry.require(name).lastDeploy;
    });
    const status = versionStatus(view);
    return {
      ...status,
      ...(record === undefined ? {} : { lastDeploy: record }),
      ...(aborted === undefined ? {} : { abortedCanary: aborted }),
    };
  }

  /**
   * DELETE /admin/versions/:name: stop routing, drain, stop, forget. The canary the version is in
   * is aborted (the baseline gets the pair's sum) once the removal is known to go ahead: its
   * checks run on the weights the abort leaves, so a refused removal changes nothing.
   */
  async removeVersion(name: string): Promise<VersionStatus> {
    this.#registry.assertRemovable(name, { weights: this.#canaries.weightsAfterAbort(name) });
    const aborted = this.#canaries.abortFor(name, `${name} was removed`);
    const status = versionStatus(await this.#registry.remove(name));
    return aborted === undefined ? status : { ...status, abortedCanary: aborted };
  }

  /** POST /admin/versions/:name/canary (SPEC §11): 202 with its status. */
  startCanary(name: string, raw: unknown): CanaryStatus {
    return this.#canaries.start(name, raw);
  }

  /** GET /admin/versions/:name/canary. */
  canary(name: string): CanaryStatus {
    return this.#canaries.get(name);
  }

  /** DELETE /admin/versions/:name/canary: the canary's weight back to 0 at once. */
  abortCanary(name: string): CanaryStatus {
    return this.#canaries.abort(name);
  }

  /** POST /admin/versions/:name/canary/promote: the canary gets the pair's whole weight at once. */
  promoteCanary(name: string): CanaryStatus {
    return this.#canaries.promote(name);
  }

  /** POST /admin/versions/:name/canary/pause: held where it is, still judged, until resumed. */
  pauseCanary(name: string): CanaryStatus {
    return this.#canaries.pause(name);
  }

  /** POST /admin/versions/:name/canary/resume: a held canary steps on again. */
  resumeCanary(name: string): CanaryStatus {
    return this.#canaries.resume(name);
  }

  /** GET /admin/canaries. */
  canaries(): { canaries: CanaryStatus[] } {
    return { canaries: this.#canaries.list() };
  }

  /**
   * POST /admin/reload, SIGHUP and the config watch: re-read the file and apply the difference.
   * One at a time; a call during a running reload gets one more reload after it (coalesced), so a
   * file changed meanwhile is never answered with the result of reading the older one.
   */
  reload(trigger: ReloadTrigger): Promise<ReloadResult> {
    return this.#start([trigger]);
  }

  /** `triggers`: what asked for this reload (several when calls were coalesced), for its log line. */
  #start(triggers: ReloadTrigger[], isQueued = false): Promise<ReloadResult> {
    if (this.#reloading === undefined) {
      this.#reloading = this.#reload(triggers, isQueued)
        .then(
          (result) => {
            this.#lastReload = { isSuccessful: true, successAtMs: Date.now() };
            return result;
          },
          (err: unknown) => {
            this.#lastReload = { ...this.#lastReload, isSuccessful: false };
            throw err;
          },
        )
        .finally(() => {
          this.#reloading = undefined;
        });
      return this.#reloading;
    }
    for (const trigger of triggers) this.#againTriggers.add(trigger);
    this.#reloadAgain ??= this.#reloading
      .catch(() => undefined)
      .then(() => {
        this.#reloadAgain = undefined;
        const again = [...this.#againTriggers];
        this.#againTriggers.clear();
        return this.#start(again, true);
      });
    return this.#reloadAgain;
  }

  /** `isQueued`: asked for while another reload ran, and run after it. */
  async #reload(triggers: ReloadTrigger[], isQueued: boolean): Promise<ReloadResult> {
    const loaded = loadConfig(this.#options.configPath, this.#options.env);
    if (!loaded.ok)
      throw new GraygateError(
        'invalid_config',
        `config not reloaded, the running config stays:\n${loaded.problems.join('\n')}`,
      );
    const registry = this.#registry;
    const current = registry.config;
    // The file's limits take a restart: its upstreams are checked against the running ones (a review: a file that
    // lowered maxSocketsPerWorker passed its own check, and a version with fewer connections than a worker admits came
    // in, as an add or a deploy may not).
    const connections = Object.entries(loaded.value.versions).flatMap(([name, version]) => {
      const path = `versions.${name}.upstream`;
      const problem = upstreamConnectionsProblem(
        path,
        version.upstream.maxConnections,
        current.limits.maxSocketsPerWorker,
      );
      return problem === undefined ? [] : [`${problem} (the running limit: limits take a restart)`];
    });
    if (connections.length > 0)
      throw new GraygateError(
        'invalid_config',
        `config not reloaded, the running config stays:\n${connections.join('\n')}`,
      );
    // listen/admin/limits of running versions take a restart; the file's routing and versions apply now.
    const next: Config = { ...loaded.value, limits: current.limits, listen: current.listen, admin: current.admin };
    const result: ReloadResult = { hash: loaded.hash, applied: [], restartRequired: [], warnings: [] };
    for (const key of ['listen', 'admin', 'limits'] as const) {
      if (JSON.stringify(loaded.value[key]) !== JSON.stringify(current[key])) result.restartRequired.push(key);
    }
    // The watch applies content not applied yet (main.ts), and asked while another reload ran it is looked at again
    // now: POST /admin/reload and the watch seeing one change, the watch's turn came after the admin reload had
    // applied that content, and applying it again undid a PUT /admin/weights answered 200 during its drain (and would
    // abort the canaries started since; a probe's repro). An operator's reload (admin, SIGHUP) applies the file
    // whatever was applied before, as ever.
    if (isQueued && triggers.every((t) => t === 'watch') && loaded.hash === this.#configHash) {
      this.#log.info(
        { ...result, trigger: triggers.join(',') },
        'config reload: the file was applied by the reload before this one, nothing to do',
      );
      return result;
    }
    // All or nothing (registry.applyReload): a build that does not start, or a deploy running on a
    // version the file changes, refuses the whole file; the running canaries end only at the commit
    // (SPEC §11: a reload aborts them and the file's weights apply).
    let aborted: Array<{ canary: string; baseline: string }> = [];
    const applied = await registry.applyReload(planReload(registry.versions, next), {
      onCommit: () => {
        aborted = this.#canaries.abortAll('the config was reloaded');
        this.#configHash = loaded.hash;
      },
    });
    // First: the abort moved the pair's weights before the file's were compared, so those may show no change.
    result.applied.push(...aborted.map((a) => `aborted the canary of ${a.canary} (baseline ${a.baseline})`));
    // Users of other versions may move once, as at any change of several weights; the answer says why.
    result.applied.push(
      ...applied.pairs.map((pair) => `dissolved the canary pair ${pair}: routing is the file's alone`),
    );
    result.applied.push(...applied.added.map((name) => `added ${name}`));
    result.applied.push(...applied.deployed.map((name) => `deployed ${name}`));
    const weights = Object.entries(applied.weights);
    if (weights.length > 0) result.applied.push(`weights ${weights.map(([n, w]) => `${n}=${w}`).join(' ')}`);
    result.applied.push(...applied.removed.map((name) => `removed ${name}`));
    if (JSON.stringify(next.routing) !== JSON.stringify(current.routing)) result.applied.push('routing');
    if (JSON.stringify(next.cors) !== JSON.stringify(current.cors)) result.applied.push('cors');
    // The watch is the master's, not a version's: on or off from this reload, whatever started it.
    if (next.config.watch !== current.config.watch) {
      result.applied.push(`config.watch ${next.config.watch ? 'on' : 'off'}`);
      this.#options.onWatchChange?.(next.config.watch);
    }
    result.warnings.push(...this.#warn(next.versions));
    this.#log.info({ ...result, trigger: triggers.join(',') }, 'config reloaded');
    return result;
  }
}

/** An add's, deploy's or rollback's answer with the warnings it logged, when there are some. */
function withWarnings(answer: VersionStatus, warnings: string[]): VersionStatus {
  return warnings.length === 0 ? answer : { ...answer, warnings };
}
