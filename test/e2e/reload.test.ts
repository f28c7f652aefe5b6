import t from 'tap';
import { writeFileSync } from 'node:fs';
import { admin, startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { status, waitForStatus } from '../helpers/wait.js';

t.test(
  'reload: weights only restarts nothing; invalid file changes nothing; added/removed/changed versions applied',
  async (t) => {
    const versions = { v1: { entry: TEST_WORKER_ENTRY, weight: 90 }, v2: { entry: TEST_WORKER_ENTRY, weight: 10 } };
    const gw = await startGateway(t, { versions });
    const pids = async (): Promise<number[]> =>
      Object.values(await status(gw))
        .flatMap((v) => v.workers.map((w) => w.pid))
        .sort();
    const before = await pids();

    gw.writeConfig({ versions: { v1: { ...versions.v1, weight: 50 }, v2: { ...versions.v2, weight: 50 } } });
    const r1 = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
    t.equal(r1.status, 200);
    t.same(r1.body.applied, ['weights v1=50 v2=50']);
    t.same(await pids(), before, 'no process restarted');
    const st = await status(gw);
    t.same([st.v1!.weight, st.v2!.weight], [50, 50]);

    writeFileSync(gw.configPath, JSON.stringify({ versions: { v1: { weight: -1 } }, bogus: 1 }));
    const r2 = await admin<{ error: { code: string; message: string } }>(gw, 'POST', '/admin/reload');
    t.equal(r2.status, 400);
    t.equal(r2.body.error.code, 'invalid_config');
    t.match(r2.body.error.message, /versions\.v1\.weight: must be ≥ 0/);
    t.match(r2.body.error.message, /bogus: is not supported/);
    t.same(await pids(), before, 'invalid file: nothing changed');
    t.same([(await status(gw)).v1!.weight], [50]);

    // SIGHUP does the same as POST /admin/reload: add v3, redeploy v2 with new env, remove nothing.
    gw.writeConfig({
      versions: {
        v1: { ...versions.v1, weight: 50 },
        v2: { ...versions.v2, weight: 50, env: { X: '1' } },
        v3: { entry: TEST_WORKER_ENTRY, weight: 0 },
      },
    });
    process.kill(gw.pid, 'SIGHUP');
    const after = await waitForStatus(
      gw,
      (v) => v.v3 !== undefined && v.v2!.lastDeploy?.phase === 'done',
      'SIGHUP reload applied',
    );
    t.equal(
      after.v1!.workers[0]!.pid,
      before.find((p) => p === after.v1!.workers[0]!.pid),
      'v1 untouched',
    );
    t.notOk(before.includes(after.v2!.workers[0]!.pid), 'v2 redeployed');

    gw.writeConfig({
      versions: { v1: { ...versions.v1, weight: 50 }, v2: { ...versions.v2, weight: 50, env: { X: '1' } } },
    });
    const r3 = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
    t.same(r3.body.applied, ['removed v3']);
    t.notOk((await status(gw)).v3);
  },
);
