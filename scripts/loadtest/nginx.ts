import { accessSync, chmodSync, constants, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { probe } from './probe.js';
import { spawnTracked, stopTracked, type Tracked } from './processes.js';

// nginx in front of a worker, for `compare` (issue 6 scenario 5): Debian's
// nginx package, our own config in a temp dir, 127.0.0.1 only,
// proxy_buffering off, upstream keepalive. Absent nginx is not an error: the
// scenario skips its column.

/** The nginx binary on PATH or in the usual sbin directories, or undefined. */
export function findNginx(): string | undefined {
  const dirs = [...(process.env['PATH'] ?? '').split(delimiter), '/usr/sbin', '/usr/local/sbin', '/sbin'];
  for (const dir of dirs) {
    if (dir === '') continue;
    const candidate = join(dir, 'nginx');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

/** nginx cannot listen on port 0, so ask the kernel for a free port and hand it over (retried on a clash). */
function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

export interface NginxOptions {
  binary: string;
  /** host:port of the worker. */
  upstream: string;
  /** Idle keep-alive connections nginx keeps to the worker (`keepalive`). */
  keepalive: number;
  signal?: AbortSignal;
}

export interface RunningNginx {
  url: string;
  process: Tracked;
  /** nginx's master and worker PIDs are in one group; the worker is what serves. */
  pid: number;
  stop: () => Promise<void>;
}

function config(dir: string, port: number, options: NginxOptions): string {
  // One worker process: graygate's master is one process too. Started by root, nginx's worker would
  // run as nobody and could not enter graygate's worker socket directory (0700, master/main.ts): it
  // runs as root then, the user everything else in the run is.
  const user = process.getuid?.() === 0 ? 'user root;\n' : '';
  return `${user}worker_processes 1;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  # graygate writes a log line per request too (to /dev/null in these runs).
  access_log /dev/null;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream worker {
    server ${options.upstream};
    keepalive ${options.keepalive};
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://worker;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
    }
  }
}
`;
}

export async function startNginx(options: NginxOptions): Promise<RunningNginx> {
  let lastError = '';
  for (let attempt = 0; attempt < 3; attempt++) {
    // A fresh dir per attempt: stopping a failed attempt removes its own.
    const dir = mkdtempSync(join(tmpdir(), 'graygate-nginx-'));
    chmodSync(dir, 0o755); // nginx's worker may run as nobody when we are root
    const port = await freePort();
    const conf = join(dir, 'nginx.conf');
    writeFileSync(conf, config(dir, port, options));
    const p = spawnTracked('nginx', options.binary, ['-p', dir, '-c', conf]);
    p.cleanups.push(() => rmSync(dir, { recursive: true, force: true }));
    const stop = (): Promise<void> => stopTracked(p, { graceMs: 3000 });
    const url = `http://127.0.0.1:${port}`;
    // Ready when it answers anything; bounded.
    const deadline = performance.now() + 10_000;
    while (performance.now() < deadline && p.child.exitCode === null && options.signal?.aborted !== true) {
      const r = await probe(`${url}/v1/models`, { timeoutMs: 1000, signal: options.signal });
      if (r.status !== 0) return { url, process: p, pid: p.pid, stop };
      await new Promise((res) => setTimeout(res, 50));
    }
    lastError = p.stderrTail();
    await stopTracked(p, { graceMs: 1000 });
  }
  throw new Error(`nginx did not start: ${lastError}`);
}

/**
 * nginx in front of `upstream` when it is installed and starts, else why its column is skipped (a line for the
 * notes). Installed but broken (a config it refuses, a module or directory missing), nginx failed the whole compare
 * run with exit 3, the other columns lost with it; it is an optional column, as when it is absent.
 */
export async function startNginxIfAble(
  options: Omit<NginxOptions, 'binary'>,
): Promise<RunningNginx | { skipped: string }> {
  const binary = findNginx();
  if (binary === undefined)
    return { skipped: 'nginx is not installed: its column is skipped (Debian: apt-get install nginx).' };
  try {
    return await startNginx({ ...options, binary });
  } catch (err) {
    if (options.signal?.aborted === true) throw err;
    const why = (err instanceof Error ? err.message : String(err)).trim().split('\n').slice(-3).join(' ');
    return { skipped: `nginx (${binary}) is installed but did not start, its column is skipped: ${why}` };
  }
}
