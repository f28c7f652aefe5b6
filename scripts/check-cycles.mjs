#!/usr/bin/env node
// `npm run lint` (issue 11 part 3): no file cycles, type-only imports included (import-x/no-cycle skips
// `import type`, which still ties two files into one module, and cost ~15 % of ESLint's time); this finds every
// strongly connected component of the relative-import graph of the .ts files and fails on any.
// Dynamic `import()` is a deliberate lazy edge and is not followed. Plain JS so it runs without a build.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { dirname, join, normalize } from 'node:path';
import ts from 'typescript';

const FOLDERS = ['master', 'worker', 'shared', 'scripts', 'test'];
const files = FOLDERS.flatMap((dir) =>
  readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((name) => name.endsWith('.ts'))
    .map((name) => join(dir, name)),
);
const graph = new Map();
for (const file of files) {
  const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, false);
  const deps = importedFiles
    .map((i) => i.fileName)
    .filter((spec) => spec.startsWith('.'))
    .map((spec) => normalize(join(dirname(file), spec.replace(/\.js$/, '.ts'))))
    .filter((dep) => existsSync(dep));
  graph.set(file, deps);
}

// Tarjan's strongly connected components, iterative so a deep chain cannot overflow the stack.
let counter = 0;
const index = new Map();
const low = new Map();
const stack = [];
const onStack = new Set();
const cycles = [];
for (const root of graph.keys()) {
  if (index.has(root)) continue;
  const work = [[root, 0]];
  while (work.length > 0) {
    const frame = work[work.length - 1];
    const [v, i] = frame;
    if (i === 0) {
      index.set(v, counter);
      low.set(v, counter);
      counter++;
      stack.push(v);
      onStack.add(v);
    }
    const deps = graph.get(v) ?? [];
    if (i < deps.length) {
      frame[1] = i + 1;
      const w = deps[i];
      if (!index.has(w)) work.push([w, 0]);
      else if (onStack.has(w)) low.set(v, Math.min(low.get(v), index.get(w)));
      continue;
    }
    work.pop();
    if (work.length > 0) {
      const parent = work[work.length - 1][0];
      low.set(parent, Math.min(low.get(parent), low.get(v)));
    }
    if (low.get(v) === index.get(v)) {
      const component = [];
      let w;
      do {
        w = stack.pop();
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      if (component.length > 1 || graph.get(v)?.includes(v)) cycles.push(component.sort());
    }
  }
}

if (cycles.length > 0) {
  for (const c of cycles) process.stderr.write(`import cycle (type imports included): ${c.join(' ↔ ')}\n`);
  process.exit(1);
}
process.stdout.write(`check-cycles: ${graph.size} files, no import cycles (type imports included)\n`);
