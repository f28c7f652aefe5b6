import { fork, type ChildProcess } from 'node:child_process';
import { finished } from 'node:stream/promises';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from './root.js';
import { forkLaunch } from './child-env.js';

// Starts the real, built master (dist/master/main.js) with a generated config
// on 127.0.0.1 port 0, and stops it and its whole process group at teardown.
// `npm test` builds first (pretest).

export { ROOT };
export const MASTER_ENTRY = join(ROOT, 'dist/master/main.js');
export const WORKER_ENTRY = join(ROOT, 'dist/worker/main.js');
export const TEST_WORKER_ENTRY = join(ROOT, 'dist/test/fixtures/test-worker.js');

/** The slice of node-tap's `t` we use, so helpers work with any test object. */
export interface Teardown {
  teardown(fn: () => unknown): void;
}

/**
 * A deploy's env whose build never gets ready until `giveUp()`: then it exits (test-worker.ts,
 * TEST_WORKER_GIVE_UP_FILE), so the deploy fails when the test says, not at readyTimeoutMs, which
 * stays long enough for the gateway's own start on a loaded machine.
 */
export function hangingBuild(t: Teardown): { env: Record<string, string>; giveUp(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-hang-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'give-up');
  return { env: { TEST_WORKER_START: 'hang', TEST_WORKER_GIVE_UP_FILE: file }, giveUp: () => writeFileSync(file, '') };
}

/**
 * A request the test ends when it chooses: `path` is test-worker.ts's /gate, answered once `release()` has been
 * called (a file it waits for), whatever the master is doing by then (queueing, draining, shutting down).
 */
export function requestGate(t: Teardown): { path: string; release(): void } {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-gate-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const file = join(dir, 'open');
  return { path: `/gate?file=${encodeURIComponent(file)}`, release: () => writeFileSync(file, '') };
}

export interface GatewayConfigInput {
  versions: Record<string, Record<string, unknown>>;
  routing?: Record<string, unknown>;
  limits?: Record<string, unknown>;
  admin?: Record<string, unknown>;
  cors?: Record<string, unknown>;
  config?: Record<string, unknown>;
}

export interface Gateway {
  url: string;
  adminUrl: string;
  pid: number;
  child: ChildProcess;
  configPath: string;
  /** Everything the master wrote to stdout/stderr so far. */
  output: () => string;
  /** Resolves with the exit code once the master has exited and its output has ended (output() is whole). */
  exited: Promise<number | null>;
  /** Rewrites the config file (for reload tests). */
  writeConfig(input: GatewayConfigInput): void;
}

/** The config file text the helper writes for `input` (tests that lay the file out themselves use it). */
export function configText(input: GatewayConfigInput): string {
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0, ...input.admin },
    routing: input.routing ?? {},
    // Tests are not about start-up time: a loaded CI box (2 cores, two test files each with a
    // gateway, V8 coverage on) must not fail a test on the 15 s default. Tests of the ready
    // timeout set their own.
    limits: { readyTimeoutMs: 60_000, ...input.limits },
    versions: input.versions,
    ...(input.cors === undefined ? {} : { cors: input.cors }),
    ...(input.config === undefined ? {} : { config: input.config }),
  };
  return JSON.stringify(config, null, 2);
}

function writeConfigFile(path: string, input: GatewayConfigInput): void {
  writeFileSync(path, configText(input));
}

export interface StartOptions {
  env?: Record<string, string>;
  /** Start with this config file, laid out by the test (e.g. a kubelet-style volume); `input` is then not written. */
  configPath?: string;
  /** The master's stdout: this descriptor (a pipe the test controls), not one collected; `output()` has stderr only. */
  stdout?: number;
  /**
   * The master's open-file limit, soft and hard (node raises its soft limit to the hard one): started through
   * util-linux's `prlimit`, which execs node, so the IPC channel passes through as it does through `env`.
   */
  fileLimit?: number;
}

