import { createHash } from 'node:crypto';
import { pino } from 'pino';
import { closeSync, constants, fstatSync, openSync, readFileSync } from 'node:fs';
import { isLoopbackHost, validateConfig, type Config } from '../shared/config.js';

// SPEC §1–§2: where the config comes from and what overrides it. Start-up
// exits 78 (EX_CONFIG) on any problem; reload keeps the running config.

export const EXIT_CONFIG = 78;
const DEFAULT_CONFIG_PATH = 'config/graygate.json';

/** EX_USAGE: the master's arguments are wrong (`--config` without a file). */
export const EXIT_USAGE = 64;

/**
 * What is wrong with the master's arguments, if anything. It takes `--config FILE` (or `--config=FILE`) and nothing
 * else: `--config` with no file after it (the last argument, or another flag), or a flag it does not know (a typo such
 * as `--cofig F`), started the default config's gateway on its ports without a word.
 */
export function argvProblem(argv: readonly string[]): string | undefined {
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    if (arg === '--config') {
      const file = argv[i + 1];
      if (file === undefined || file.startsWith('--')) return '--config needs a file: --config FILE';
      i++;
    } else if (arg.startsWith('--config=')) {
      if (arg === '--config=') return '--config= needs a file: --config=FILE';
    } else {
      return `unknown argument ${JSON.stringify(arg)}: the gateway takes --config FILE only (and the environment variables the README lists)`;
    }
  }
  return undefined;
}

/** `--config F`, else GRAYGATE_CONFIG, else config/graygate.json (relative to the working directory). */
export function configPath(argv: readonly string[], env: NodeJS.ProcessEnv): string {
  const i = argv.indexOf('--config');
  if (i !== -1 && argv[i + 1] !== undefined) return argv[i + 1]!;
  const eq = argv.find((a) => a.startsWith('--config='));
  if (eq !== undefined) return eq.slice('--config='.length);
  return env['GRAYGATE_CONFIG'] ?? DEFAULT_CONFIG_PATH;
}

/** What LOG_LEVEL may name: pino's levels, and `silent`. */
const LOG_LEVELS = [...Object.keys(pino.levels.values), 'silent'];

/**
 * Applies PORT and HOST over the file's `listen`, GRAYGATE_ADMIN_PORT over `admin.port`
 * (SPEC §1; issue 12: PM2 users move ports with env, not by editing the file); problems
 * name the variable.
 */
function applyEnvOverrides(raw: unknown, env: NodeJS.ProcessEnv, problems: string[]): unknown {
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) return raw;
  const out = { ...(raw as Record<string, unknown>) };
  const listen = { ...((out['listen'] as Record<string, unknown> | undefined) ?? {}) };
  const admin = { ...((out['admin'] as Record<string, unknown> | undefined) ?? {}) };
  const readPort = (name: string, into: Record<string, unknown>): void => {
    const value = env[name];
    if (value === undefined || value === '') return;
    if (!/^\d+$/.test(value) || Number(value) > 65535)
      problems.push(`${name}: must be a port number, got ${JSON.stringify(value)}`);
    else into['port'] = Number(value);
  };
  readPort('PORT', listen);
  readPort('GRAYGATE_ADMIN_PORT', admin);
  const host = env['HOST'];
  if (host !== undefined && host !== '') listen['host'] = host;
  // Read by every process's logger (shared/log.ts): a level pino does not know failed start-up with its stack trace.
  const level = env['LOG_LEVEL'];
  if (level !== undefined && level !== '' && !LOG_LEVELS.includes(level))
    problems.push(`LOG_LEVEL: must be one of ${LOG_LEVELS.join(', ')}, got ${JSON.stringify(level)}`);
  out['listen'] = listen;
  out['admin'] = admin;
  return out;
}

/**
 * What makes a GRAYGATE_ADMIN_TOKEN one no admin call can send, if anything (its value is never named). A token read
 * from a file with its trailing newline (`kubectl create secret --from-file`, a CRLF file) started a master whose admin
 * API answered every call `401 unauthorized`, the right token included, and said nothing (an operator probe): a header
 * cannot carry a newline, and HTTP drops the spaces and tabs at either end of a header's value.
 */
