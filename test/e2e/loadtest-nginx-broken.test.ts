import t from 'tap';
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { runNodeInGroup } from '../helpers/child-env.js';
import { ROOT } from '../helpers/root.js';

// nginx is an optional column of compare: absent, it is skipped with a note; installed but broken, it failed the
// whole run with exit 3 (the load-script probe). An `nginx` first on PATH that refuses to start stands for the broken
// one (a config it rejects, a module missing): the run goes on without its column, and says why.

t.test('compare with an nginx that does not start: exit 0, its column skipped with a note', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-broken-nginx-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const fake = join(dir, 'nginx');
  writeFileSync(fake, '#!/bin/sh\necho "nginx: [emerg] unknown directive (a broken install)" >&2\nexit 1\n');
  chmodSync(fake, 0o755);
  const run = runNodeInGroup(
    t,
    [
      join(ROOT, 'dist/scripts/loadtest.js'),
      ...['compare', '--duration', '1', '--connections', '5', '--json', '--report-dir', join(dir, 'reports')],
    ],
    { PATH: `${dir}${delimiter}${process.env['PATH'] ?? ''}` },
  );
  t.equal(await run.closed, 0, 'the run completes', { stderr: run.stderr() });
  const report = JSON.parse(run.stdout()) as { notes: string[]; results: { columns: Array<{ path: string }> } };
  t.same(
    report.results.columns.map((c) => c.path),
    ['direct to the worker', 'through graygate'],
    'the other columns are measured',
  );
  t.match(
    report.notes.join('\n'),
    /nginx \(.*\/nginx\) is installed but did not start, its column is skipped: .*emerg/,
  );
});
