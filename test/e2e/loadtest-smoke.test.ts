import t from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ROOT } from '../helpers/gateway.js';

// Smoke run of every load-test scenario (issue 6): tiny sizes, each checks that
// the scenario runs, exits 0 and writes its JSON and Markdown reports — never
// its figures, which depend on the machine. `npm test` builds first (pretest).

const LOADTEST = join(ROOT, 'dist/scripts/loadtest.js');
const RUN_BOUND_MS = 45_000;
// compare --sse starts four paths and runs three workloads: twice the bound of the others.
const SSE_RUN_BOUND_MS = 2 * RUN_BOUND_MS;
// Eight scenario runs one after another, each up to its bound on a busy box: more than tap's 120 s per file.
t.setTimeout(9 * RUN_BOUND_MS);

type Test = Parameters<Extract<Parameters<typeof t.test>[0], (t: never) => unknown>>[0];

interface RunResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

function runLoadtest(t: Test, args: string[], boundMs = RUN_BOUND_MS): Promise<RunResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [LOADTEST, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    // SIGTERM lets the script stop what it started; a run over its bound fails the test.
    const bound = setTimeout(() => child.kill('SIGTERM'), boundMs);
    t.teardown(() => {
      clearTimeout(bound);
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
    });
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(bound);
      resolve({ code, stdout, stderr });
    });
  });
}

interface Report {
  scenario: string;
  results: unknown;
  targets: unknown[];
  machine: { cores: number; node: string };
  files: { json: string; markdown: string };
  charts: string[];
  notes: string[];
}

async function smoke(t: Test, scenario: string, flags: string[], boundMs = RUN_BOUND_MS): Promise<Report> {
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

t.test('capacity', async (t) => {
  await smoke(t, 'capacity', ['--duration', '1', '--connections', '10']);
});

t.test('backlog with the naive proxies side by side', async (t) => {
  const report = await smoke(t, 'backlog', [
    '--naive',
    '--duration',
    '2',
    '--connections',
    '10',
    '--worker-delay-ms',
    '100',
    '--recovery-limit-s',
    '10',
  ]);
  const kinds = (report.results as Array<{ kind: string }>).map((r) => r.kind);
  t.same(kinds, ['graygate', 'http-proxy-3', 'pipe'], 'all three proxies ran');
});

t.test('streams', async (t) => {
  await smoke(t, 'streams', ['--streams', '20', '--tokens', '5', '--token-interval-ms', '10']);
});

t.test('swap', async (t) => {
  const report = await smoke(t, 'swap', ['--duration', '2', '--connections', '5']);
  t.equal((report.results as { operations: unknown[] }).operations.length, 3, 'two deploys and a rollback ran');
});

t.test('compare', async (t) => {
  const report = await smoke(t, 'compare', ['--duration', '1', '--connections', '5']);
  const paths = (report.results as { columns: Array<{ path: string }> }).columns.map((c) => c.path);
  t.same(paths.slice(0, 2), ['direct to the worker', 'through graygate']);
  // nginx is optional: without it the column is skipped and the report says so.
  if (paths.length === 2) t.match(report.notes.join('\n'), /nginx is not installed/);
  else t.equal(paths[2], 'through nginx');
});

t.test('compare --sse: streaming workloads and GET /v1/models on every path', async (t) => {
  // nginx's column is the plain compare's to smoke-test; here it would only add two more processes.
  const report = await smoke(
    t,
    'compare',
    [
      '--sse',
      '--duration',
      '1',
      '--rounds',
      '1',
      '--streams',
      '10',
      '--tokens',
      '5',
      '--connections',
      '5',
      '--workloads',
      'loaded,small',
      '--paths',
      'direct,node,graygate',
    ],
    SSE_RUN_BOUND_MS,
  );
  const results = report.results as {
    loaded: Array<{ key: string; streams: number; failed: number }>;
    small: Array<{ target: { kind: string } }>;
  };
  const keys = results.loaded.map((a) => a.key);
  t.same(keys, ['direct', 'node', 'graygate'], 'direct, the node proxy and graygate ran');
  for (const a of results.loaded) {
    t.ok(a.streams > 0, `${a.key}: streams measured`);
    t.equal(a.failed, 0, `${a.key}: no stream failed`);
  }
  t.ok(
    results.small.some((s) => s.target.kind === 'graygate') && results.small.some((s) => s.target.kind === 'node'),
    'small requests through graygate and the node proxy',
  );
});

t.test('streams --hold: ramps, holds, reports first tokens and RSS', async (t) => {
  const report = await smoke(t, 'streams', [
    '--hold',
    '--streams',
    '20',
    '--workers',
    '1',
    '--ramp-s',
    '1',
    '--hold-s',
    '3',
    '--token-interval-ms',
    '500',
  ]);
  const results = report.results as {
    atHoldEnd: { opened: number; firstTokens: number; errors: number };
    idleMb: { master: number };
  };
  t.same(
    results.atHoldEnd,
    { opened: 20, firstTokens: 20, errors: 0 },
    'every stream opened, got its first token, no error',
  );
  t.ok(results.idleMb.master > 0, 'the idle footprint was measured');
});

t.test('bad usage exits 2 without starting anything', async (t) => {
  const run = await runLoadtest(t, ['no-such-scenario']);
  t.equal(run.code, 2);
  t.match(run.stderr, /expected one scenario/);
});
