import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { MASTER_ENTRY, ROOT, buildEntries } from './paths.js';
import { forkTracked, stopTracked, type Tracked } from './processes.js';
import { pickListening, waitForMessage } from './ipc-wait.js';

// A graygate master started the way a user would (dist/master/main.js with a
// config file), but with a generated config on 127.0.0.1 port 0 (issue 6).

export interface GatewayOptions {
  /** `versions` of the config file (SPEC §2). */
  versions: Record<string, Record<string, unknown>>;
  /** `limits` of the config file; shutdownTimeoutMs defaults to 3000 here so stopping is quick. */
  limits?: Record<string, unknown>;
  /** LOG_LEVEL of master and workers. The per-request line is part of graygate's cost, so scenarios default to info. */
  logLevel: string;
  /**
   * Root of the graygate build to run (its dist/master/main.js); default this tree.
   * Versions' `entry` is not rewritten: pass the same root's worker entry.
   */
  root?: string;
  /** Extra environment for master and workers (workers inherit it). */
  env?: Record<string, string>;
  /** Node flags for the master, which its workers inherit (fork's default execArgv), e.g. --cpu-prof. */
  execArgv?: string[];
  /** Each line the master writes to stdout (its log, its workers' relayed, V8's traces); default: discarded. */
  onStdoutLine?: (line: string) => void;
  signal?: AbortSignal;
}

export interface WorkerInfo {
  version: string;
  pid: number;
  state: string;
  inflight: number;
}

export interface RunningGateway {
  url: string;
  adminUrl: string;
  /** The master's PID. */
  pid: number;
  process: Tracked;
  /** Calls the admin API; throws on network errors only. */
  admin<T = unknown>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }>;
  workers(): Promise<WorkerInfo[]>;
  /** Why the master exited before stop() (its code or signal), or undefined while it runs. */
  exitedWith(): string | undefined;
  stop: () => Promise<void>;
}

export async function startGateway(options: GatewayOptions): Promise<RunningGateway> {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-loadtest-'));
  const configPath = join(dir, 'graygate.json');
  const config = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    limits: { shutdownTimeoutMs: 3000, ...options.limits },
    versions: options.versions,
  };
  writeFileSync(configPath, JSON.stringify(config, null, 2));
  const env: NodeJS.ProcessEnv = { ...process.env, ...options.env, LOG_LEVEL: options.logLevel };
  delete env['GRAYGATE_ADMIN_TOKEN'];
  delete env['PORT'];
  delete env['HOST'];
  const entry = options.root === undefined ? MASTER_ENTRY : buildEntries(options.root).master;
  const cwd = options.root ?? ROOT;
  const p = forkTracked('graygate', entry, ['--config', configPath], {
    cwd,
    env,
    execArgv: [...process.execArgv, ...(options.execArgv ?? [])],
    ...(options.onStdoutLine === undefined ? {} : { stdio: ['ignore', 'pipe', 'pipe', 'ipc'] }),
  });
  const onLine = options.onStdoutLine;
  if (onLine !== undefined && p.child.stdout !== null)
    createInterface({ input: p.child.stdout, crlfDelay: Infinity }).on('line', onLine);
  p.cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
  const stop = (): Promise<void> => stopTracked(p);
  let listening;
  try {
    listening = await waitForMessage(p, { pick: pickListening, timeoutMs: 30_000, signal: options.signal });
  } catch (err) {
    await stop();
    throw err;
  }
  const adminUrl = listening.adminUrl ?? '';
  const admin = async <T>(method: string, path: string, body?: unknown): Promise<{ status: number; body: T }> => {
    const init: RequestInit = { method, headers: { 'content-type': 'application/json' } };
    if (body !== undefined) init.body = JSON.stringify(body);
    const res = await fetch(adminUrl + path, init);
    const text = await res.text();
    return { status: res.status, body: (text.startsWith('{') ? JSON.parse(text) : text) as T };
  };
  const workers = async (): Promise<WorkerInfo[]> => {
    const { body } = await admin<{
      versions: Record<string, { workers: Array<{ pid?: number; state: string; inflight: number }> }>;
    }>('GET', '/admin/status');
    const out: WorkerInfo[] = [];
    for (const [version, v] of Object.entries(body.versions)) {
      for (const w of v.workers)
        if (w.pid !== undefined) out.push({ version, pid: w.pid, state: w.state, inflight: w.inflight });
    }
    return out;
  };
  let isStopping = false;
  const exitedWith = (): string | undefined => {
    if (isStopping) return undefined;
    const { exitCode, signalCode } = p.child;
    if (signalCode !== null) return `killed by ${signalCode}`;
    return exitCode === null ? undefined : `exit code ${exitCode}`;
  };
  const stopping = (): Promise<void> => {
    isStopping = true;
    return stop();
  };
  return { url: listening.url, adminUrl, pid: p.pid, process: p, admin, workers, exitedWith, stop: stopping };
}
