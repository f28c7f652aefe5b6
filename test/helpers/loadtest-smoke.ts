import type t from 'tap';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNodeInGroup, type NodeRun } from './child-env.js';
import { ROOT } from './gateway.js';

// Smoke runs of the load-test scenarios (issue 6; test/e2e/loadtest-smoke*.test.ts): tiny sizes, each
// checks that the scenario runs, exits 0 and writes its JSON and Markdown reports — never its figures,
// which depend on the machine. `npm test` builds first (pretest). Two files, so two e2e lanes share them.

const LOADTEST = join(ROOT, 'dist/scripts/loadtest.js');
export const RUN_BOUND_MS = 45_000;
// compare --sse starts four paths and runs three workloads: twice the bound of the others.
export const SSE_RUN_BOUND_MS = 2 * RUN_BOUND_MS;

export type Test = Parameters<Extract<Parameters<typeof t.test>[0], (t: never) => unknown>>[0];

export async function runLoadtest(t: Test, args: string[], boundMs = RUN_BOUND_MS): Promise<NodeRun> {
  // Its own process group, SIGKILLed by runNodeInGroup's teardown, which runs after the one below (LIFO).
  const run = runNodeInGroup(t, [LOADTEST, ...args]);
  // SIGTERM lets the script stop what it started (each in a group of its own); a run over its bound fails the test.
  const bound = setTimeout(() => run.child.kill('SIGTERM'), boundMs);
  t.teardown(async () => {
    clearTimeout(bound);
    if (run.child.exitCode !== null || run.child.signalCode !== null) return;
    run.child.kill('SIGTERM');
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([run.closed, new Promise((resolve) => (timer = setTimeout(resolve, STOP_BOUND_MS)))]);
    clearTimeout(timer);
  });
  try {
    const code = await run.closed;
    return { code, stdout: run.stdout(), stderr: run.stderr() };
  } finally {
    clearTimeout(bound);
  }
}

/** How long a run SIGTERMed at teardown gets to stop its gateways (5 s each, then SIGKILL: processes.ts). */
const STOP_BOUND_MS = 20_000;

export interface Report {
  scenario: string;
  results: unknown;
  targets: unknown[];
  tables: Array<{ headers: string[]; rows: unknown[][] }>;
  machine: { cores: number; node: string };
  files: { json: string; markdown: string };
  charts: string[];
  notes: string[];
}

export async function smoke(t: Test, scenario: string, flags: string[], boundMs = RUN_BOUND_MS): Promise<Report> {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-loadtest-smoke-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const run = await runLoadtest(t, [scenario, ...flags, '--json', '--report-dir', dir], boundMs);
  t.equal(run.code, 0, `${scenario} exits 0`, { stderr: run.stderr });
  const report = JSON.parse(run.stdout) as Report;
  t.equal(report.scenario, scenario);
  t.ok(report.files.json.startsWith(dir), 'the report goes to --report-dir');
  t.same(
    (JSON.parse(readFileSync(report.files.json, 'utf8')) as { scenario: string }).scenario,
    scenario,
    'the JSON report is written',
  );
  t.match(
    readFileSync(report.files.markdown, 'utf8'),
    `# graygate load test: ${scenario}`,
    'the Markdown report is written',
  );
  for (const chart of report.charts) t.match(readFileSync(chart, 'utf8'), /^<svg /, `chart ${chart} is an SVG`);
  t.type(report.machine.cores, 'number');
  t.ok(report.results !== null && typeof report.results === 'object', 'results are present');
  return report;
}
