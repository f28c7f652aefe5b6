import { resolve as resolvePath } from 'node:path';
import type { UpstreamConfig, VersionConfig } from '../shared/config.js';
import type { VersionAdmission } from './admission.js';
import type { WorkerHandle, WorkerState } from './worker-handle.js';
import { neverInherited } from './worker-process.js';

// What a version is, as data (issue 11): the build it runs, and the read-only
// view every other module gets of a version. Only version-registry.ts holds
// versions and changes them; the gateway, metrics, status and the canary read
// through VersionView.

/** What a version runs: the part of its config a deploy replaces. */
export interface Build {
  /** Absolute path of the worker entry module. */
  entry: string;
  instances: number;
  env: Readonly<Record<string, string>>;
  upstream: UpstreamConfig;
}

export function buildOf(version: VersionConfig): Build {
  return {
    entry: resolvePath(version.entry),
    instances: version.instances,
    env: version.env,
    upstream: version.upstream,
  };
}

/**
 * The variables an upstream's secrets are read from (its key, its proxy's credentials): a worker inherits those of its
 * own version alone (SPEC §6's least privilege, supervisor.ts).
 */
export function upstreamSecretEnvs(upstream: Pick<UpstreamConfig, 'apiKeyEnv' | 'proxyAuthEnv'>): string[] {
  return [upstream.apiKeyEnv, upstream.proxyAuthEnv].filter((name): name is string => name !== undefined);
}

/** A version's secret variables: the config key naming each, and what its calls go without when it is missing. */
const SECRETS = [
  { key: 'apiKeyEnv', lacking: 'to the upstream without a key' },
  { key: 'proxyAuthEnv', lacking: 'to the proxy without credentials' },
] as const satisfies ReadonlyArray<{ key: keyof UpstreamConfig; lacking: string }>;

/**
 * A warn line for each secret variable a version names that its workers would not have: set neither in the master's
 * environment nor in the version's own `env` (or set empty), or kept from every worker (GRAYGATE_ADMIN_TOKEN and
 * `admin.redactEnv`, its version's `env` notwithstanding: worker-process.ts). Its calls would go without it, the
 * upstream's 401 the first sign (a README probe). A warning, not a refusal, as the variable may be one of a key the
 * upstream does not need; the line names the variable, never a value.
 */
export function unsetSecretWarnings(
  versions: Readonly<Record<string, { env: Readonly<Record<string, string>>; upstream: UpstreamConfig }>>,
  env: Readonly<Record<string, string | undefined>>,
  adminRedactEnv: readonly string[],
): string[] {
  const redacted = neverInherited(adminRedactEnv);
  const warnings: string[] = [];
  for (const [name, version] of Object.entries(versions)) {
    for (const { key, lacking } of SECRETS) {
      const variable = version.upstream[key];
      if (variable === undefined) continue;
      let why: string;
      if (redacted.includes(variable)) why = 'which no worker inherits (admin.redactEnv)';
      else if ((version.env[variable] ?? env[variable] ?? '') === '') why = 'which is not set';
      else continue;
      warnings.push(`version ${name}'s upstream.${key} names ${variable}, ${why}: its calls go ${lacking}`);
    }
  }
  return warnings;
}

export function isSameBuild(a: Build, b: Build): boolean {
  return (
    a.entry === b.entry &&
    a.instances === b.instances &&
    JSON.stringify(a.env) === JSON.stringify(b.env) &&
    JSON.stringify(a.upstream) === JSON.stringify(b.upstream)
  );
}

/** How a build came to run: an admin deploy or rollback, a config reload, or a new version. */
export type DeployKind = 'deploy' | 'rollback' | 'reload' | 'add';
/** The build swap's phases (deploy.ts): starting → probing → switching → draining → done | failed. */
export type DeployPhase = 'starting' | 'probing' | 'switching' | 'draining' | 'done' | 'failed';

/** The last build swap of a version, as /admin/status shows it (SPEC §6). */
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

/** A version as every module but the registry sees it. */
export interface VersionView {
  readonly name: string;
  readonly weight: number;
  readonly build: Build;
  /** The current build's workers; admission and routing use only these. */
  readonly workers: readonly WorkerHandle[];
  /** Old builds' workers finishing their in-flight requests. */
  readonly draining: ReadonlySet<WorkerHandle>;
  /**
   * A deploy's, rollback's or reload's new workers while they start and are probed: no traffic yet. Status and
   * metrics show them as `starting` until traffic moves to them (they are `workers` then) or the build fails.
   */
  readonly starting: ReadonlySet<WorkerHandle>;
  readonly admission: VersionAdmission<WorkerHandle>;
  /** Crashed workers restarted, over the version's life. */
  readonly restarts: number;
  /** Builds this version ran before, newest last (rollback targets). */
  readonly previousBuilds: readonly Build[];
  readonly lastDeploy: DeployRecord | undefined;
  readonly isDeploying: boolean;
  readonly hasReadyWorker: boolean;
}

/**
 * How status and metrics show a worker of a build that has no traffic yet (VersionView.starting): its process may be
 * ready while the deploy probes it or waits for the build's other instances, but it serves nothing, so it counts as
 * `starting` (a `ready` there would count toward what an operator reads as the version's serving workers).
 */
export function startingState(state: WorkerState): WorkerState {
  return state === 'ready' ? 'starting' : state;
}
