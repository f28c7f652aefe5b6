import { existsSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

// The repository's root: the nearest folder above this file that holds package.json. The tests run
// from their sources (`npx tap test/….test.ts`) and, under `npm test`, compiled into dist/test/
// (scripts/pretest.mjs), so a fixed '../..' from here would name dist/ in the second case.
function projectRoot(from: string): string {
  for (let dir = from; ; dir = dirname(dir)) {
    if (existsSync(join(dir, 'package.json'))) return dir;
    if (dirname(dir) === dir) throw new Error(`no package.json in ${from} or above it`);
  }
}

export const ROOT = projectRoot(dirname(fileURLToPath(import.meta.url)));
