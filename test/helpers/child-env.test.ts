import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { sourceMapEntry } from './source-map-entry.js';
import { moveCoverage, nodeLaunch } from './child-env.js';

// The suite's coverage of the processes tests start (child-env.ts): what a child's V8 report keeps on its way to tap's
// .tap/coverage. A report that lost the project's scripts fails no test but lowers the coverage figure; one that kept
// node's and node_modules' made tap's report read 540 MB at the end of the run. What a child writes:
// child-coverage.test.ts.

const PROJECT = 'file:///repo/';

function script(url: string): { url: string; functions: unknown[] } {
  return { url, functions: [{ functionName: '', ranges: [{ startOffset: 0, endOffset: 1, count: 1 }] }] };
}

function dirs(t: { teardown(fn: () => void): void }): { from: string; to: string; root: string } {
  const root = mkdtempSync(join(tmpdir(), 'graygate-coverage-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const from = join(root, 'children');
  mkdirSync(from);
  return { from, to: join(root, 'coverage'), root };
}

function read(file: string): { result: Array<{ url: string }>; 'source-map-cache'?: Record<string, unknown> } {
  return JSON.parse(readFileSync(file, 'utf8')) as ReturnType<typeof read>;
}

t.test("a report keeps the project's scripts, and each source map once, read beside its script", async (t) => {
  const { from, to, root } = dirs(t);
  const project = `${pathToFileURL(root).href}/`;
  // A built script with its map, one without (bin/graygate.js), and a dependency's with its own.
  const files: Record<string, string> = {
    'dist/master/main.js': 'export const x = 1;\n//# sourceMappingURL=main.js.map',
    'dist/master/main.js.map': JSON.stringify({ version: 3, sources: ['../../master/main.ts'], mappings: 'AAAA' }),
    'bin/graygate.js': '#!/usr/bin/env node\n',
    'node_modules/pino/pino.js': 'module.exports = 1;\n//# sourceMappingURL=pino.js.map',
    'node_modules/pino/pino.js.map': JSON.stringify({ version: 3, sources: ['pino.ts'], mappings: 'AAAA' }),
  };
  for (const [file, text] of Object.entries(files)) {
    mkdirSync(dirname(join(root, file)), { recursive: true });
    writeFileSync(join(root, file), text);
  }
  const ours = `${project}dist/master/main.js`;
  const bin = `${project}bin/graygate.js`;
  const report = JSON.stringify({
    result: [
      script('node:internal/main/run_main_module'),
      script(ours),
      script(`${project}node_modules/pino/pino.js`),
      script(bin),
      script('file:///elsewhere/x.js'),
    ],
    // As NODE_V8_COVERAGE writes it: what node had (a dependency's map too) is not what goes on.
    'source-map-cache': { [`${project}node_modules/pino/pino.js`]: { lineLengths: [2] } },
  });
  writeFileSync(join(from, 'coverage-1.json'), report);
  writeFileSync(join(from, 'coverage-2.json'), report);
  const written = new Set<string>();
  moveCoverage(from, to, project, written);

  t.same(readdirSync(from), [], 'both reports moved');
  t.same(readdirSync(to).sort(), ['coverage-1.json', 'coverage-2.json']);
  const [one, two] = ['coverage-1.json', 'coverage-2.json'].map((name) => read(join(to, name)));
  for (const moved of [one!, two!])
    t.same(
      moved.result.map((s) => s.url),
      [ours, bin],
      "dist/ and bin/ kept; node's, node_modules' and other places' dropped",
    );
  const maps = { ...one!['source-map-cache'], ...two!['source-map-cache'] };
  t.same(
    Object.keys(one!['source-map-cache'] ?? {}).length + Object.keys(two!['source-map-cache'] ?? {}).length,
    1,
    'one source map in all, in one of the two reports',
  );
  t.same(maps, { [ours]: sourceMapEntry(ours) }, "the project's script's, as node's cache holds it");
  t.same([...written], [ours]);
});

t.test('a report still being written stays for the next call; a missing directory is no report', async (t) => {
  const { from, to } = dirs(t);
  const half = JSON.stringify({ result: [script(`${PROJECT}dist/worker/main.js`)] }).slice(0, 20);
  writeFileSync(join(from, 'coverage-3.json'), half);
  moveCoverage(from, to, PROJECT, new Set());
  t.same(readdirSync(from), ['coverage-3.json'], 'a half-written report is not moved');
  t.same(readdirSync(to), []);

  writeFileSync(join(from, 'coverage-3.json'), JSON.stringify({ result: [script(`${PROJECT}dist/worker/main.js`)] }));
  moveCoverage(from, to, PROJECT, new Set());
  t.same(readdirSync(from), [], 'moved once whole');
  t.same(
    read(join(to, 'coverage-3.json')).result.map((s) => s.url),
    [`${PROJECT}dist/worker/main.js`],
    'a report without source maps keeps its scripts too',
  );

  t.doesNotThrow(() => moveCoverage(join(from, 'never'), to, PROJECT, new Set()), 'no child wrote any');
});

t.test(
  "a child's environment: the shell's graygate variables and NODE_EXTRA_CA_CERTS left out, a test's own kept",
  async (t) => {
    const shell = { HOME: '/root', PORT: '3000', GRAYGATE_ADMIN_TOKEN: 's3cret', NODE_EXTRA_CA_CERTS: '/etc/ca.pem' };
    const { env } = nodeLaunch({}, shell);
    t.same(env, { HOME: '/root' });
    t.same(nodeLaunch({ NODE_EXTRA_CA_CERTS: '/test/ca.pem', PORT: '0' }, shell).env, {
      HOME: '/root',
      NODE_EXTRA_CA_CERTS: '/test/ca.pem',
      PORT: '0',
    });
  },
);
