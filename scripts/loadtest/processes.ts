import { fork, spawn, type ChildProcess, type ForkOptions, type SpawnOptions } from 'node:child_process';
import { setMaxListeners } from 'node:events';

// Every process a scenario starts goes through here (issue 6: "stops what it
// started even when interrupted"). Each child leads its own process group, so
// stopping it also reaches anything it forked (graygate's workers, nginx's
// workers), and nothing else: we only ever signal groups we created.

export interface Tracked {
  readonly name: string;
  readonly child: ChildProcess;
  readonly pid: number;
  /** Resolves once the group leader has exited. */
  readonly exited: Promise<void>;
  /** Last lines of stderr, for error messages. */
  stderrTail(): string;
  /** Synchronous clean-ups (temp dirs) run once the process is stopped, on every stop path. */
  readonly cleanups: Array<() => void>;
}

export interface StopOptions {
  /** How long the leader gets to exit after SIGTERM before the group is SIGKILLed, in ms. Default 5000. */
  graceMs?: number;
}

const running = new Set<Tracked>();
const STDERR_TAIL_BYTES = 4096;

function track(name: string, child: ChildProcess): Tracked {
  if (child.pid === undefined) {
    child.once('error', () => undefined); // reported by the throw below: its 'error' comes next, unhandled it would end us
    throw new Error(`${name} did not start`);
  }
  let tail = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    tail = (tail + d).slice(-STDERR_TAIL_BYTES);
  });
  // A spawn that failed (its cwd or command missing) is an 'error' and no 'exit': it ends here as an exit, its reason
  // in the tail a failed wait reports (an unhandled 'error' ended the load test with a stack).
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      tail += `\n${name}: ${err.message}`;
      resolve();
    });
  });
  const tracked: Tracked = { name, child, pid: child.pid, exited, stderrTail: () => tail, cleanups: [] };
  running.add(tracked);
  // The leader is gone; its group may not be (a worker that outlived its master).
  void exited.then(() => killGroup(tracked.pid, 'SIGKILL'));
  return tracked;
}

/** child_process.fork in its own process group, with an IPC channel. stdout is discarded (pino lines). */
export function forkTracked(name: string, modulePath: string, args: string[], options: ForkOptions = {}): Tracked {
  const child = fork(modulePath, args, { stdio: ['ignore', 'ignore', 'pipe', 'ipc'], ...options, detached: true });
  return track(name, child);
}

/** child_process.spawn in its own process group. */
export function spawnTracked(name: string, command: string, args: string[], options: SpawnOptions = {}): Tracked {
  const child = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'], ...options, detached: true });
  return track(name, child);
}

function killGroup(pid: number, signal: NodeJS.Signals): void {
  try {
    process.kill(-pid, signal);
  } catch {
    // the group is gone already
  }
}

function isRunning(p: Tracked): boolean {
  return p.child.exitCode === null && p.child.signalCode === null;
}

/** SIGTERM to the leader (graygate drains gracefully), then SIGKILL to the whole group. Idempotent. */
export async function stopTracked(p: Tracked, options: StopOptions = {}): Promise<void> {
  if (isRunning(p)) {
    p.child.kill('SIGTERM');
    const timer = setTimeout(() => killGroup(p.pid, 'SIGKILL'), options.graceMs ?? 5000);
    await p.exited;
    clearTimeout(timer);
  }
  killGroup(p.pid, 'SIGKILL');
  running.delete(p);
  runCleanups(p);
}

function runCleanups(p: Tracked): void {
  for (const cleanup of p.cleanups.splice(0)) {
    try {
      cleanup();
    } catch {
      // best effort: a temp dir left behind is not worth failing a run for
    }
  }
}

/** Stops everything still running, newest first. */
export async function stopAll(options: StopOptions = {}): Promise<void> {
  await Promise.all([...running].reverse().map((p) => stopTracked(p, options)));
}

/** Last-resort cleanup: synchronous, for 'exit' and fatal paths. */
function killAllNow(): void {
  for (const p of running) {
    killGroup(p.pid, 'SIGKILL');
    runCleanups(p);
  }
  running.clear();
}

const INTERRUPT_EXIT_CODES: Partial<Record<NodeJS.Signals, number>> = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };

/**
 * A signal that aborts on SIGINT/SIGTERM/SIGHUP (a closed terminal), once everything
 * forkTracked has been asked to stop (twice: killed now); then exit 128 + the signal's number.
 * The scenario's own `finally` blocks also stop things; both paths are idempotent.
 * Every concurrent stream of a scenario listens on it: no listener cap.
 */
export function interruptSignal(): AbortSignal {
  const abort = new AbortController();
  setMaxListeners(0, abort.signal);
  installInterruptHandlers(abort);
  return abort.signal;
}

function installInterruptHandlers(abort: AbortController): void {
  let isStopping = false;
  const onSignal = (signal: NodeJS.Signals): void => {
    const code = INTERRUPT_EXIT_CODES[signal] ?? 1;
    if (isStopping) {
      killAllNow();
      process.exit(code);
    }
    isStopping = true;
    process.stderr.write(`\nloadtest: ${signal}, stopping what it started…\n`);
    abort.abort(new Error(`interrupted by ${signal}`));
    void stopAll({ graceMs: 2000 }).finally(() => process.exit(code));
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onSignal);
  process.on('exit', killAllNow);
}
