import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { collectOutput } from './child-env.js';
import { ROOT } from './root.js';

// The coverage a test's child writes (child-coverage.cjs) against node's own (NODE_V8_COVERAGE), on the same scripts:
// the project's scripts alone, each covered exactly as node has it, however the process or a thread of it ends.

const PRELOAD = join(ROOT, 'test', 'helpers', 'child-coverage.cjs');

/** A project of a main script, a module with branches, a thread, and a dependency (node_modules). */
const SCRIPTS: Record<string, string> = {
  'lib.mjs': `
export function answer(n) {
  if (n > 1) return 'many';
  return 'one';
}
export function atExit(code) {
  return code === 0 ? 'clean' : 'not';
}`,
  'thread.mjs': `
import { parentPort, workerData } from 'node:worker_threads';
import { answer } from './lib.mjs';
parentPort.postMessage(answer(workerData === 'end' ? 1 : 2));
if (workerData === 'wait') setInterval(() => {}, 1000);`,
  'node_modules/dep/index.mjs': 'export const dep = () => 1;',
  'main.mjs': `
import { once } from 'node:events';
import { Worker } from 'node:worker_threads';
import { answer, atExit } from './lib.mjs';
import { dep } from './node_modules/dep/index.mjs';
dep();
process.on('exit', (code) => atExit(code));
answer(1);
const start = async (mode) => {
  const thread = new Worker(new URL('./thread.mjs', import.meta.url), { workerData: mode });
  await once(thread, 'message');
  return thread;
};
switch (process.argv[2]) {
  case 'threads': {
    await (await start('wait')).terminate();
    (await start('wait')).unref();
    // Both listened for at once: a thread that ends before its message is read has both emitted in one call (node
    // drains its port at its exit), and an 'exit' listened for after the message never came (exit 13, an await
    // never settled: a CI run, the box busy).
    const ending = new Worker(new URL('./thread.mjs', import.meta.url), { workerData: 'end' });
    await Promise.all([once(ending, 'message'), once(ending, 'exit')]);
    break;
  }
  case 'signal':
    process.on('SIGTERM', () => process.exit(3));
    setInterval(() => {}, 1000);
    process.kill(process.pid, 'SIGTERM');
    break;
  case 'throw':
    setImmediate(() => answer(null.n));
    break;
  case 'exit-in-exit':
    process.on('exit', () => process.exit(4));
    break;
}`,
};

interface ScriptCoverage {
  url: string;
  functions: unknown[];
}

/** `node main.mjs <how>` in `project`, its coverage into `dir` by node's NODE_V8_COVERAGE or by the preload. */
async function runMain(project: string, how: string, by: 'node' | 'preload', dir: string): Promise<number | null> {
  const coverage =
    by === 'node'
      ? [`NODE_V8_COVERAGE=${dir}`]
      : [
          `NODE_OPTIONS=--require="${PRELOAD}"`,
          `TEST_CHILD_COVERAGE=${dir}`,
          `TEST_CHILD_COVERAGE_PROJECT=${pathToFileURL(project).href}/`,
        ];
  // Through `env -u NODE_OPTIONS`, as child-env.ts starts a child: tap's processinfo puts itself into a spawn's.
  const child = spawn('/usr/bin/env', ['-u', 'NODE_OPTIONS', ...coverage, process.execPath, 'main.mjs', how], {
    cwd: project,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return (await collectOutput(child)).code;
}

/** Every report's scripts in `dir`, and how many reports there were. */
function reports(dir: string): { scripts: ScriptCoverage[]; count: number } {
  const names = readdirSync(dir);
  const scripts = names.flatMap(
    (name) => (JSON.parse(readFileSync(join(dir, name), 'utf8')) as { result: ScriptCoverage[] }).result,
  );
  return { scripts, count: names.length };
}

/** Comparable: the url and functions of each script, in one order. */
function byUrl(scripts: ScriptCoverage[]): Array<{ url: string; functions: unknown[] }> {
  return scripts
    .map(({ url, functions }) => ({ url, functions }))
    .sort((a, b) => (a.url === b.url ? JSON.stringify(a).localeCompare(JSON.stringify(b)) : a.url < b.url ? -1 : 1));
}

t.test("a child's report: the project's scripts, covered as node covers them, however it ends", async (t) => {
  const project = mkdtempSync(join(tmpdir(), 'graygate-child-coverage-'));
  t.teardown(() => rmSync(project, { recursive: true, force: true }));
  for (const [file, text] of Object.entries(SCRIPTS)) {
    mkdirSync(dirname(join(project, file)), { recursive: true });
    writeFileSync(join(project, file), text);
  }
  const url = `${pathToFileURL(project).href}/`;
  const cases: Array<[string, number, number]> = [
    // how, its exit code, its reports: the process's, and each thread's (terminated, running at exit, ended)
    ['threads', 0, 4],
    ['signal', 3, 1],
    ['throw', 1, 1],
    // An 'exit' listener's process.exit(): node emits no second 'exit', it ends there (the report was lost).
    ['exit-in-exit', 4, 1],
  ];
  for (const [how, code, count] of cases) {
    const node = join(project, `node-${how}`);
    const preload = join(project, `preload-${how}`);
    t.equal(await runMain(project, how, 'node', node), code, `${how}: node's exit code`);
    t.equal(await runMain(project, how, 'preload', preload), code, `${how}: the same with the preload`);
    const theirs = reports(node);
    const ours = reports(preload);
    t.equal(ours.count, count, `${how}: a report for the process and each thread`);
    t.equal(ours.count, theirs.count, `${how}: as many as node's`);
    t.same(
      [...new Set(ours.scripts.map((s) => s.url.slice(url.length)))].sort(),
      how === 'threads' ? ['lib.mjs', 'main.mjs', 'thread.mjs'] : ['lib.mjs', 'main.mjs'],
      `${how}: the project's scripts only, not node's or node_modules'`,
    );
    t.ok(
      theirs.scripts.some((s) => s.url === `${url}node_modules/dep/index.mjs`),
      `${how}: node's has node_modules'`,
    );
    t.same(
      byUrl(ours.scripts),
      byUrl(theirs.scripts.filter((s) => s.url.startsWith(url) && !s.url.includes('/node_modules/'))),
      `${how}: each script covered as node covers it, the exit listener's run included`,
    );
  }
});
