import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

// Where the built pieces live. This file runs from dist/scripts/loadtest/, so
// the repository root is three levels up; `npm run loadtest` builds first.

export const ROOT = resolve(fileURLToPath(new URL('../../..', import.meta.url)));
export const MASTER_ENTRY = join(ROOT, 'dist/master/main.js');
export const WORKER_ENTRY = join(ROOT, 'dist/worker/main.js');
/** The test worker build (issue 2): TEST_WORKER_DELAY_MS makes every answer slow. */
export const TEST_WORKER_ENTRY = join(ROOT, 'dist/test/fixtures/test-worker.js');
export const NAIVE_PROXY_ENTRY = join(ROOT, 'dist/scripts/loadtest/naive-proxy.js');
/** Issue 10's one-hop design as a prototype (not graygate): `compare --sse --paths onehop`. */
export const ONEHOP_ENTRY = join(ROOT, 'dist/scripts/loadtest/onehop-prototype.js');
/** Issue 10 target 1's multiplexed master↔worker hop as a prototype (not graygate): `compare --sse --paths mux`. */
export const MUX_ENTRY = join(ROOT, 'dist/scripts/loadtest/mux-prototype.js');
export const MOCK_UPSTREAM_ENTRY = join(ROOT, 'dist/scripts/loadtest/mock-upstream-process.js');
export const DEFAULT_REPORT_DIR = join(ROOT, 'reports');

/** Entry points of a graygate build: this tree's, or another built root (`--graygate-root /work/before`). */
export interface BuildEntries {
  /** The repository root the build lives in (its dist/ holds the compiled code). */
  root: string;
  master: string;
  worker: string;
  testWorker: string;
}

export function buildEntries(root: string = ROOT): BuildEntries {
  const r = resolve(root);
  return {
    root: r,
    master: join(r, 'dist/master/main.js'),
    worker: join(r, 'dist/worker/main.js'),
    testWorker: join(r, 'dist/test/fixtures/test-worker.js'),
  };
}
