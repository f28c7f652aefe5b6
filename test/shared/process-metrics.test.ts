import t from 'tap';
import { closeSync, openSync } from 'node:fs';
import { createRequire } from 'node:module';
import type { Registry } from 'prom-client';
import { createMasterMetrics } from '../../master/metrics.js';
import { LINEAR_IN_HANDLES } from '../../shared/process-metrics.js';
import { createWorkerMetrics } from '../../worker/metrics.js';
import { parsePrometheusText } from '../../scripts/cli/prom-text.js';

// The master's and a worker's process series (shared/process-metrics.ts): prom-client's defaults but what a scrape
// would pay for in proportion to the process's connections, on its event loop. Each registry is the real one.

const registries: Array<[string, () => Registry]> = [
  ['master', () => createMasterMetrics({ versions: () => undefined }).registry],
  ['worker', () => createWorkerMetrics({ version: 'v1' }).registry],
];

/** The value of an unlabelled series in a scrape, undefined when the scrape has none. */
function value(text: string, name: string): number | undefined {
  return parsePrometheusText(text).find((s) => s.name === name)?.value;
}

// prom-client reads the module objects at each call: node's `fs` as CommonJS sees it, and `process`.
const fs = createRequire(import.meta.url)('node:fs') as typeof import('node:fs');

for (const [role, make] of registries) {
  t.test(`${role}: a scrape lists no handle, resource or descriptor on the event loop`, async (t) => {
    const registry = make();
    const calls: string[] = [];
    const proc = process as unknown as Record<string, unknown>;
    const originals = {
      handles: proc['_getActiveHandles'],
      resources: proc['getActiveResourcesInfo'],
      readdirSync: fs.readdirSync,
    };
    t.teardown(() => {
      proc['_getActiveHandles'] = originals.handles;
      proc['getActiveResourcesInfo'] = originals.resources;
      fs.readdirSync = originals.readdirSync;
    });
    proc['_getActiveHandles'] = (...args: unknown[]): unknown => {
      calls.push('process._getActiveHandles');
      return (originals.handles as (...a: unknown[]) => unknown).apply(process, args);
    };
    proc['getActiveResourcesInfo'] = (...args: unknown[]): unknown => {
      calls.push('process.getActiveResourcesInfo');
      return (originals.resources as (...a: unknown[]) => unknown).apply(process, args);
    };
    fs.readdirSync = ((...args: Parameters<typeof fs.readdirSync>) => {
      calls.push(`fs.readdirSync(${String(args[0])})`);
      return originals.readdirSync(...args);
    }) as typeof fs.readdirSync;
    const text = await registry.metrics();
    t.same(calls, [], 'nothing linear in the handles called during the scrape');
    const names = new Set(parsePrometheusText(text).map((s) => s.name));
    for (const name of LINEAR_IN_HANDLES) t.notOk(names.has(name), `no ${name}`);
    // The rest of prom-client's defaults are there.
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_eventloop_lag_p99_seconds',
    ])
      t.not(value(text, name), undefined, `${name} is there`);
  });

  t.test(`${role}: process_open_fds counts the descriptors`, async (t) => {
    const registry = make();
    const before = value(await registry.metrics(), 'process_open_fds');
    t.ok(before !== undefined && before > 0, `a count: ${before}`);
    const opened: number[] = [];
    t.teardown(() => opened.forEach((fd) => closeSync(fd)));
    for (let i = 0; i < 50; i++) opened.push(openSync('/dev/null', 'r'));
    const after = value(await registry.metrics(), 'process_open_fds');
    // Within a few: a descriptor another file of this process left closing (a socket, a child's pipe) may close
    // meanwhile; 50 are what is counted.
    const more = after! - before!;
    t.ok(more >= 45 && more <= 55, `~50 more after opening 50: ${more}`);
  });
}
