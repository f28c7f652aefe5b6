import t from 'tap';
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { makeSocketDir, openSocketDir } from '../../master/socket-dir.js';
import { createLogger } from '../../shared/log.js';

/**
 * A dead process's PID, and the unix socket files `names` it left in `dir` (it exited without closing its servers, as a
 * SIGKILLed master leaves its sentinel).
 */
function deadListener(dir: string, names = ['w1.sock']): number {
  const paths = JSON.stringify(names.map((name) => join(dir, name)));
  const script = `const net = require('node:net'); let n = 0;
    for (const p of ${paths}) net.createServer().listen(p, () => ++n === ${names.length} && process.exit(0));`;
  const child = spawnSync(process.execPath, ['-e', script]);
  if (child.status !== 0 || !names.every((name) => existsSync(join(dir, name))))
    throw new Error('the listener left no socket');
  return child.pid;
}

t.test("a killed master's socket directory is removed by the next start; nothing else is", async (t) => {
  const parent = mkdtempSync(join(tmpdir(), 'graygate-socket-dir-test-'));
  t.teardown(() => rmSync(parent, { recursive: true, force: true }));
  const scratch = join(parent, 'scratch');
  mkdirSync(scratch);
  const dead = deadListener(scratch);
  const dir = (suffix: string, pid = dead): string => {
    const path = join(parent, `graygate-${pid}-${suffix}`);
    mkdirSync(path);
    return path;
  };
  // A SIGKILLed master's: its sentinel and a worker's socket, nobody listening.
  const leftover = dir('aB3dE9');
  deadListener(leftover, ['master.sock', 'w1.sock']);
  // The usual one: its workers removed their sockets as they stopped; the sentinel is left.
  const emptied = dir('Em9tY1');
  deadListener(emptied, ['master.sock']);
  // No sentinel: a master that has not listened on it yet (or an older release's directory).
  const noSentinel = dir('Fr3sH2');
  // Not a socket: something a person or another program put there.
  const withFile = dir('Zz9yX8');
  deadListener(withFile, ['master.sock']);
  writeFileSync(join(withFile, 'notes.txt'), 'mine');
  // A running process's PID (the one that started this test).
  const live = dir('Qw1eR2', process.ppid);
  deadListener(live, ['master.sock']);
  // This process's own PID, from a former life (PID 1 again in a restarted container): not a live master's.
  const former = dir('Ow5nP1', process.pid);
  deadListener(former, ['master.sock']);
  // A master in another PID namespace sharing the directory: a PID this one cannot see, its sentinel listening, its
  // workers' sockets gone (a restart's backoff).
  const foreign = dir('Fo4rE5');
  const listening = createServer().listen(join(foreign, 'master.sock'));
  await once(listening, 'listening');
  t.teardown(() => listening.close());
  // Other names: a test's temporary directory, the old unnumbered form.
  const others = [`graygate-test-${dead}`, 'graygate-1dXVoF'].map((name) => join(parent, name));
  for (const other of others) mkdirSync(other);

  const { path: made, sentinel } = await makeSocketDir(parent);
  t.teardown(() => sentinel.close());

  t.match(made, new RegExp(`graygate-${process.pid}-[A-Za-z0-9]{6}$`), "the new one is named after this master's PID");
  t.same(readdirSync(made), ['master.sock'], 'and holds its sentinel');
  t.notOk(existsSync(leftover), "the dead master's directory of sockets is gone");
  t.notOk(existsSync(emptied), 'and one its workers emptied');
  t.ok(existsSync(noSentinel), 'one without a sentinel stays');
  t.ok(existsSync(join(withFile, 'notes.txt')), 'a directory holding anything but sockets stays');
  t.ok(existsSync(join(live, 'master.sock')), "a running process's stays");
  t.notOk(existsSync(former), "one named after this process's own PID is a former life's: removed");
  t.ok(existsSync(join(foreign, 'master.sock')), 'one whose sentinel answers stays');
  for (const other of others) t.ok(existsSync(other), `${other} stays`);
});

t.test(
  'a temporary directory too deep for unix socket paths, or unusable, is passed over with a warn line',
  async (t) => {
    const root = mkdtempSync(join(tmpdir(), 'graygate-socket-dir-test-'));
    t.teardown(() => rmSync(root, { recursive: true, force: true }));
    // 103 bytes is the longest path every platform's sun_path takes; libuv cuts a longer one short, and a master's
    // sentinel and first worker's socket then listened on the same cut path (EADDRINUSE: no worker ever started).
    const deep = join(root, 'd'.repeat(Math.max(1, 100 - root.length)));
    mkdirSync(deep);
    const missing = join(root, 'missing');
    const lines: Array<{ msg: string; parent?: string }> = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(
          ...chunk
            .toString('utf8')
            .trim()
            .split('\n')
            .map((line) => JSON.parse(line) as { msg: string }),
        );
        cb();
      },
    });
    const log = createLogger({ role: 'master', level: 'info', destination: sink });

    const made = await openSocketDir([deep, missing, root], log);
    t.ok(made, 'a directory is made');
    t.teardown(() => made?.sentinel.close());
    t.equal(join(made?.path ?? '', '..'), root, 'in the first parent that can hold one');
    t.same(
      lines.map((line) => [line.msg, line.parent]),
      [
        ['temporary directory too deep for unix socket paths; not using it', deep],
        ['cannot make a socket directory in the temporary directory; not using it', missing],
      ],
      'each parent passed over is a warn line',
    );

    t.equal(await openSocketDir([deep, missing], log), undefined, 'none can (the master then does not start)');
    t.same(readdirSync(deep), [], 'nothing is left in a parent passed over');
  },
);
