import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, utimesSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { makeSocketDir } from '../../master/socket-dir.js';

/**
 * A dead process's PID, and a unix socket file it left in `dir` (it exited without closing its server, as a
 * SIGKILLed master's workers leave theirs).
 */
function deadListener(dir: string): number {
  const script = `require('node:net').createServer().listen(${JSON.stringify(join(dir, 'w1.sock'))}, () => process.exit(0))`;
  const child = spawnSync(process.execPath, ['-e', script]);
  if (child.status !== 0 || !existsSync(join(dir, 'w1.sock'))) throw new Error('the listener left no socket');
  return child.pid;
}

t.test("a killed master's socket directory is removed by the next start; nothing else is", async (t) => {
  const parent = mkdtempSync(join(tmpdir(), 'graygate-socket-dir-test-'));
  t.teardown(() => rmSync(parent, { recursive: true, force: true }));
  const scratch = join(parent, 'scratch');
  mkdirSync(scratch);
  const dead = deadListener(scratch);
  const leftover = join(parent, `graygate-${dead}-aB3dE9`);
  mkdirSync(leftover);
  deadListener(leftover);
  // Not a socket: something a person or another program put there.
  const withFile = join(parent, `graygate-${dead}-Zz9yX8`);
  mkdirSync(withFile);
  writeFileSync(join(withFile, 'notes.txt'), 'mine');
  // A live master's (this process stands for it).
  const live = join(parent, `graygate-${process.pid}-Qw1eR2`);
  mkdirSync(live);
  deadListener(live);
  // Other names: a test's temporary directory, the old unnumbered form.
  const others = [`graygate-test-${dead}`, 'graygate-1dXVoF'].map((name) => join(parent, name));
  for (const dir of others) mkdirSync(dir);

  // A master in another PID namespace sharing the directory: a PID this one cannot see, and a socket it listens on.
  const foreign = join(parent, `graygate-${dead}-Fo4rE5`);
  mkdirSync(foreign);
  const listening = createServer().listen(join(foreign, 'w1.sock'));
  await once(listening, 'listening');
  t.teardown(() => listening.close());

  // A dead master's directory its workers emptied as they stopped (the usual leftover of a SIGKILLed master).
  const emptied = join(parent, `graygate-${dead}-Em9tY1`);
  mkdirSync(emptied);
  // Every one of those has not changed for two minutes; one that changed a moment ago may be a master starting.
  const twoMinutesAgo = new Date(Date.now() - 120_000);
  for (const dir of [leftover, withFile, live, foreign, emptied, ...others])
    utimesSync(dir, twoMinutesAgo, twoMinutesAgo);
  const fresh = join(parent, `graygate-${dead}-Fr3sH2`);
  mkdirSync(fresh);

  const made = await makeSocketDir(parent);

  t.match(made, new RegExp(`graygate-${process.pid}-[A-Za-z0-9]{6}$`), "the new one is named after this master's PID");
  t.same(readdirSync(made), [], 'and is empty');
  t.notOk(existsSync(leftover), "the dead master's directory of sockets is gone");
  t.notOk(existsSync(emptied), 'and an emptied one');
  t.ok(existsSync(fresh), 'one that changed a moment ago stays');
  t.ok(existsSync(join(withFile, 'notes.txt')), 'a directory holding anything but sockets stays');
  t.ok(existsSync(join(live, 'w1.sock')), "a running process's stays");
  t.ok(existsSync(join(foreign, 'w1.sock')), 'one with a socket somebody listens on stays');
  for (const dir of others) t.ok(existsSync(dir), `${dir} stays`);
});
