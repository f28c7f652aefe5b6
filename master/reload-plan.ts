import type { Config, VersionConfig } from '../shared/config.js';
import { buildOf, isSameBuild, type Build, type VersionView } from './version.js';

// What a reloaded config file changes (SPEC §6 reload), as plain data: the
// version registry applies it all or nothing (applyReload), and the admin
// answer and the log line say what it held.

export interface ReloadPlan {
  /** The whole new config: its routing and its weights apply at the commit. */
  next: Config;
  /** Versions the file adds. */
  adds: ReadonlyArray<readonly [string, VersionConfig]>;
  /** Versions whose entry, instances, env or upstream the file changes. */
  deploys: ReadonlyArray<readonly [string, Build]>;
  /** Versions the file no longer lists. */
  removes: readonly string[];
}

/** The difference between the running versions and `next`. */
export function planReload(versions: ReadonlyMap<string, VersionView>, next: Config): ReloadPlan {
  const adds: Array<readonly [string, VersionConfig]> = [];
  const deploys: Array<readonly [string, Build]> = [];
  for (const [name, version] of Object.entries(next.versions)) {
    const running = versions.get(name);
    if (running === undefined) adds.push([name, version]);
    else if (!isSameBuild(buildOf(version), running.build)) deploys.push([name, buildOf(version)]);
  }
  const removes = [...versions.keys()].filter((name) => !Object.hasOwn(next.versions, name));
  return { next, adds, deploys, removes };
}
