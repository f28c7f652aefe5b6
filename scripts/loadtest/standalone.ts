import { upstreamSchema } from '../../shared/config.js';
import { DEFAULTS } from '../../shared/defaults.js';
import { PROTOCOL_VERSION, WORKER_SETTINGS_ENV, type WorkerSettings } from '../../shared/ipc.js';
import { NAIVE_PROXY_ENTRY, ROOT } from './paths.js';
import { forkTracked, stopTracked, type Tracked } from './processes.js';
import { pickListening, waitForMessage } from './ipc-wait.js';

// Processes started without a graygate master: a worker build driven through
// the real IPC handshake (so the naive proxies and the "direct" runs hit the
// very same worker code graygate forks), and the naive proxies.

export interface StandaloneProcess {
  url: string;
  pid: number;
  process: Tracked;
  stop: () => Promise<void>;
}

export interface StandaloneWorkerOptions {
  /** Worker entry (dist/worker/main.js or the test worker). */
  entry: string;
  /** Extra env, like a version's `env`. */
  env?: Record<string, string>;
  /** The version's upstream (SPEC §2); default the embedded mock. */
  upstream?: Record<string, unknown>;
  logLevel: string;
  signal?: AbortSignal;
}

/** Forks a worker as the master would and waits for its `ready` message. */
export async function startStandaloneWorker(options: StandaloneWorkerOptions): Promise<StandaloneProcess> {
  const settings: WorkerSettings = {
    protocol: PROTOCOL_VERSION,
    version: 'direct',
    instance: 0,
    upstream: upstreamSchema.parse(options.upstream ?? { format: 'openai', url: 'mock:' }),
    limits: { maxBodyBytes: DEFAULTS.limits.maxBodyBytes, shutdownTimeoutMs: 3000 },
    logLevel: options.logLevel,
  };
  const env = {
    ...process.env,
    ...options.env,
    LOG_LEVEL: options.logLevel,
    [WORKER_SETTINGS_ENV]: JSON.stringify(settings),
  };
  const p = forkTracked('worker', options.entry, [], { cwd: ROOT, env, serialization: 'json' });
  const stop = (): Promise<void> => stopTracked(p);
  try {
    const address = await waitForMessage(p, {
      timeoutMs: 15_000,
      signal: options.signal,
      pick: (msg) => {
        const m = msg as { type?: string; address?: { host: string; port: number } } | null;
        return m?.type === 'ready' && m.address !== undefined ? m.address : undefined;
      },
    });
    return { url: `http://${address.host}:${address.port}`, pid: p.pid, process: p, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface NaiveProxyOptions {
  mode: 'http-proxy-3' | 'pipe' | 'minimal' | 'rawbody';
  targetUrl: string;
  /** mode minimal only: reach the target over this unix socket instead of targetUrl's host and port. */
  socketPath?: string;
  /** Extra env (the rawbody prototype's RAWBODY_ONREAD). */
  env?: Record<string, string>;
  /** Run it with --cpu-prof, its profile written to this directory on exit. */
  cpuProfDir?: string | undefined;
  signal?: AbortSignal;
}

export async function startNaiveProxy(options: NaiveProxyOptions): Promise<StandaloneProcess> {
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    NAIVE_PROXY_MODE: options.mode,
    NAIVE_PROXY_TARGET: options.targetUrl,
    ...options.env,
  };
  if (options.socketPath !== undefined) env['NAIVE_PROXY_SOCKET'] = options.socketPath;
  const execArgv = options.cpuProfDir === undefined ? [] : ['--cpu-prof', `--cpu-prof-dir=${options.cpuProfDir}`];
  const p = forkTracked(`naive proxy (${options.mode})`, NAIVE_PROXY_ENTRY, [], { cwd: ROOT, env, execArgv });
  // A profile is written on exit: time to write it.
  const stop = (): Promise<void> => stopTracked(p, { graceMs: options.cpuProfDir === undefined ? 1000 : 15_000 });
  try {
    const { url } = await waitForMessage(p, { pick: pickListening, timeoutMs: 15_000, signal: options.signal });
    return { url, pid: p.pid, process: p, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
