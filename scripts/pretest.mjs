#!/usr/bin/env node
// `npm test`'s pretest: build, then the tests' type-check and compile (into dist/test/, where
// run-tap.mjs runs them) and the linters side by side (each is one single-threaded process; on CI's
// 2 cores running them together saves about half a minute). Each one's output is printed whole when
// it ends; the exit code is the first failure's. Plain JS so it runs before the build.
import { spawn } from 'node:child_process';
import { existsSync, readdirSync, rmSync } from 'node:fs';
import { join, relative } from 'node:path';

function run(name, command, args) {
  return new Promise((resolve) => {
    const started = performance.now();
    const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], shell: process.platform === 'win32' });
    const output = [];
    child.stdout.on('data', (chunk) => output.push(chunk));
    child.stderr.on('data', (chunk) => output.push(chunk));
    child.on('close', (code, signal) => {
      const seconds = ((performance.now() - started) / 1000).toFixed(1);
      process.stdout.write(`# ${name}: ${code === 0 ? 'ok' : `failed (${signal ?? code})`} in ${seconds} s\n`);
      process.stdout.write(Buffer.concat(output));
      resolve(code === 0 ? 0 : (code ?? 1));
    });
  });
}

/** Compiled tests whose source is gone (renamed or deleted): tap would still run them from dist/. */
function removeStaleTests(dir) {
  let entries;
  try {
    entries = readdirSync(dir, { withFileTypes: true });
  } catch {
    return; // no dist/test yet
  }
  for (const entry of entries) {
    const path = join(dir, entry.name);
    if (entry.isDirectory()) removeStaleTests(path);
    else if (entry.name.endsWith('.test.js') && !existsSync(relative('dist', path).replace(/\.js$/, '.ts'))) {
      rmSync(path);
      rmSync(`${path}.map`, { force: true });
    }
  }
}

const npm = process.platform === 'win32' ? 'npm.cmd' : 'npm';
removeStaleTests(join('dist', 'test'));
const build = await run('build', npm, ['run', '--silent', 'build']);
if (build !== 0) process.exit(build);
const codes = await Promise.all([
  // Type-checks the tests and compiles them into dist/test/, where `npm test` runs them (run-tap.mjs).
  run('tests: type-check and compile', npm, ['exec', '--', 'tsc', '-p', 'tsconfig.test.json']),
  run('lint', npm, ['run', '--silent', 'lint']),
]);
process.exit(codes.find((c) => c !== 0) ?? 0);