export async function startGateway(
  t: Teardown,
  input: GatewayConfigInput,
  options: StartOptions = {},
): Promise<Gateway> {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-test-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const configPath = options.configPath ?? join(dir, 'graygate.json');
  if (options.configPath === undefined) writeConfigFile(configPath, input);
  const { child, output: out, exited } = forkMaster(t, configPath, options);
  const listening = await new Promise<{ url: string; adminUrl: string }>((res, rej) => {
    child.on('message', (msg: unknown) => {
      if (typeof msg === 'object' && msg !== null && (msg as { type?: string }).type === 'listening')
        res(msg as { url: string; adminUrl: string });
    });
    child.once('exit', (code) => rej(new Error(`master exited with ${code} before listening:\n${out()}`)));
  });
  return {
    ...listening,
    pid: child.pid!,
    child,
    configPath,
    output: out,
    exited,
    writeConfig: (next) => writeConfigFile(configPath, next),
  };
}

/** A forked master, not yet listening: its output so far, and its exit. */
export interface ForkedMaster {
  child: ChildProcess;
  output: () => string;
  exited: Promise<number | null>;
}

/**
 * Forks the master on `configPath` in a process group of its own; the teardown sends SIGTERM, then ends whatever is
 * left of the group (SIGKILL after 10 s).
 */
export function forkMaster(t: Teardown, configPath: string, options: StartOptions = {}): ForkedMaster {
  const child = fork(MASTER_ENTRY, ['--config', configPath], {
    cwd: ROOT,
    // The built master is plain JS: not tap's TypeScript loader and mocks, which fork() would pass on
    // (and the master to each worker); nor tap's processinfo (child-env.ts).
    // Own process group, so teardown can end the master and every worker it forked.
    detached: true,
    stdio: ['ignore', options.stdout ?? 'pipe', 'pipe', 'ipc'],
    ...underFileLimit(
      forkLaunch({ LOG_LEVEL: process.env['TEST_LOG_LEVEL'] ?? 'warn', ...options.env }),
      options.fileLimit,
    ),
  });
  let out = '';
  // TEST_SHOW_OUTPUT=1 echoes the master's and workers' output while debugging a test.
  const echo = process.env['TEST_SHOW_OUTPUT'] === '1';
  const collect = (d: string): void => {
    out += d;
    if (echo) process.stderr.write(d);
  };
  child.stdout?.setEncoding('utf8').on('data', collect);
  child.stderr?.setEncoding('utf8').on('data', collect);
  const exited = exitAndOutput(child);
  t.teardown(async () => {
    if (child.exitCode === null && child.signalCode === null) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => killGroup(child), 10_000);
      await exited;
      clearTimeout(timer);
    }
    killGroup(child); // anything left in the group (a worker that outlived its master)
  });
  return { child, output: () => out, exited };
}

/**
 * The exit code once the child has exited and its stdout and stderr have ended, so output() has its last lines. Not
 * 'close': node never emits it for a child whose IPC channel this process disconnected.
 */
async function exitAndOutput(child: ChildProcess): Promise<number | null> {
  // Not events.once: it would take the child's 'error' for its own and reject.
  const code = await new Promise<number | null>((res) => child.once('exit', (c) => res(c)));
  const pipes = [child.stdout, child.stderr].filter((s) => s !== null);
  await Promise.all(pipes.map((s) => finished(s).catch(() => undefined)));
  return code;
}

function underFileLimit<L extends { execPath: string; execArgv: string[] }>(launch: L, fileLimit?: number): L {
  if (fileLimit === undefined) return launch;
  return { ...launch, execPath: 'prlimit', execArgv: [`--nofile=${fileLimit}`, launch.execPath, ...launch.execArgv] };
}

function killGroup(child: ChildProcess): void {
  try {
    process.kill(-child.pid!, 'SIGKILL');
  } catch {
    // the group is already gone
  }
}

/** Fetches JSON from the admin API. */
export async function admin<T = unknown>(
  gw: Gateway,
  method: string,
  path: string,
  body?: unknown,
  headers: Record<string, string> = {},
): Promise<{ status: number; body: T }> {
  const init: RequestInit = { method, headers: { 'content-type': 'application/json', ...headers } };
  if (body !== undefined) init.body = JSON.stringify(body);
  const res = await fetch(gw.adminUrl + path, init);
  const text = await res.text();
  return { status: res.status, body: (text.startsWith('{') || text.startsWith('[') ? JSON.parse(text) : text) as T };
}
