import { join } from 'node:path';
import { runNode, type NodeRun } from './child-env.js';
import { ROOT } from './gateway.js';

// Runs the built CLI (bin/graygate.js) as a user would, with a clean admin environment.

export const CLI_BIN = join(ROOT, 'bin/graygate.js');
/** The CLI's environment with no admin address or token of the machine's own. */
export const CLEAN_ENV = { GRAYGATE_ADMIN_URL: '', GRAYGATE_ADMIN_PORT: '', GRAYGATE_ADMIN_TOKEN: '' };

export function runCli(args: string[], env: Record<string, string> = {}, cwd?: string): Promise<NodeRun> {
  return runNode([CLI_BIN, ...args], { env: { ...CLEAN_ENV, ...env }, cwd }).done;
}
