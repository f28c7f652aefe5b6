import t from 'tap';
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { moveCoverage } from './child-env.js';

// The suite's coverage of the processes tests start (child-env.ts): what a child's V8 report keeps on its way to tap's
// .tap/coverage. A report that lost the project's scripts fails no test but lowers the coverage figure; one that kept
// node's and node_modules' made tap's report read 540 MB at the end of the run.

const PROJECT = 'file:///repo/';

function script(url: string): { url: string; functions: unknown[] } {
  return { url, functions: [{ functionName: '', ranges: [{ startOffset: 0, endOffset: 1, count: 1 }] }] };
}

function dirs(t: { teardown(fn: () => void): void }): { from: string; to: string } {
  const root = mkdtempSync(join(tmpdir(), 'graygate-coverage-'));
  t.teardown(() => rmSync(root, { recursive: true, force: true }));
  const from = join(root, 'children');
  mkdirSync(from);
  return { from, to: join(root, 'coverage') };
}

function read(file: string): { result: Array<{ url: string }>; 'source-map-cache'?: Record<string, unknown> } {
  return JSON.parse(readFileSync(file, 'utf8')) as ReturnType<typeof read>;
}

t.test("a report keeps the project's scripts, and each source map once", async (t) => {
  const { from, to } = dirs(t);
  const ours = `${PROJECT}dist/master/main.js`;
  const bin = `${PROJECT}bin/graygate.js`;
  const report = (maps: Record<string, unknown>): string =>
    JSON.stringify({
      result: [
        script('node:internal/main/run_main_module'),
        script(ours),
        script(`${PROJECT}node_modules/pino/pino.js`),
        script(bin),
        script('file:///elsewhere/x.js'),
      ],
      'source-map-cache': maps,
    });
  const maps = { [ours]: { lineLengths: [1] }, [`${PROJECT}node_modules/zod/index.js`]: { lineLengths: [2] } };
  writeFileSync(join(from, 'coverage-1.json'), report(maps));
  writeFileSync(join(from, 'coverage-2.json'), report(maps));
  const written = new Set<string>();
  moveCoverage(from, to, PROJECT, written);

  t.same(readdirSync(from), [], 'both reports moved');
  t.same(readdirSync(to).sort(), ['coverage-1.json', 'coverage-2.json']);
  const [one, two] = ['coverage-1.json', 'coverage-2.json'].map((name) => read(join(to, name)));
  for (const moved of [one!, two!])
    t.same(
      moved.result.map((s) => s.url),
      [ours, bin],
      "dist/ and bin/ kept; node's, node_modules' and other places' dropped",
    );
  const mapsOf = (r: ReturnType<typeof read>): string[] => Object.keys(r['source-map-cache'] ?? {});
  t.same([...mapsOf(one!), ...mapsOf(two!)], [ours], "the project's source map once, in one of the two");
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
