import { realpathSync } from 'node:fs';
import { isAbsolute, relative, resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import { VERSION_NAME, parseWith, upstreamSchema, versionSchema, type Config, type VersionConfig } from '../../shared/config.js';
import { GraygateError } from '../../shared/errors.js';
import type { Logger } from '../../shared/log.js';
import { loadConfig } from '../config-file.js';
import { deployBuild, startBuild, type DeployRecord } from '../deploy.js';
import { Supervisor, VersionGroup, buildOf, type Build } from '../supervisor.js';
import { statusOf, versionStatus, type StatusBody, type VersionStatus } from './status.js';

// What the admin API and SIGHUP do (SPEC §6, §10), validated with the same
// schema library as the config. Each call answers once the change is complete.

const weightsBody = z.record(z.string().regex(VERSION_NAME, 'version names must match ^[a-z0-9][a-z0-9._-]{0,31}$'), z.number({ error: 'must be a number' }).min(0, 'must be ≥ 0'));
const addBody = versionSchema.extend({ name: z.string().regex(VERSION_NAME, 'must match ^[a-z0-9][a-z0-9._-]{0,31}$') });
const deployBody = z.strictObject({
  entry: z.string().min(1).optional(),
  instances: z.number().int().min(1).max(64).optional(),
  env: z.record(z.string(), z.string()).optional(),
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
export function isEntryAllowed(entry: string, roots: readonly string[]): boolean {
  const real = realpathOrSelf(entry);
  return roots.some((root) => {
    const rel = relative(realpathOrSelf(resolvePath(root)), real);
    return rel !== '' && !rel.startsWith('..') && !isAbsolute(rel);
  });
}

function sameBuild(a: Build, b: Build): boolean {
  return a.entry === b.entry && a.instances === b.instances && JSON.stringify(a.env) === JSON.stringify(b.env) &&
    JSON.stringify(a.upstream) === JSON.stringify(b.upstream);
}

export interface ReloadResult {
  applied: string[];
  /** Changes that only take effect after a restart (listen/admin addresses, limits of running versions). */
  restartRequired: string[];
}

export interface OperationsOptions {
  supervisor: Supervisor;
  log: Logger;
  /** The config file SIGHUP and POST /admin/reload re-read. */
  configPath: string;
  env: NodeJS.ProcessEnv;
}

export class Operations {
  readonly #supervisor: Supervisor;
  readonly #log: Logger;
  readonly #options: OperationsOptions;
  #reloading: Promise<ReloadResult> | undefined;
  /** Names being added right now: a second add of the same name is refused, not raced. */
  readonly #adding = new Set<string>();

  constructor(options: OperationsOptions) {
    this.#supervisor = options.supervisor;
    this.#log = options.log;
    this.#options = options;
  }

  status(): StatusBody {
    return statusOf(this.#supervisor, (g) => this.#extra(g));
  }

  #extra(group: VersionGroup): { builds: VersionStatus['builds']; lastDeploy: DeployRecord | null } {
    const builds = [...group.previousBuilds.map((b) => ({ entry: b.entry, current: false })), { entry: group.build.entry, current: true }];
    return { builds, lastDeploy: group.lastDeploy ?? null };
  }

  #versionStatus(group: VersionGroup): VersionStatus {
    return versionStatus(group, this.#extra(group));
  }

  #group(name: string): VersionGroup {
    const group = this.#supervisor.versions.get(name);
    if (group === undefined) {
      throw new GraygateError('unknown_version', `unknown version "${name}"; known versions: ${[...this.#supervisor.versions.keys()].join(', ')}`);
    }
    return group;
  }

  /** PUT /admin/weights: the named weights at once, others unchanged. */
  setWeights(raw: unknown): StatusBody {
    const weights = parseBody(weightsBody, raw);
    for (const name of Object.keys(weights)) this.#group(name);
    const after = new Map([...this.#supervisor.versions].map(([n, g]) => [n, weights[n] ?? g.weight]));
    if ([...after.values()].every((w) => w === 0)) throw new GraygateError('invalid_request', 'at least one version needs a weight > 0');
    this.#supervisor.setWeights(weights);
    this.#log.info({ weights }, 'weights changed');
    return this.status();
  }

  /** POST /admin/versions: serves only once its workers are ready. */
  async addVersion(raw: unknown): Promise<VersionStatus> {
    const { name, ...version } = parseBody(addBody, raw);
    return this.#add(name, { ...version, entry: this.#allowedEntry(version.entry) }, 'add');
  }

  /** The absolute entry, or 400 when it lies outside admin.entryRoots. */
  #allowedEntry(entry: string): string {
    const absolute = absoluteEntry(entry);
    const configured = this.#supervisor.config.admin.entryRoots;
    const roots = configured.length > 0 ? configured : [process.cwd()];
    if (!isEntryAllowed(absolute, roots)) {
      throw new GraygateError('invalid_request', `entry: ${absolute} is outside admin.entryRoots (${roots.map((r) => resolvePath(r)).join(', ')})`);
    }
    return absolute;
  }

  async #add(name: string, version: VersionConfig, kind: 'add' | 'reload'): Promise<VersionStatus> {
    if (this.#supervisor.versions.has(name) || this.#adding.has(name)) {
      throw new GraygateError('version_exists', `version "${name}" exists; deploy to change its build`);
    }
    this.#adding.add(name);
    try {
      return await this.#startVersion(name, version, kind);
    } finally {
      this.#adding.delete(name);
    }
  }

  async #startVersion(name: string, version: VersionConfig, kind: 'add' | 'reload'): Promise<VersionStatus> {
    const build = buildOf(version);
    const group = new VersionGroup(name, version.weight, build, this.#supervisor.config.limits);
    const record: DeployRecord = { kind, from: null, to: build.entry, phase: 'starting', startedAt: new Date().toISOString(), oldPids: [], newPids: [] };
    group.lastDeploy = record;
    const workers = await startBuild(this.#supervisor, group, build, record, this.#log);
    this.#supervisor.switchBuild(group, build, workers);
    this.#supervisor.addGroup(group);
    record.phase = 'done';
    this.#log.info({ version: name, entry: build.entry, weight: version.weight }, 'version added');
    return this.#versionStatus(group);
  }

  /** POST /admin/versions/:name/deploy. */
  async deploy(name: string, raw: unknown): Promise<VersionStatus> {
    const group = this.#group(name);
    const body = parseBody(deployBody, raw);
    const build: Build = {
      entry: body.entry === undefined ? group.build.entry : this.#allowedEntry(body.entry),
      instances: body.instances ?? group.build.instances,
      env: body.env ?? group.build.env,
      upstream: body.upstream ?? group.build.upstream,
    };
    await deployBuild(this.#supervisor, group, build, 'deploy', this.#log);
    return this.#versionStatus(group);
  }

  /** POST /admin/versions/:name/rollback: the build before the current one. */
  async rollback(name: string): Promise<VersionStatus> {
    const group = this.#group(name);
    const previous = group.previousBuilds.at(-1);
    if (previous === undefined) throw new GraygateError('no_previous_build', `version "${name}" has no previous build`);
    await deployBuild(this.#supervisor, group, previous, 'rollback', this.#log);
    group.previousBuilds.pop();
    return this.#versionStatus(group);
  }

  /** DELETE /admin/versions/:name: stop routing, drain, stop, forget. */
  async removeVersion(name: string): Promise<VersionStatus> {
    const group = this.#group(name);
    if (this.#supervisor.config.routing.default === name) {
      throw new GraygateError('invalid_request', `version "${name}" is the routing default; change routing.default first`);
    }
    const othersWeighted = [...this.#supervisor.versions.values()].some((g) => g.name !== name && g.weight > 0);
    if (!othersWeighted) throw new GraygateError('invalid_request', `version "${name}" is the last version with weight > 0`);
    await this.#retireVersion(group);
    return this.#versionStatus(group);
  }

  /** Stop routing to a version, refuse its waiters, drain and stop its workers. */
  async #retireVersion(group: VersionGroup): Promise<void> {
    if (group.isDeploying) throw new GraygateError('deploy_in_progress', `a deploy of ${group.name} is running; remove it once that finishes`);
    this.#supervisor.removeGroup(group.name);
    group.admission.destroy(new GraygateError('no_ready_worker', `version "${group.name}" was removed`));
    await this.#supervisor.retire(group, group.workers);
    this.#log.info({ version: group.name }, 'version removed');
  }

  /** POST /admin/reload and SIGHUP: re-read the file and apply the difference. One at a time. */
  reload(): Promise<ReloadResult> {
    this.#reloading ??= this.#reload().finally(() => {
      this.#reloading = undefined;
    });
    return this.#reloading;
  }

  async #reload(): Promise<ReloadResult> {
    const loaded = loadConfig(this.#options.configPath, this.#options.env);
    if (!loaded.ok) throw new GraygateError('invalid_config', `config not reloaded, the running config stays:\n${loaded.problems.join('\n')}`);
    const next: Config = loaded.value;
    const current = this.#supervisor.config;
    const result: ReloadResult = { applied: [], restartRequired: [] };
    for (const key of ['listen', 'admin', 'limits'] as const) {
      if (JSON.stringify(next[key]) !== JSON.stringify(current[key])) result.restartRequired.push(key);
    }
    // Order: add new versions first so a new default exists before routing points at it; remove last.
    for (const [name, version] of Object.entries(next.versions)) {
      if (!this.#supervisor.versions.has(name)) {
        await this.#add(name, version, 'reload');
        result.applied.push(`added ${name}`);
      }
    }
    for (const [name, version] of Object.entries(next.versions)) {
      const group = this.#supervisor.versions.get(name)!;
      const build = buildOf(version);
      if (!sameBuild(build, group.build)) {
        await deployBuild(this.#supervisor, group, build, 'reload', this.#log);
        result.applied.push(`deployed ${name}`);
      }
    }
    const weights: Record<string, number> = {};
    for (const [name, version] of Object.entries(next.versions)) {
      if (this.#supervisor.versions.get(name)!.weight !== version.weight) weights[name] = version.weight;
    }
    this.#supervisor.setConfig({ ...next, limits: current.limits, listen: current.listen, admin: current.admin });
    if (Object.keys(weights).length > 0) {
      this.#supervisor.setWeights(weights);
      result.applied.push(`weights ${Object.entries(weights).map(([n, w]) => `${n}=${w}`).join(' ')}`);
    }
    for (const name of [...this.#supervisor.versions.keys()]) {
      if (!Object.hasOwn(next.versions, name)) {
        await this.#retireVersion(this.#supervisor.versions.get(name)!);
        result.applied.push(`removed ${name}`);
      }
    }
    if (JSON.stringify(next.routing) !== JSON.stringify(current.routing)) result.applied.push('routing');
    this.#log.info(result, 'config reloaded');
    return result;
  }
}
