#!/usr/bin/env node
// `npm test` (issue 9 part 0): runs node-tap as configured in package.json and
// ends with the summary lines TAP runners print (tape, node --test):
//   # tests N / # pass N / # fail N / # skip N / # todo N
// read from tap's own last line (`# { total: N, pass: N, fail: N, … }`).
// tap's output passes through unchanged; its exit code is ours. Plain JS so it
// runs before and without the TypeScript build.
import { spawn } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { readdirSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';

const tapBin = createRequire(import.meta.url)
  .resolve('tap/package.json')
  .replace(/package\.json$/, 'dist/esm/run.mjs');
// With no arguments, the whole suite as compiled by the pretest (tsconfig.test.json emits test/ into
// dist/test/): plain JavaScript needs no TypeScript loader, and tap's TAP_TYPE_STRIP_ONLY=1 keeps its
// ts-node hook out of every test process (about 1 s of CPU each). Coverage maps back to the .ts
// sources through the emitted source maps. The suite is the files package.json's tap `include`
// names: every unit test file in one process (test/all-units.test.ts says why; its name sorts first,
// so it starts first), and the e2e files in three processes beside it that share them out
// (test/helpers/e2e-lane.ts). tap's plugins are the ones the tests use (package.json `tap.plugin`
// takes out the rest): on Node 20, @tapjs/mock's module hooks alone cost each test process ~0.6 s of
// CPU. tap rebuilds its Test class for that list once after `npm ci` (6–8 s; the pretest's `tap build`,
// beside its other steps, or else the first run); the pretest type-checks before, against the full
// class, so a test that calls a method of a plugin taken out compiles there and fails when it runs
// (add the plugin back). With arguments (`npm test
// -- test/e2e/x.test.ts`), tap runs what it is given, TypeScript through ts-node as `npx tap` does,
// and reports the coverage without failing on the whole suite's thresholds, which a few files never
// reach.
const args = process.argv.slice(2);
// The lanes share out the e2e files through a directory named by this run's id, removed when tap ends; an e2e file
// with no entry there by then was run by no lane, and fails the run (each counts as a failure).
const run = randomUUID();
const suite = [
  '--test-env=TAP_TYPE_STRIP_ONLY=1',
  `--test-env=GRAYGATE_E2E_RUN=${run}`,
  'dist/test/all-units.test.js',
  'dist/test/e2e-lane-*.test.js',
];
const child = spawn(
  process.execPath,
  [tapBin, ...(args.length > 0 ? ['--allow-incomplete-coverage', ...args] : suite)],
  {
    stdio: ['inherit', 'pipe', 'inherit'],
  },
);
let tail = '';
child.stdout.on('data', (chunk) => {
  process.stdout.write(chunk);
  tail = (tail + chunk.toString('utf8')).slice(-4096);
});
const forward = (signal) => child.kill(signal);
process.on('SIGINT', forward);
process.on('SIGTERM', forward);
child.on('close', (code, signal) => {
  // A run stopped by a signal (^C) took no more files: nothing to report.
  const unrun = args.length > 0 || signal !== null ? [] : untaken();
  rmSync(`.tap/e2e-lanes/run-${run}`, { recursive: true, force: true });
  // What a test process's children wrote and it did not move to .tap/coverage (test/helpers/child-env.ts): a report
  // still being written as it exited, or all of a test process that crashed. The report has been made.
  rmSync('.tap/coverage-children', { recursive: true, force: true });
  const line = [...tail.matchAll(/^# \{ (total: \d+[^}]*) \}$/gm)].at(-1)?.[1] ?? '';
  const counts = Object.fromEntries([...line.matchAll(/(\w+): (\d+)/g)].map((m) => [m[1], Number(m[2])]));
  const total = counts.total ?? 0;
  const pass = counts.pass ?? 0;
  const fail = counts.fail ?? (code === 0 ? 0 : Math.max(1, total - pass));
  process.stdout.write(
    `# tests ${total}\n# pass ${pass}\n# fail ${fail + unrun.length}\n# skip ${counts.skip ?? 0}\n# todo ${counts.todo ?? 0}\n`,
  );
  if (unrun.length > 0) process.stdout.write(`# e2e files no lane took: ${unrun.join(', ')}\n`);
  process.exit(signal === null && unrun.length === 0 ? (code ?? 1) : 1);
});

/**
 * The e2e files no lane took (test/helpers/e2e-lane.ts): none unless a lane stopped early (a file that timed out, a
 * crash), which fails the run anyway; a file left out without a failure would otherwise pass unseen.
 */
function untaken() {
  const ext = '.test.js';
  const read = (dir, options) => {
    try {
      return readdirSync(dir, options);
    } catch {
      return [];
    }
  };
  const taken = new Set(read(`.tap/e2e-lanes/run-${run}`));
  return read('dist/test/e2e', { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith(ext) && !taken.has(encodeURIComponent(file.slice(0, -ext.length))))
    .sort();
}
