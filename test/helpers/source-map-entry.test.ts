import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { collectOutput } from './child-env.js';
import { sourceMapEntry } from './source-map-entry.js';

// What tap's report maps a child's coverage back to the .ts with (source-map-entry.ts): node's own cache entry.

t.test("a script's source map entry is node's own", async (t) => {
  const project = mkdtempSync(join(tmpdir(), 'graygate-source-map-'));
  t.teardown(() => rmSync(project, { recursive: true, force: true }));
  // CRLF, a line separator in a string, the map in a directory of its own with a sourceRoot: what node's line
  // lengths and sources resolve.
  const files: Record<string, string> = {
    'out/mapped.mjs':
      'export const a = 1;\r\nexport const b = "x\u2028y";\n\nexport const c = 3;\n//# sourceMappingURL=../maps/mapped.mjs.map\n',
    'maps/mapped.mjs.map': JSON.stringify({
      version: 3,
      file: 'mapped.mjs',
      sourceRoot: '../src/',
      sources: ['mapped.ts'],
      names: [],
      mappings: 'AAAA',
    }),
    'out/plain.mjs': 'export const d = 4;\n',
    'main.mjs': "import './out/mapped.mjs';\nimport './out/plain.mjs';\n",
  };
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(dirname(join(project, file)), { recursive: true });
    writeFileSync(join(project, file), text);
  }
  const dir = join(project, 'coverage');
  const child = spawn('/usr/bin/env', ['-u', 'NODE_OPTIONS', `NODE_V8_COVERAGE=${dir}`, process.execPath, 'main.mjs'], {
    cwd: project,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.equal((await collectOutput(child)).code, 0);
  const [name] = readdirSync(dir);
  const cache = (JSON.parse(readFileSync(join(dir, name!), 'utf8')) as { 'source-map-cache': Record<string, unknown> })[
    'source-map-cache'
  ];
  const mapped = pathToFileURL(join(project, 'out/mapped.mjs')).href;
  const { lineLengths, data } = cache[mapped] as { lineLengths: unknown; data: unknown };
  t.same(sourceMapEntry(mapped), { lineLengths, data }, "the map's entry: node's line lengths, its absolute sources");
  const plain = pathToFileURL(join(project, 'out/plain.mjs')).href;
  t.equal(cache[plain], undefined, 'node has none for a script that names no map');
  t.equal(sourceMapEntry(plain), undefined, 'nor here');
  t.equal(sourceMapEntry(pathToFileURL(join(project, 'gone.mjs')).href), undefined, 'nor for a script not there');
});
