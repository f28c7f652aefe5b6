import t from 'tap';
import { readdirSync } from 'node:fs';
import { basename, dirname, extname, join, sep } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

// `npm test` runs every test file outside test/e2e/ in this one process, in path order, instead of
// one process each. A tap test process costs ~1.9 s of CPU before its first test (tap itself, its
// module hooks, coverage), which was ~110 s of the suite's CPU for 58 unit files whose tests take
// ~27 s together (measured: the unit files alone 64–66 s wall, 119–123 s CPU; here 31.5 s wall,
// 37.5 s CPU, on 2 cores). The files stay as they are: each imports tap's root test and adds its
// tests to it, and runs alone as well (`npm test -- test/master/admission.test.ts`). What they share
// here is the process, so a unit test file must leave nothing behind: environment changes undone in
// its teardowns, servers closed, no root-level timeout (it would be the whole process's), no promise
// left to reject after its tests (it would fail this process, reported against whichever file runs
// then). None does today (reviewed: environment changes are restored, metrics registries are per
// instance).
//
// Files are found, not listed, so a new unit test file runs without being added here: every test file
// but those of test/e2e/ and the e2e lanes beside this file (test/helpers/e2e-lane.ts). The extension
// is this file's own: .js when run compiled from dist/test/, .ts when run by tap through ts-node.

// tap's per-file timeout (package.json, 120 s) is for one file: here it covers all of them (~62 s alone on CI's 2
// cores, 115–155 s beside the three e2e lanes): a bound for a file that hangs, with room for a busy box.
t.setTimeout(600_000);

const self = fileURLToPath(import.meta.url);
const here = dirname(self);
const ext = extname(self);
const files = readdirSync(here, { recursive: true, encoding: 'utf8' })
  .filter(
    (file) =>
      file.endsWith(`.test${ext}`) &&
      !file.startsWith(`e2e${sep}`) &&
      !file.startsWith('e2e-lane-') &&
      file !== basename(self),
  )
  .sort();

// One subtest per file, awaited: the root is never idle while a file loads (an idle root that has a teardown ends,
// and every later file's tests would be refused, the run still passing); a file that throws while loading fails as
// its own subtest and the others still run; each file's top-level code runs after the previous file's tests.
for (const file of files) {
  await t.test(file, async () => {
    await import(pathToFileURL(join(here, file)).href);
  });
}
