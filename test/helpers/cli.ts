import { join } from 'node:path';
import { runNodeInGroup, type NodeRun } from './child-env.js';
import { ROOT, type Teardown } from './gateway.js';

// Runs the built CLI (bin/graygate.js) as a user would, with a clean admin environment.

export const CLI_BIN = join(ROOT, 'bin/graygate.js');
/** The CLI's environment with no admin address or token of the machine's own. */
export const CLEAN_ENV = { GRAYGATE_ADMIN_URL: '', GRAYGATE_ADMIN_PORT: '', GRAYGATE_ADMIN_TOKEN: '' };

/**
 * One CLI run to its end: its exit code and whole output. In a process group of its own that `t`'s teardown ends
 * (SIGKILL), with whatever it started (`start` forks a master): a run the test did not wait for, or one still
 * running when the test failed or timed out, is not left behind.
 */
export async function runCli(
  t: Teardown,
  args: string[],
  env: Record<string, string> = {},
  cwd = ROOT,
): Promise<NodeRun> {
  const run = runNodeInGroup(t, [CLI_BIN, ...args], { ...CLEAN_ENV, ...env }, cwd);
  const code = await run.closed;
  return { code, stdout: run.stdout(), stderr: run.stderr() };
}
