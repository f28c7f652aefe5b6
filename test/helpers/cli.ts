import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { nodeLaunch } from './child-env.js';
import { ROOT } from './gateway.js';

// Runs the built CLI (bin/graygate.js) as a user would, with a clean admin environment.

const CLI_BIN = join(ROOT, 'bin/graygate.js');
const CLEAN_ENV = { GRAYGATE_ADMIN_URL: '', GRAYGATE_ADMIN_PORT: '', GRAYGATE_ADMIN_TOKEN: '' };

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function runCli(args: string[], env: Record<string, string> = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const node = nodeLaunch({ ...CLEAN_ENV, ...env });
    const child = spawn(node.command, [...node.prefix, CLI_BIN, ...args], {
      env: node.env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}
