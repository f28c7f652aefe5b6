import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import t from 'tap';
import ts from 'typescript';
import { WORKER_ENTRY } from '../helpers/gateway.js';

// Issue 10 target 5 (idle footprint): every package a worker loads costs it RSS for its whole life
// (zod alone ~12 MB, measured in docs/BENCHMARKS.md), and a worker only runs requests: the config
// is validated by the master. This walks the built worker's imports, static and dynamic, from
// dist/worker/main.js and lists the packages it reaches.

function packagesReached(entries: string[]): Map<string, string> {
  const seen = new Set<string>();
  const packages = new Map<string, string>();
  const pending = [...entries];
  for (let file = pending.pop(); file !== undefined; file = pending.pop()) {
    if (seen.has(file)) continue;
    seen.add(file);
    const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true);
    for (const { fileName: spec } of importedFiles) {
      if (spec.startsWith('.')) {
        const target = resolve(dirname(file), spec);
        if (existsSync(target)) pending.push(target);
      } else if (!spec.startsWith('node:') && !packages.has(spec)) {
        packages.set(spec, file);
      }
    }
  }
  return packages;
}

t.test('a worker loads neither zod nor http-proxy-3', (t) => {
  // The worker's entry, and its helper thread's (started by URL in worker/call/preparer.ts).
  const packages = packagesReached([WORKER_ENTRY, join(dirname(WORKER_ENTRY), 'call/prepare-thread.js')]);
  // The walk works: the packages a worker does use are found.
  t.ok(packages.has('pino'), 'pino is reached');
  t.ok(packages.has('prom-client'), 'prom-client is reached');
  const unwanted = ['zod', 'http-proxy-3']
    .filter((name) => packages.has(name))
    .map((name) => `${name}, imported by ${packages.get(name)}`);
  t.same(unwanted, [], 'zod and http-proxy-3 are not reached');
  t.end();
});
