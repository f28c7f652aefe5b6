import t from 'tap';
import { runCli } from '../../helpers/cli.js';

// `npx graygate --help` lists every command and flag (README, "Admin API and CLI"): `canary start NAME`, the one
// way to start a canary of a version named like a canary verb (`status`, `promote`, `pause`, `resume`, `abort`),
// was read by the CLI but missing from its help.
t.test('--help lists canary start, and the version names it is for', async (t) => {
  const help = await runCli(t, ['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /^ {2}canary \[start\] NAME \[--baseline V\]/m, 'canary [start] NAME');
  t.match(
    help.stdout,
    /canary start NAME: the same, for a version named\s+status, promote, pause, resume or abort\)/,
    'the names that need it',
  );
});
