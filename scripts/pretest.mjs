#!/usr/bin/env node
// `npm test`'s pretest: build, the tests' type-check and compile, and the linters (each one a
// single-threaded process, so they run in two lanes below). Each one's output is printed whole when
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
// Two lanes, one per core of CI's 2: ESLint (type-aware, the longest single step, ~45 s), then tap's
// build, beside the build, the tests' type-check and compile (into dist/test/, where run-tap.mjs runs them),
// knip, the cycle check and prettier's, which run one after another. `npm run lint` is the same four checks.
const sequence = async (steps) => {
  for (const step of steps) {
    const code = await step();
    if (code !== 0) return code;
  }
  return 0;
};
// tap rebuilds its Test class for package.json's plugin list on its first run after `npm ci` (6–8 s, alone before the
// first test): here, after ESLint, beside the other lane's last steps. Not before the tests' type-check has ended,
// which reads tap's types (as ESLint's type-aware rules do, done by then in this lane).
let testsChecked;
const afterTestsCheck = new Promise((resolve) => (testsChecked = resolve));
const codes = await Promise.all([
  sequence([
    () => run('lint: eslint', npm, ['exec', '--', 'eslint', '.']),
    async () => {
      await afterTestsCheck;
      return run("tests: tap's Test class for its plugins", npm, ['exec', '--', 'tap', 'build']);
    },
  ]),
  sequence([
    () => run('build', npm, ['run', '--silent', 'build']),
    async () => {
      try {
        return await run('tests: type-check and compile', npm, ['exec', '--', 'tsc', '-p', 'tsconfig.test.json']);
      } finally {
        testsChecked();
      }
    },
    () => run('lint: knip', npm, ['exec', '--', 'knip']),
    () => run('lint: import cycles', process.execPath, ['scripts/check-cycles.mjs']),
    () => run('lint: prettier', npm, ['exec', '--', 'prettier', '--check', '--log-level', 'warn', '.']),
  ]).finally(testsChecked), // a build that failed: the type-check never ran
]);
process.exit(codes.find((c) => c !== 0) ?? 0);
