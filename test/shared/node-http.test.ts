import t from 'tap';
import { existsSync, readdirSync } from 'node:fs';
import { basename, join } from 'node:path';
import { runNode } from '../helpers/child-env.js';
import { ROOT } from '../helpers/root.js';

// shared/node-http.ts: no module of master/, worker/, shared/ or scripts/cli/ (`graygate start` runs the master in the
// CLI's process) imports node:http's values as an ES module, whose namespace build runs Node 22's lazy `WebSocket`
// getter and so loads node's bundled undici in every process (~7 MiB of an idle master and worker together). ESLint
// refuses such an import in our code; this checks the built module graph, dependencies included, in a fresh node of
// this version (the trap: test/fixtures/http-namespace.ts).

const FIXTURE = join(ROOT, 'dist/test/fixtures/http-namespace.js');
/** Entry points: they start a process, or a thread that expects its parent's data. Their imports are listed anyway. */
const ENTRIES = new Set(['main.js', 'prepare-thread.js']);

/** The built modules of `dir` (master, …) whose source is still there: dist/ keeps a deleted one's build. */
function modules(dir: string): string[] {
  return readdirSync(join(ROOT, 'dist', dir), { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.js') && !ENTRIES.has(basename(file)))
    .filter((file) => existsSync(join(ROOT, dir, file.replace(/\.js$/, '.ts'))))
    .map((file) => join(ROOT, 'dist', dir, file))
    .sort();
}

t.test("no product module builds node:http's ES namespace, nor loads node's bundled undici", async (t) => {
  // scripts/cli: `graygate start` runs the master in the CLI's process.
  const files = [...modules('master'), ...modules('worker'), ...modules('shared'), ...modules('scripts/cli')];
  t.ok(files.length > 100, `${files.length} modules imported`);
  const run = await runNode([FIXTURE, ...files]).done;
  t.equal(run.code, 0, run.stderr);
  const result = JSON.parse(run.stdout) as { builtBy: string[]; loadsUndici: boolean; isTrapSprung: boolean };
  t.ok(result.isTrapSprung, 'the trap saw the namespace built (nothing built it before the trap was set)');
  t.same(result.builtBy, [], 'the first module whose imports built it (import its values from shared/node-http.js)');
  t.equal(result.loadsUndici, false, `internal/deps/undici/undici on node ${process.version}`);
});
