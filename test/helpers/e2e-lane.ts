import type t from 'tap';
import { mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { ROOT } from './root.js';

// `npm test` runs the e2e files in two tap processes, the lanes (test/e2e-lane-1 and -2), not one
// process each. tap loads @tapjs/processinfo into each test process, and its module hook costs the
// process ~1.2 s of CPU for tap's own modules and ours before the first test (measured: six e2e
// files under tap, one process each 23.8–25.0 s of CPU, the same six in one process 17.6–17.7 s),
// ×44 files on CI's 2 cores. Each lane takes the next file no lane has taken, in path order, when
// it has finished the one before: two lanes end within one file of each other whatever the files
// cost, and the second starts when all-units.test.ts ends. A file's tests are root tests of the
// lane's process, as in all-units.test.ts, with the same rules: a file leaves nothing behind (no
// server, no environment change, no promise left to reject; none does); its root timeout, if it
// sets one, is its own (the lane sets tap's per-file timeout before each file, so each file keeps the
// bound it has alone). A file still runs alone as before (`npm test -- test/e2e/x.test.ts`).
//
// Which files are taken is shared through a directory per run of the tap runner (the lanes' parent,
// named by its pid and start time) under .tap/: taking a file is creating its entry there, which
// one process alone can do. A lane that is not a tap runner's child (`node dist/test/e2e-lane-1.test.js`)
// runs every file. The directories of runners that have ended are removed when a lane starts.

type Root = typeof t;

/** The claims directory's name for process `pid`: its pid and start time; undefined when it is not running. */
function runnerKey(pid: number): string | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Field 22, counted after the command name, which is in parentheses and may hold spaces.
    const start = stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
    return `${pid}-${start}`;
  } catch {
    try {
      process.kill(pid, 0);
      return `${pid}-0`; // not Linux: the pid alone
    } catch (err) {
      return (err as NodeJS.ErrnoException).code === 'EPERM' ? `${pid}-0` : undefined;
    }
  }
}

function claimsDir(): string | undefined {
  if (process.env['TAP_CHILD_ID'] === undefined) return undefined;
  const key = runnerKey(process.ppid);
  if (key === undefined) return undefined;
  const lanes = join(ROOT, '.tap', 'e2e-lanes');
  mkdirSync(lanes, { recursive: true });
  for (const entry of readdirSync(lanes)) {
    if (entry !== key && runnerKey(Number(entry.split('-')[0])) !== entry) {
      rmSync(join(lanes, entry), { recursive: true, force: true });
    }
  }
  const dir = join(lanes, key);
  mkdirSync(dir, { recursive: true });
  return dir;
}

/** Runs e2e files, one after another, until no file is left that another lane has not taken. */
export async function runLane(root: Root, laneUrl: string): Promise<void> {
  const self = fileURLToPath(laneUrl);
  const lane = basename(self, `.test${extname(self)}`);
  const e2e = join(dirname(self), 'e2e');
  const files = readdirSync(e2e, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith(`.test${extname(self)}`))
    .sort();
  const dir = claimsDir();
  let next = 0;
  const claim = (): string | undefined => {
    for (; next < files.length; next++) {
      const file = files[next]!;
      if (dir === undefined) return files[next++];
      try {
        mkdirSync(join(dir, encodeURIComponent(file)));
        next++;
        return file;
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
      }
    }
    return undefined;
  };
  const fileTimeoutMs = Number(process.env['TAP_TIMEOUT'] ?? '30') * 1000;
  let ran = 0;
  // One subtest per file, awaited, as all-units.test.ts does: its body runs once the file before has
  // ended (so the file is taken then, not earlier), and the root is never idle between files.
  for (;;) {
    let file: string | undefined;
    await root.test(`${lane}: the next e2e file`, async (t) => {
      file = claim();
      if (file === undefined) {
        t.pass(`no file left; this lane ran ${ran}`);
        return;
      }
      root.setTimeout(fileTimeoutMs);
      await import(pathToFileURL(join(e2e, file)).href);
      ran++;
      t.pass(`e2e/${file}`);
    });
    if (file === undefined) return;
  }
}
