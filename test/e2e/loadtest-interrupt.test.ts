import t from 'tap';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
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
