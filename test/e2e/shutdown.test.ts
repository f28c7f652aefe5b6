import t from 'tap';
import { startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { isAlive, waitForStatus } from '../helpers/wait.js';

t.test('SIGTERM during a slow request: it completes, then the master exits 0 and no child is left', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1, instances: 2 } } });
  const slow = httpRequest(`${gw.url}/slow?ms=1500`);
  const st = await waitForStatus(gw, (v) => v.v1!.workers.some((w) => w.inflight === 1), 'request in flight');
  const pids = st.v1!.workers.map((w) => w.pid);
  process.kill(gw.pid, 'SIGTERM');
  const res = await slow;
  t.equal(res.status, 200, 'the in-flight request completed');
  t.equal(res.headers['connection'], 'close', 'and was told the connection closes');
  t.equal(json<{ pid: number }>(res).pid > 0, true);
  t.equal(await gw.exited, 0, 'master exited 0');
  for (const pid of pids) t.notOk(isAlive(pid), `worker ${pid} is gone`);
});

t.test('the IPC channel of the process that started the master closes: it stops as on SIGTERM', async (t) => {
  // A parent that dies (a test runner killed on timeout, a PM2 daemon that crashed) closes the channel;
  // without this the master and its workers would keep the ports for good.
  const gw = await startGateway(
    t,
    { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } },
    { env: { LOG_LEVEL: 'info' } },
  );
  const st = await waitForStatus(gw, (v) => v.v1!.workers.length === 1, 'worker started');
  const pids = st.v1!.workers.map((w) => w.pid);
  gw.child.disconnect();
  t.equal(await gw.exited, 0, 'master exited 0');
  t.match(gw.output(), /"signal":"disconnect"/, 'and logged why');
  for (const pid of pids) t.notOk(isAlive(pid), `worker ${pid} is gone`);
});
