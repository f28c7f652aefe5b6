import t from 'tap';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runNodeInGroup } from '../helpers/child-env.js';
import { ROOT } from '../helpers/root.js';

// A load test stops on SIGTERM whatever load it was asked for (the load-script probe: `canary --rate 1e9` ran at
// 100 % CPU for 6+ minutes without hearing SIGTERM, its pacing loop starting every due request in one turn), and
// removes its temp dirs (graygate-loadtest-*, the gateway's config) on the way out.

const LOADTEST = join(ROOT, 'dist/scripts/loadtest.js');

/** Resolves at the first stderr line matching `re`; false if the child closes first. */
function stderrLine(run: ReturnType<typeof runNodeInGroup>, re: RegExp): Promise<boolean> {
  return new Promise((resolve) => {
    const onData = (): void => {
      if (!re.test(run.stderr())) return;
      run.child.stderr.off('data', onData);
      resolve(true);
    };
    run.child.stderr.on('data', onData);
    void run.closed.then(() => resolve(re.test(run.stderr())));
  });
}

const ownDirs = (dir: string): string[] => readdirSync(dir).filter((n) => n.startsWith('graygate-loadtest-'));

t.test('canary at the highest --rate hears SIGTERM under load: exit 143, its temp dirs removed', async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'graygate-interrupt-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  const run = runNodeInGroup(
    t,
    [LOADTEST, 'canary', '--cases', 'equal', '--rate', '100000', '--duration', '60', '--report-dir', join(tmp, 'r')],
    { TMPDIR: tmp },
  );
  // The phase printed once the open loop has run LEAD_MS on the baseline: the load is at its fullest.
  t.ok(await stderrLine(run, /canary v2 .* at 100000 req\/s/), 'the load is running', { stderr: run.stderr() });
  t.not(ownDirs(tmp).length, 0, 'the gateway config dir is there while it runs');
  run.child.kill('SIGTERM');
  t.equal(await run.closed, 143, 'exits as interrupted by SIGTERM', { stderr: run.stderr() });
  t.same(ownDirs(tmp), [], 'no graygate-loadtest-* dir is left');
});

// A target that dies mid-run got a normal report with a negative CPU % (the load-script probe): now a note, and exit 3.
t.test("graygate's master killed during capacity: exit 3, the report written with a note", async (t) => {
  const tmp = mkdtempSync(join(tmpdir(), 'graygate-target-dies-'));
  t.teardown(() => rmSync(tmp, { recursive: true, force: true }));
  // TMPDIR: the killed master's socket directory (graygate-<pid>-*) stays behind, in this test's own dir.
  const run = runNodeInGroup(
    t,
    [LOADTEST, 'capacity', '--connections', '5', '--duration', '3', '--json', '--report-dir', tmp],
    { TMPDIR: tmp },
  );
  t.ok(await stderrLine(run, /step 5 connections/), 'the step is running', { stderr: run.stderr() });
  // The load test's one child is graygate's master (capacity uses the embedded mock upstream).
  const pid = run.child.pid!;
  const master = Number(readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(' ')[0]);
  t.ok(master > 0, `the master's pid: ${master}`);
  process.kill(master, 'SIGKILL');
  t.equal(await run.closed, 3, 'exit 3: the target failed', { stderr: run.stderr() });
  t.match(run.stderr(), /loadtest capacity failed: graygate's master exited during the run \(killed by SIGKILL\)/);
  const report = JSON.parse(run.stdout()) as {
    isOk: boolean;
    notes: string[];
    results: { steps: Array<{ masterCpuPct: number; workersCpuPct: number }> };
  };
  t.equal(report.isOk, false);
  t.match(report.notes.join('\n'), /graygate's master \(pid \d+\) exited during the run/);
  for (const step of report.results.steps) {
    t.ok(step.masterCpuPct >= 0, `master CPU % is not negative: ${step.masterCpuPct}`);
    t.ok(step.workersCpuPct >= 0, `workers CPU % is not negative: ${step.workersCpuPct}`);
  }
});
