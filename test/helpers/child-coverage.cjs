'use strict';
// The V8 coverage of a process a test starts, preloaded by child-env.ts through the child's NODE_OPTIONS
// (`--require`), which reaches every process and thread the child starts with its environment as NODE_V8_COVERAGE
// did: a master's workers (master/worker-process.ts passes preloads on), a worker's request preparing thread. Plain
// CommonJS, run from here: no build needed, and a preload `--import`ed would load the child's own entry through the
// ES module loader, whose errors differ (a worker's missing entry: "imported from …", test/e2e/deploy.test.ts).
//
// NODE_V8_COVERAGE cost each child ~0.1 CPU s: node read the source map of every module it loaded, and at exit wrote
// every script V8 had seen, node's own and node_modules' 4/5 of them, with our source maps, for the test process to
// parse and keep the project's (child-env.ts, moveCoverage). Here the child starts the same precise coverage (node's
// own call: counts, block by block) through node:inspector, and at exit writes the project's scripts alone, without
// source maps: moveCoverage adds each once a test process (source-map-entry.ts). Measured (10 rounds interleaved on
// a busy 2-core box): a master and a test-worker's life (start, 50 requests, SIGTERM) 1.12 CPU s without coverage,
// 1.35 with NODE_V8_COVERAGE, 1.24 with this; a master and a dist/worker 1.76, 1.94, 1.81; a report 1/10 the size,
// moved in 3.5 ms instead of 12. deploy, canary, hop-smuggling and worker-bodies under tap: 94.6 → 88.9 CPU s.

const { subscribe } = require('node:diagnostics_channel');
const { mkdirSync, writeFileSync } = require('node:fs');
const { Session } = require('node:inspector');
const { join } = require('node:path');
const worker = require('node:worker_threads');

/** Where a thread is asked for its report (flushThread), and where its state is shared (environment data). */
const CHANNEL = 'graygate-test-child-coverage';
/** A thread's state, at `threadId % SLOTS` of the states its parent shares: */
const SLOTS = 1024;
/** …taking requests: it has started its coverage, and the project's code may have run since; */
const LISTENING = 1;
/** …its report written (asked, or at its exit): nothing to ask or wait for. */
const WRITTEN = 2;
/** How long a thread's report is waited for: a job it is in the middle of first (a large body's parse, ~0.1 s). */
const FLUSH_WAIT_MS = 5000;

const dir = process.env['TEST_CHILD_COVERAGE'];
const project = process.env['TEST_CHILD_COVERAGE_PROJECT'];
if (dir !== undefined && project !== undefined) startCoverage(dir, project);

/**
 * Starts this process's (or thread's) coverage; its report goes into `dir`, the scripts under `project` (a file URL
 * ending in `/`) and not in its node_modules only, as child-env.ts's moveCoverage keeps them. It is written when the
 * process ends as NODE_V8_COVERAGE's did: process.exit(), the end of its work, an uncaught exception; a thread's also
 * when it is terminated or its process exits. SIGKILL loses it, as it did.
 */
function startCoverage(dir, project) {
  const session = new Session();
  session.connect();
  session.post('Profiler.enable');
  session.post('Profiler.startPreciseCoverage', { callCount: true, detailed: true });
  // A same-thread session answers synchronously: the report is written before this returns, at an exit too.
  const write = () => {
    let scripts = [];
    session.post('Profiler.takePreciseCoverage', (err, taken) => {
      if (err === null) scripts = taken.result;
    });
    const result = scripts.filter(({ url }) => url.startsWith(project) && !url.includes('/node_modules/'));
    if (result.length === 0) return;
    try {
      // As node did: the directory made if it is not there (the test process removes it when it exits empty).
      mkdirSync(dir, { recursive: true });
      writeFileSync(
        join(dir, `coverage-${process.pid}-${Date.now()}-${worker.threadId}.json`),
        JSON.stringify({ result }),
      );
    } catch {
      // Never a reason to change how the child ends: a report lost shows as coverage lost.
    }
  };
  const report = threadReports(write);
  // After every 'exit' listener, not before: what the project's run (a logger's last flush, a directory removed) is
  // covered, as it was when node wrote the report after them. Node emits 'exit' through process.emit on each of
  // those paths, process.exit() and the loop's end alike.
  const emit = process.emit;
  let exitsEmitted = 0;
  process.emit = function (event, ...args) {
    if (event !== 'exit') return emit.call(this, event, ...args);
    exitsEmitted++;
    try {
      return emit.call(this, event, ...args);
    } finally {
      exitsEmitted--;
      report();
    }
  };
  // An 'exit' listener that calls process.exit() ends the process there (node emits 'exit' once, then reallyExit):
  // the emit above never returns, and node wrote its report on that path too.
  const reallyExit = process.reallyExit;
  process.reallyExit = function (...args) {
    if (exitsEmitted > 0) {
      exitsEmitted = 0;
      report();
    }
    return reallyExit.apply(this, args);
  };
}

/**
 * A worker thread that is terminated, or still running when its process exits, runs no more JavaScript: no 'exit',
 * where node wrote its report from C++ (worker/call/prepare-thread.ts is stopped both ways). So a thread writes its
 * report when the thread that started it asks, before terminate() and at that one's exit, which waits until it is
 * written. Returns how this one writes its own report: the threads it started first.
 */
function threadReports(write) {
  const running = new Set();
  subscribe('worker_threads', ({ worker: thread }) => {
    running.add(thread);
    thread.once('exit', () => running.delete(thread));
  });
  // Shared with the threads this one starts (a SharedArrayBuffer is shared, not copied, with each new thread).
  const states = new Int32Array(new SharedArrayBuffer(4 * SLOTS));
  const parentStates = worker.isMainThread ? undefined : worker.getEnvironmentData(CHANNEL);
  worker.setEnvironmentData(CHANNEL, states.buffer);
  let requests;
  const flush = (thread) => {
    if (!running.delete(thread)) return; // ended, or asked already
    const slot = thread.threadId % SLOTS;
    // Not listening yet: still starting, none of the project's code has run in it.
    if (Atomics.load(states, slot) !== LISTENING) return;
    if (requests === undefined) {
      requests = new worker.BroadcastChannel(CHANNEL);
      requests.unref();
    }
    requests.postMessage(thread.threadId);
    Atomics.wait(states, slot, LISTENING, FLUSH_WAIT_MS);
  };
  const terminate = worker.Worker.prototype.terminate;
  worker.Worker.prototype.terminate = function () {
    flush(this);
    return terminate.call(this);
  };
  const report = () => {
    for (const thread of running) flush(thread);
    write();
    if (parentStates === undefined) return;
    const mine = new Int32Array(parentStates);
    Atomics.store(mine, worker.threadId % SLOTS, WRITTEN);
    Atomics.notify(mine, worker.threadId % SLOTS);
  };
  if (parentStates !== undefined) {
    const asked = new worker.BroadcastChannel(CHANNEL);
    asked.unref(); // keeps no thread running
    asked.onmessage = ({ data }) => {
      if (data === worker.threadId) report();
    };
    Atomics.store(new Int32Array(parentStates), worker.threadId % SLOTS, LISTENING);
  }
  return report;
}
