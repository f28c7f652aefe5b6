import { readFileSync } from 'node:fs';
import { isLoopbackHost, validateConfig, type Config, type Validation } from '../shared/config.js';

// SPEC §1–§2: where the config comes from and what overrides it. Start-up
// exits 78 (EX_CONFIG) on any problem; reload keeps the running config.

export const EXIT_CONFIG = 78;
export const DEFAULT_CONFIG_PATH = 'config/graygate.json';

/** `--config F`, else GRAYGATE_CONFIG, else config/graygate.json (relative to the working directory). */
export function configPath(argv: readonly string[], env: NodeJS.ProcessEnv): string {
  const i = argv.indexOf('--config');
  if (i !== -1 && argv[i + 1] !== undefined) return argv[i + 1]!;
  const eq = argv.find((a) => a.startsWith('--config='));
  if (eq !== undefined) return eq.slice('--config='.length);
  return env['GRAYGATE_CONFIG'] ?? DEFAULT_CONFIG_PATH;
}

/**
 * Applies PORT and HOST over the file's `listen`, GRAYGATE_ADMIN_PORT over `admin.port`
 * (SPEC §1; issue 12: PM2 users move ports with env, not by editing the file); problems
 * name the variable.
 */
export function applyEnvOverrides(raw: unknown, env: NodeJS.ProcessEnv, problems: string[]): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const out = { ...(raw as Record<string, unknown>) };
  const listen = { ...((out['listen'] as Record<string, unknown> | undefined) ?? {}) };
  const admin = { ...((out['admin'] as Record<string, unknown> | undefined) ?? {}) };
  const readPort = (name: string, into: Record<string, unknown>): void => {
    const value = env[name];
    if (value === undefined || value === '') return;
    if (!/^\d+$/.test(value) || Number(value) > 65535) problems.push(`${name}: must be a port number, got ${JSON.stringify(value)}`);
    else into['port'] = Number(value);
  };
  readPort('PORT', listen);
  readPort('GRAYGATE_ADMIN_PORT', admin);
  const host = env['HOST'];
  if (host !== undefined && host !== '') listen['host'] = host;
  out['listen'] = listen;
  out['admin'] = admin;
  return out;
}

export function loadConfig(path: string, env: NodeJS.ProcessEnv): Validation<Config> {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    return { ok: false, problems: [`${path}: cannot read: ${(err as Error).message}`] };
  }
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    return { ok: false, problems: [`${path}: invalid JSON: ${(err as Error).message}`] };
  }
  const problems: string[] = [];
  const withEnv = applyEnvOverrides(raw, env, problems);
  const result = validateConfig(withEnv);
  if (!result.ok) problems.push(...result.problems);
  else if (!isLoopbackHost(result.value.admin.host) && !env['GRAYGATE_ADMIN_TOKEN']) {
    // SPEC §6: a non-loopback admin port without a token is an open control plane.
    problems.push('admin.host: binding admin to a non-loopback host needs GRAYGATE_ADMIN_TOKEN');
  }
  if (problems.length > 0 || !result.ok) return { ok: false, problems };
  return result;
}