function adminTokenProblem(token: string | undefined): string | undefined {
  if (token === undefined || token === '') return undefined;
  if (/[^\t\x20-\x7e\x80-\xff]/.test(token))
    return 'has a character an HTTP header cannot carry (a newline, a control character), so no admin call could send it; a token read from a file keeps its trailing newline';
  if (/^[\t ]|[\t ]$/.test(token))
    return 'starts or ends with a space or tab, which HTTP drops from a header, so no admin call could send it';
  return undefined;
}

/**
 * SPEC §13: the identity of a config file, shown as `graygate_config_info{hash}` so pods that run
 * different files are visible. sha256 of the file's text (UTF-8), first 12 hex digits: 48 bits,
 * plenty to tell a handful of files apart and short enough for a label. Pure: the same text gives
 * the same hash on every pod, whatever the path, the env overrides or the time it was read.
 */
export function configHash(text: string): string {
  return createHash('sha256').update(text, 'utf8').digest('hex').slice(0, 12);
}

/**
 * What loadConfig returns. On success `hash` is configHash of the very text that was validated (not
 * re-read), so the hash a caller reports always names the config it applied. A superset of
 * `Validation<Config>`: callers that only read `ok`/`value`/`problems` are unaffected.
 */
export type LoadedConfig = { ok: true; value: Config; hash: string } | { ok: false; problems: string[] };

/**
 * The most a config file may hold, bytes: a config is a few KiB (a Kubernetes ConfigMap holds 1 MiB at most). A 300 MB
 * file written over a watched config (an operator probe: a log redirected to the wrong path) was read whole and parsed:
 * the master grew from 70 MB to 1.2 GB, kept it, and its main port stalled for seconds; a larger one would end it.
 */
const MAX_CONFIG_BYTES = 16 * 1024 * 1024;

/** Opened so that a FIFO does not wait for a writer (which would hold the master's event loop till then). */
export const CONFIG_OPEN_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK;

/** Why a config file is refused unread (over MAX_CONFIG_BYTES, or not a file: a FIFO, /dev/zero), if it is. */
export function configFileProblem(stat: { isFile(): boolean; size: number }): string | undefined {
  if (!stat.isFile()) return 'not a regular file';
  if (stat.size > MAX_CONFIG_BYTES)
    return `${stat.size} bytes, over the ${MAX_CONFIG_BYTES / 1024 / 1024} MiB a config file may hold`;
  return undefined;
}

/** The config file's text; throws what configFileProblem says of it. */
export function readConfigText(path: string): string {
  const fd = openSync(path, CONFIG_OPEN_FLAGS);
  try {
    const problem = configFileProblem(fstatSync(fd));
    if (problem !== undefined) throw new Error(problem);
    return readFileSync(fd, 'utf8');
  } finally {
    closeSync(fd);
  }
}

export function loadConfig(path: string, env: NodeJS.ProcessEnv): LoadedConfig {
  let text: string;
  try {
    text = readConfigText(path);
  } catch (err) {
    return { ok: false, problems: [`${path}: cannot read: ${(err as Error).message}`] };
  }
  let raw: unknown;
  try {
    // An editor's byte-order mark (Windows Notepad) is not the JSON's.
    raw = JSON.parse(text.charCodeAt(0) === 0xfeff ? text.slice(1) : text);
  } catch (err) {
    return { ok: false, problems: [`${path}: invalid JSON: ${(err as Error).message}`] };
  }
  const problems: string[] = [];
  const withEnv = applyEnvOverrides(raw, env, problems);
  const tokenProblem = adminTokenProblem(env['GRAYGATE_ADMIN_TOKEN']);
  if (tokenProblem !== undefined) problems.push(`GRAYGATE_ADMIN_TOKEN: ${tokenProblem}`);
  const result = validateConfig(withEnv);
  if (!result.ok) problems.push(...result.problems);
  else if (!isLoopbackHost(result.value.admin.host) && !env['GRAYGATE_ADMIN_TOKEN']) {
    // SPEC §6: a non-loopback admin port without a token is an open control plane.
    problems.push('admin.host: binding admin to a non-loopback host needs GRAYGATE_ADMIN_TOKEN');
  }
  if (problems.length > 0 || !result.ok) return { ok: false, problems };
  return { ok: true, value: result.value, hash: configHash(text) };
}
