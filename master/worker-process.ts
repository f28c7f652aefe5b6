import type { ChildProcess } from 'node:child_process';
import { WORKER_SETTINGS_ENV, type WorkerAddress, type WorkerSettings } from '../shared/ipc.js';

// A forked worker's OS process as the master sees it (worker-handle.ts holds its
// lifecycle): the node flags it is forked with, the tail of its stderr, how its
// exit is reported, and its address as node:http takes it.

/** Why a worker did not become ready or stopped: data for deploy_failed and status. */
export interface ExitReport {
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the master asked for this exit. */
  isIntended: boolean;
  /** Short description: "exited with code 3", "not ready within 15000 ms", … */
  reason: string;
  /** Last lines the worker wrote to stderr. */
  stderrTail: string[];
}

/** SPEC §6: never in a worker's environment, whatever admin.redactEnv says. */
const ADMIN_TOKEN_ENV = 'GRAYGATE_ADMIN_TOKEN';

/** The variables no worker inherits, its version's `env` notwithstanding (workerEnv deletes them last). */
export function neverInherited(adminRedactEnv: readonly string[]): string[] {
  return [ADMIN_TOKEN_ENV, ...adminRedactEnv];
}

/**
 * A worker's environment: the master's, the version's `env` over it, and its settings; never the admin token or a
 * variable named in admin.redactEnv (SPEC §6); the master's NODE_OPTIONS as workerNodeOptions leaves it, unless the
 * version's `env` sets its own on purpose.
 */
export function workerEnv(
  masterEnv: NodeJS.ProcessEnv,
  options: {
    env: Readonly<Record<string, string>>;
    settings: WorkerSettings;
    redactEnv: readonly string[];
  },
): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {
    ...masterEnv,
    ...options.env,
    [WORKER_SETTINGS_ENV]: JSON.stringify(options.settings),
  };
  for (const name of options.redactEnv) delete env[name];
  // Quoted values and their spaces kept as written.
  if (options.env?.['NODE_OPTIONS'] === undefined) {
    const nodeOptions = workerNodeOptions(env['NODE_OPTIONS']);
    if (nodeOptions === undefined) delete env['NODE_OPTIONS'];
    else env['NODE_OPTIONS'] = nodeOptions;
  }
  return env;
}

const STDERR_TAIL_LINES = 20;
const MAX_STDERR_LINE_CHARS = 500;

/**
 * A ready worker's address as http-proxy-3 and node:http take it. For a unix socket the host is
 * only what the `Host` header says; the connection goes to socketPath.
 */
export interface WorkerEndpoint {
  host: string;
  port: number;
  protocol: 'http:';
  socketPath?: string;
}

export function endpointOf(address: WorkerAddress): WorkerEndpoint {
  if ('path' in address) return { host: 'localhost', port: 80, protocol: 'http:', socketPath: address.path };
  return { host: address.host, port: address.port, protocol: 'http:' };
}

/** Master flags that take the next argument as their value when written without `=`. */
const FLAGS_WITH_VALUE = new Set([
  '--require',
  '-r',
  '--import',
  '--loader',
  '--experimental-loader',
  '--inspect-port',
  '--debug-port',
]);
/** Prefixes of master flags a worker never gets: debugger ports (two processes cannot share one) and module hooks. */
const NOT_FOR_WORKERS = ['--inspect', '--debug', '--require', '-r', '--import', '--loader', '--experimental-loader'];

/**
 * The node flags a worker is forked with (issue 9 part 0): the master's own, minus debugger
 * ports and preloaded modules. fork() passes them all by default; under a test runner that was
 * its TypeScript loader and mocks, which made each worker start cost ~2.7 s of CPU instead of
 * 0.3 s (and 15 s ready timeouts on a loaded box). Profiling and heap flags (--cpu-prof,
 * --max-old-space-size, …) still reach the workers; preloads meant for them go in NODE_OPTIONS.
 */
export function workerExecArgv(masterExecArgv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < masterExecArgv.length; i++) {
    const arg = masterExecArgv[i]!;
    const name = arg.split('=', 1)[0]!;
    if (
      NOT_FOR_WORKERS.some((p) => name === p || name.startsWith(`${p}-`) || (p.startsWith('--') && name.startsWith(p)))
    ) {
      if (!arg.includes('=') && FLAGS_WITH_VALUE.has(name)) i++; // its value is the next argument
      continue;
    }
    out.push(arg);
  }
  return out;
}

/**
 * NODE_OPTIONS as a worker gets it: the operator's, minus debugger flags (`--inspect=127.0.0.1:9229` for the master
 * made every worker fail to take the same port, on every start). Preloads stay: NODE_OPTIONS is where those meant
 * for workers go. Undefined when nothing is left.
 */
export function workerNodeOptions(value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  const kept = value
    .replace(/(^|\s+)--(?:inspect|debug)-port(?:\s+|=)\S+/g, '')
    .replace(/(^|\s+)--(?:inspect|debug)(?:-[a-z-]+)?(?:=\S*)?(?=\s|$)/g, '')
    .trim();
  return kept === '' ? undefined : kept;
}

/** A worker that exited or was killed before it reported ready. */
export class WorkerStartFailure extends Error {
  /** Data for deploy_failed and status; read as a field, not branched on by class (STYLE §7). */
  readonly report: ExitReport;
  constructor(report: ExitReport) {
    super(report.reason);
    this.name = 'WorkerStartFailure';
    this.report = report;
  }
}

/** Most bytes of workers' stderr queued for the master's own. */
const MAX_STDERR_QUEUED_BYTES = 1024 * 1024;

/**
 * A write to the master's stderr that fails (EPIPE: its reader is gone; whatever else) drops that echo, and nothing
 * can be told on a stderr that fails; unhandled, the error event killed the master and every worker (a broken build's
 * stack trace, a worker out of memory, was enough).
 */
function guardStderr(): void {
  if (process.stderr.listenerCount('error') > 0) return;
  process.stderr.on('error', () => undefined);
}

/**
 * Echoes a worker's stderr to the master's and keeps its last STDERR_TAIL_LINES lines in `tail`
 * (for the ExitReport).
 */
export function collectStderr(child: ChildProcess, tail: string[]): void {
  guardStderr();
  let partial = '';
  child.stderr?.setEncoding('utf8');
  child.stderr?.on('data', (chunk: string) => {
    // Bounded, as the log lines are: a collector that stopped reading must not grow the master (past the bound, the
    // echo is dropped; the tail below is kept for the exit report).
    if (process.stderr.writableLength < MAX_STDERR_QUEUED_BYTES) process.stderr.write(chunk);
    const lines = (partial + chunk).split('\n');
    // A line without end (a \r progress bar, a dump) must not grow the master: keep its tail only.
    partial = (lines.pop() ?? '').slice(-MAX_STDERR_LINE_CHARS);
    for (const line of lines) if (line !== '') tail.push(line.slice(0, MAX_STDERR_LINE_CHARS));
    if (tail.length > STDERR_TAIL_LINES) tail.splice(0, tail.length - STDERR_TAIL_LINES);
  });
}
