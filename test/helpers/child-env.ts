import { spawn, type ChildProcessByStdio } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { pathToFileURL } from 'node:url';
import { ROOT } from './root.js';
import { sourceMapEntry, type SourceMapEntry } from './source-map-entry.js';

// How a test starts a node process (masters, the CLI, load-test runs, fake workers): `node` with
// this test's environment, minus what tap injects, plus coverage of the project's scripts.
//
// tap loads @tapjs/processinfo into every test process, and processinfo puts itself into the
// NODE_OPTIONS of every process that one spawns (process-on-spawn), and so into every worker a
// master forks. Its ESM loader hooks run on a thread of their own, one round trip per module: +0.65 s
// of CPU per process (measured: a master with 2 workers, start, 50 requests, stop: 7.3 s → 9.7 s of
// CPU for the three processes and curl), ×~250 processes a suite on CI's 2 cores. So the child is
// started through `env -u NODE_OPTIONS`, after the hook has run: node then starts clean, with
// NODE_OPTIONS our own coverage preload (child-coverage.cjs says what it writes and why not
// NODE_V8_COVERAGE's), which tap's report reads from .tap/coverage, source-mapped to the .ts like the
// rest. A process that is SIGKILLed writes no coverage either way. Outside tap, nothing changes: plain
// `node`, this environment.
//
// A child's report was once V8's whole coverage, node's own modules and node_modules' too, and the source
// map of each of ours: tap's report, which runs alone after every test process has ended, read ~540 MB
// from ~760 children (12.5 s of CPU on an idle box, ~19 s at the end of CI's run). So each test process's
// children write into a directory of its own, and flushChildCoverage() moves what they wrote into
// .tap/coverage, the project's scripts (dist/, bin/) only and each source map once: the e2e lanes after
// each file, every test process as it exits. Its work is spread over the run, beside the other test
// processes.

export interface NodeLaunch {
  /** What to spawn: node, or `env` that runs node. */
  command: string;
  /** The arguments before node's own (the script and its arguments follow them). */
  prefix: string[];
  env: NodeJS.ProcessEnv;
}

const PROCESSINFO_IMPORT = /@tapjs[/\\]processinfo/;

/**
 * What graygate reads from its environment (README, "Environment"): a test's child gets only what the test gives it,
 * not the shell's. `PORT=3000 npm test` moved every master a test started onto port 3000.
 */
const GRAYGATE_ENV = [
  'PORT',
  'HOST',
  'LOG_LEVEL',
  'GRAYGATE_CONFIG',
  'GRAYGATE_ADMIN_PORT',
  'GRAYGATE_ADMIN_URL',
  'GRAYGATE_ADMIN_TOKEN',
] as const;

/**
 * What a test's child goes without unless the test gives it: NODE_EXTRA_CA_CERTS, which a sandbox's shell sets to the
 * system's bundle (~220 KB of PEM), is read and parsed by node 20 as each process starts: 0.115 → 0.073 CPU s a
 * `node -e 0` (20 runs, interleaved), ~0.08 s a master and worker's life, ×~700 children a suite. A child talks to
 * 127.0.0.1 alone, to servers whose certificates the tests that use TLS trust by name (NODE_EXTRA_CA_CERTS in `extra`,
 * or the upstream's `tls.caFile`).
 */
const NOT_FOR_CHILDREN = ['NODE_EXTRA_CA_CERTS'] as const;

/**
 * How to start `node <script> …` from a test; `base` (this process's environment, without graygate's own variables)
 * with `extra` on top.
 */
export function nodeLaunch(
  extra: Record<string, string | undefined> = {},
  base: NodeJS.ProcessEnv = process.env,
): NodeLaunch {
  const env: NodeJS.ProcessEnv = { ...base };
  for (const name of [...GRAYGATE_ENV, ...NOT_FOR_CHILDREN]) delete env[name];
  Object.assign(env, extra);
  if (!PROCESSINFO_IMPORT.test(base['NODE_OPTIONS'] ?? '')) return { command: process.execPath, prefix: [], env };
  delete env['NODE_OPTIONS'];
  const prefix = ['-u', 'NODE_OPTIONS'];
  if (base['_TAPJS_PROCESSINFO_COVERAGE_'] === '1') {
    env['TEST_CHILD_COVERAGE'] = CHILD_COVERAGE;
    env['TEST_CHILD_COVERAGE_PROJECT'] = PROJECT;
    // After `-u`: processinfo's spawn hook rewrites the NODE_OPTIONS of the environment it is given, not env's
    // arguments. Quoted for a path with spaces.
    prefix.push(`NODE_OPTIONS=--require="${COVERAGE_PRELOAD}"`);
    if (!flushesOnExit) {
      flushesOnExit = true;
      process.on('exit', () => {
        flushChildCoverage();
        try {
          rmdirSync(CHILD_COVERAGE); // when empty: a report still being written stays (its process outlived this one)
        } catch {
          // not there, or not empty
        }
      });
    }
  }
  return { command: '/usr/bin/env', prefix: [...prefix, process.execPath], env };
}

/**
 * Where this process's children write their V8 coverage (flushChildCoverage moves it to tap's): named by a random id,
 * not the pid, so that a directory a bare `npx tap` left (run-tap.mjs removes them) is never taken for this one's.
 */
const CHILD_COVERAGE = join(ROOT, '.tap', 'coverage-children', randomUUID());
const TAP_COVERAGE = join(ROOT, '.tap', 'coverage');
/** The scripts a report keeps: the project's (dist/, bin/), not node's or node_modules' (tap's report drops them). */
const PROJECT = `${pathToFileURL(ROOT).href}/`;
/** The children's coverage preload (plain CommonJS, run from test/helpers/: no build). */
const COVERAGE_PRELOAD = join(ROOT, 'test', 'helpers', 'child-coverage.cjs');
let flushesOnExit = false;
/** The scripts whose source maps a report this process moved carries. */
const mapsWritten = new Set<string>();

