import t from 'tap';
import { execFileSync, spawnSync } from 'node:child_process';
import { closeSync, constants, mkdtempSync, openSync, rmSync, writeSync } from 'node:fs';
import { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { admin, startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { FAKE_WORKER_ENTRY } from '../helpers/fake-fork.js';
import { httpRequest } from '../helpers/http.js';

// The gateway's stdout and stderr are pipes to a log collector (a container runtime's FIFO, journald), which can stall
// or go away; neither may stop or kill the gateway (an environment probe: both did).

t.test('a broken build writing to a stderr whose reader is gone does not kill the master (EPIPE)', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } });
  gw.child.stderr!.destroy(); // the collector went away: the master's next write to stderr is EPIPE
  const added = await admin<{ error: { code: string } }>(gw, 'POST', '/admin/versions', {
    name: 'broken',
    entry: FAKE_WORKER_ENTRY,
    env: { FAKE_WORKER_MODE: 'crash' }, // writes to stderr, exits before ready
    weight: 0,
  });
  t.equal(added.status, 500);
  t.equal(added.body.error.code, 'deploy_failed');
  t.equal((await httpRequest(`${gw.url}/healthz`)).status, 200, 'the master lives on');
  t.equal(gw.child.exitCode, null);
});

t.test(
  'a log collector that stops reading stops nothing, after workers started and exited too',
  { skip: spawnSync('mkfifo', ['--version']).status === 0 ? false : 'needs mkfifo' },
  async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'graygate-log-'));
    const fifo = join(dir, 'stdout');
    execFileSync('mkfifo', [fifo]);
    const readFd = openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK);
    const masterFd = openSync(fifo, constants.O_WRONLY);
    const fillFd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
    // Nothing reads the pipe until the end (a Socket would read ahead into its buffer at once).
    const reader: { socket?: Socket } = {};
    t.teardown(() => {
      if (reader.socket === undefined) closeSync(readFd);
      else reader.socket.destroy();
      closeSync(fillFd);
      rmSync(dir, { recursive: true, force: true });
    });
    const gw = await startGateway(
      t,
      { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } },
      { stdout: masterFd, env: { LOG_LEVEL: 'info' } },
    );
    closeSync(masterFd);
    // A worker started and one exited: each turned the shared stdout blocking when the workers shared it.
    t.equal((await admin(gw, 'POST', '/admin/versions/v1/deploy', {})).status, 200);
    // The pipe is full: the collector stalled.
    const filler = Buffer.from(`${' '.repeat(1023)}\n`);
    for (;;) {
      try {
        writeSync(fillFd, filler);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code === 'EAGAIN') break;
        throw err;
      }
    }
    for (let i = 0; i < 20; i++) {
      const res = await httpRequest(`${gw.url}/slow?ms=0`, { headers: { 'x-request-id': `stalled-${i}` } });
      t.equal(res.status, 200, `request ${i} while nobody reads the log`);
    }
    t.equal((await httpRequest(`${gw.url}/healthz`)).status, 200);
    // Read again: the lines waited, whole, and come.
    let text = '';
    const reading = new Socket({ fd: readFd, readable: true, writable: false });
    reader.socket = reading;
    reading.setEncoding('utf8').on('data', (chunk: string) => (text += chunk));
    while (!/"reqId":"stalled-19"[^\n]*"msg":"request"/.test(text))
      await new Promise((resolve) => reading.once('data', resolve));
    const lines = text.split('\n').filter((l) => l.trim() !== '');
    t.ok(
      lines.every((l) => l.startsWith('{') && l.endsWith('}')),
      'every line whole',
    );
  },
);
