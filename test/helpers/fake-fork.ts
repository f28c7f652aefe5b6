import { fork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import type { ForkFunction } from '../../master/worker-handle.js';
import { forkLaunch } from './child-env.js';
import { ROOT } from './gateway.js';

// The injected fork of the supervisor tests (STYLE §34): real child
// processes running test/fixtures/fake-worker, with a mode per fork, counted.

export const FAKE_WORKER_ENTRY = join(ROOT, 'dist/test/fixtures/fake-worker.js');

export interface FakeFork {
  fork: ForkFunction;
  /** Every child forked so far. */
  children: ChildProcess[];
  /** The mode the next forks get (FAKE_WORKER_MODE). */
  mode: string;
}

export function fakeFork(initialMode = 'ready'): FakeFork {
  const state: FakeFork = {
    children: [],
    mode: initialMode,
    fork: (_modulePath, args, options) => {
      const child = fork(FAKE_WORKER_ENTRY, [...args], {
        ...options,
        ...forkLaunch({ FAKE_WORKER_MODE: state.mode }, options.env, options.execArgv),
      });
      state.children.push(child);
      return child;
    },
  };
  return state;
}

/** Kills whatever is still running (teardown). */
export function killAll(fake: FakeFork): void {
  for (const child of fake.children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}