/**
 * Moves the coverage this process's children have written into tap's .tap/coverage, only the project's scripts kept. A
 * report that does not parse is being written by a process still exiting: it stays for the next call.
 */
export function flushChildCoverage(): void {
  moveCoverage(CHILD_COVERAGE, TAP_COVERAGE, PROJECT, mapsWritten);
}

/**
 * flushChildCoverage's work, on directories and a project root of the caller's (its test lays them out): each whole
 * report in `from` goes to `to` with only the scripts under `project` (not its node_modules), and the source map of
 * each not yet in `mapsWritten` (which it adds them to), as node's cache holds it (source-map-entry.ts).
 */
export function moveCoverage(from: string, to: string, project: string, mapsWritten: Set<string>): void {
  // The same test as child-coverage.cjs's, which keeps only these already; a NODE_V8_COVERAGE report has them all.
  const isProjectScript = (url: string): boolean => url.startsWith(project) && !url.includes('/node_modules/');
  let names: string[];
  try {
    names = readdirSync(from);
  } catch {
    return; // no child has written any
  }
  mkdirSync(to, { recursive: true });
  for (const name of names) {
    const file = join(from, name);
    let report: { result?: unknown; 'source-map-cache'?: unknown };
    try {
      report = JSON.parse(readFileSync(file, 'utf8')) as typeof report;
    } catch {
      continue;
    }
    if (Array.isArray(report.result)) {
      const result = report.result.filter(
        (script: { url?: unknown }) => typeof script.url === 'string' && isProjectScript(script.url),
      ) as Array<{ url: string }>;
      // tap's report takes each script's source map from any one report (~0.8 MB a child's were, 3/4 of what it
      // kept): each goes in once a test process.
      const maps: Record<string, SourceMapEntry> = {};
      for (const { url } of result) {
        if (mapsWritten.has(url) || Object.hasOwn(maps, url)) continue;
        const entry = sourceMapEntry(url);
        if (entry !== undefined) maps[url] = entry;
      }
      writeFileSync(join(to, name), JSON.stringify({ result, 'source-map-cache': maps }));
      // Once written: a write that failed leaves them to the next report.
      for (const url of Object.keys(maps)) mapsWritten.add(url);
    }
    rmSync(file, { force: true });
  }
}

/** fork()'s options for the same (with node's own `execArgv`): an IPC channel passes through `env`. */
export function forkLaunch(
  extra: Record<string, string | undefined> = {},
  base: NodeJS.ProcessEnv = process.env,
  execArgv: readonly string[] = [],
): { execPath: string; execArgv: string[]; env: NodeJS.ProcessEnv } {
  const launch = nodeLaunch(extra, base);
  return { execPath: launch.command, execArgv: [...launch.prefix, ...execArgv], env: launch.env };
}

export interface NodeRun {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** A child's whole stdout and stderr and its exit code, once it has closed (rejects if it could not start). */
export function collectOutput(child: ChildProcessByStdio<null, Readable, Readable>): Promise<NodeRun> {
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  return new Promise((resolve, reject) => {
    child.once('error', reject);
    child.once('close', (code) => resolve({ code, stdout, stderr }));
  });
}

/** `node <args…>` started as nodeLaunch() says, with `env` on top of this environment; `done` is its output. */
export function runNode(
  args: readonly string[],
  options: { env?: Record<string, string | undefined>; cwd?: string } = {},
): { child: ChildProcessByStdio<null, Readable, Readable>; done: Promise<NodeRun> } {
  const node = nodeLaunch(options.env);
  const child = spawn(node.command, [...node.prefix, ...args], {
    cwd: options.cwd,
    env: node.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  return { child, done: collectOutput(child) };
}

/** A `node` child in a process group of its own (runNodeInGroup). */
export interface GroupChild {
  child: ChildProcessByStdio<null, Readable, Readable>;
  /** Its exit code once it has closed. */
  closed: Promise<number | null>;
  stdout(): string;
  stderr(): string;
  /** What `find` returns for the stdout so far, once it returns something; undefined if the child closes first. */
  watch<T>(find: (stdout: string) => T | undefined): Promise<T | undefined>;
}

/**
 * `node <args…>` as runNode starts it, in a process group of its own that the test's teardown ends (SIGKILL to the
 * group): for a child that may start a master and its workers, which must not outlive the test whatever it asserts.
 */
export function runNodeInGroup(
  t: { teardown(fn: () => void): void },
  args: readonly string[],
  env: Record<string, string | undefined> = {},
  cwd = ROOT,
): GroupChild {
  const node = nodeLaunch(env);
  const child = spawn(node.command, [...node.prefix, ...args], {
    cwd,
    env: node.env,
    detached: true,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // the group is gone
    }
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const closed = new Promise<number | null>((resolve) => child.once('close', (code: number | null) => resolve(code)));
  const watch = <T>(find: (out: string) => T | undefined): Promise<T | undefined> =>
    new Promise((resolve) => {
      const look = (): void => {
        const found = find(stdout);
        if (found === undefined) return;
        child.stdout.off('data', look);
        resolve(found);
      };
      child.stdout.on('data', look); // after the collector above: `stdout` already holds this chunk
      look();
      void closed.then(() => resolve(find(stdout)));
    });
  return { child, closed, stdout: () => stdout, stderr: () => stderr, watch };
}
