import t from 'tap';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { admin, hangingBuild, requestGate, startGateway, TEST_WORKER_ENTRY, type Gateway } from '../helpers/gateway.js';
import { scrape } from '../helpers/metrics.js';
import { httpRequest } from '../helpers/http.js';
import { pollUntil, status, waitForStatus } from '../helpers/wait.js';

t.test(
  'reload: weights only restarts nothing; invalid file changes nothing; added/removed/changed versions applied',
  async (t) => {
    const versions = { v1: { entry: TEST_WORKER_ENTRY, weight: 90 }, v2: { entry: TEST_WORKER_ENTRY, weight: 10 } };
    const gw = await startGateway(t, { versions }, { env: { LOG_LEVEL: 'info' } });
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
    await reloadLogged(gw, ['admin']);
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
    await reloadLogged(gw, ['SIGHUP']);

    gw.writeConfig({
      versions: { v1: { ...versions.v1, weight: 50 }, v2: { ...versions.v2, weight: 50, env: { X: '1' } } },
    });
    const r3 = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
    t.same(r3.body.applied, ['removed v3']);
    t.notOk((await status(gw)).v3);

    // Asked for twice at once: one reload and one more after it (coalesced when a third comes meanwhile). Either
    // way the log says what asked for each.
    const seen = reloadLines(gw).length;
    process.kill(gw.pid, 'SIGHUP');
    t.equal((await admin(gw, 'POST', '/admin/reload')).status, 200);
    await reloadLogged(gw, ['SIGHUP', 'admin'], seen);
  },
);

/** The `trigger` of each `config reloaded` line so far. */
function reloadLines(gw: Gateway): string[] {
  return [...gw.output().matchAll(/"trigger":"([^"]*)"[^\n]*"msg":"config reloaded"/g)].map((m) => m[1]!);
}

/** Waits for `config reloaded` lines after the first `from` to name every one of `triggers` (the log's events). */
async function reloadLogged(gw: Gateway, triggers: string[], from = 0): Promise<void> {
  const named = (): Set<string> =>
    new Set(
      reloadLines(gw)
        .slice(from)
        .flatMap((line) => line.split(',')),
    );
  while (!triggers.every((trigger) => named().has(trigger))) await once(gw.child.stdout!, 'data');
}

t.test('reload is all or nothing: a build that cannot start changes nothing, and is not half-applied', async (t) => {
  const versions = { v1: { entry: TEST_WORKER_ENTRY, weight: 90 }, v2: { entry: TEST_WORKER_ENTRY, weight: 10 } };
  const gw = await startGateway(t, { versions });
  const before = await status(gw);
  const hash = async (): Promise<string | undefined> =>
    (await admin<{ configHash?: string }>(gw, 'GET', '/admin/status')).body.configHash;
  const startedHash = await hash();

  gw.writeConfig({
    versions: {
      v1: { ...versions.v1, weight: 10 },
      v2: { ...versions.v2, env: { TEST_WORKER_START: 'crash' } },
      v3: { entry: TEST_WORKER_ENTRY, weight: 50 },
    },
  });
  const r = await admin<{ error: { code: string; message: string } }>(gw, 'POST', '/admin/reload');
  t.equal(r.status, 500);
  t.equal(r.body.error.code, 'deploy_failed');
  t.match(r.body.error.message, /^config not reloaded, nothing changed: v2: build .* did not become ready/);
  const after = await status(gw);
  t.same(Object.keys(after).sort(), ['v1', 'v2'], 'v3 was not added');
  t.same([after.v1!.weight, after.v2!.weight], [90, 10], 'no weight changed');
  t.same(
    after.v2!.workers.map((w) => w.pid),
    before.v2!.workers.map((w) => w.pid),
    'v2 runs its old build',
  );
  t.equal(await hash(), startedHash, 'configHash is still the applied file’s');
});

t.test('a watched file that could not be applied is tried again after a backoff', async (t) => {
  const versions = { v1: { entry: TEST_WORKER_ENTRY, weight: 90 }, v2: { entry: TEST_WORKER_ENTRY, weight: 10 } };
  const config = { watch: true };
  const gw = await startGateway(t, { versions, config });
  // A deploy of v2 that never gets ready holds v2 while the file changes v2's build: 409, not applied.
  const build = hangingBuild(t);
  const hanging = admin(gw, 'POST', '/admin/versions/v2/deploy', { env: build.env });
  await waitForStatus(gw, (v) => v.v2!.lastDeploy?.phase === 'starting', 'deploy running');
  gw.writeConfig({
    versions: { v1: { ...versions.v1, weight: 50 }, v2: { ...versions.v2, weight: 50, env: { X: '1' } } },
    config,
  });
  while (!gw.output().includes('not applied, nothing changed')) await once(gw.child.stdout!, 'data');
  t.equal((await status(gw)).v1!.weight, 90, 'nothing applied');
  build.giveUp();
  t.equal((await hanging).status, 500);
  // An unrelated event in the directory (the master's own log file, say) does not re-run it
  // (test/master/config-watch.test.ts); the backoff's try, 10 s after the failure, applies the same
  // content, the deploy being over.
  writeFileSync(join(dirname(gw.configPath), 'poke'), '1');
  const applied = await waitForStatus(
    gw,
    (v) => v.v1!.weight === 50 && v.v2!.lastDeploy?.phase === 'done',
    'the same file applied on retry',
  );
  t.equal(applied.v2!.lastDeploy?.phase, 'done');
  t.equal(applied.v2!.weight, 50);
});

t.test('a new worker that exits while the reload waits for another build: nothing changes', async (t) => {
  // Ready, then gone before the commit: it was in no version's workers yet, so nothing restarted it, and the
  // reload installed it dead (every request to v1 503 no_ready_worker).
  const versions = { v1: { entry: TEST_WORKER_ENTRY, weight: 50 }, v2: { entry: TEST_WORKER_ENTRY, weight: 50 } };
  const gw = await startGateway(t, { versions }, { env: { LOG_LEVEL: 'info' } });
  const before = await status(gw);
  const oldPids = new Set(Object.values(before).flatMap((v) => v.workers.map((w) => w.pid)));
  const gate = join(dirname(gw.configPath), 'release-v2');
  gw.writeConfig({
    versions: {
      v1: { ...versions.v1, env: { MARK: 'new' } },
      v2: { ...versions.v2, env: { TEST_WORKER_READY_FILE: gate } },
    },
  });
  const reload = admin<{ error: { code: string; message: string } }>(gw, 'POST', '/admin/reload');
  // v1's new worker gets ready and passes its probe (its pid is then in the deploy record); v2's waits.
  const started = await waitForStatus(
    gw,
    (v) => (v.v1!.lastDeploy?.newPids.length ?? 0) > 0,
    "v1's new build ready and probed",
  );
  const victim = started.v1!.lastDeploy!.newPids[0]!;
  t.notOk(oldPids.has(victim));
  process.kill(victim, 'SIGKILL');
  while (!gw.output().includes(`"workerPid":${victim},"code":null,"signal":"SIGKILL"`))
    await once(gw.child.stdout!, 'data');
  writeFileSync(gate, '');
  const r = await reload;
  t.equal(r.status, 500);
  t.match(r.body.error.message, /^config not reloaded, nothing changed: a new worker of v1 \(pid \d+\) stopped/);
  const after = await status(gw);
  t.same(
    after.v1!.workers.map((w) => [w.pid, w.state]),
    before.v1!.workers.map((w) => [w.pid, 'ready']),
    'v1 still runs its old, ready worker',
  );
  t.same(
    after.v2!.workers.map((w) => w.pid),
    before.v2!.workers.map((w) => w.pid),
    'v2 too',
  );
});

t.test('weights and canaries wait for a reload that is starting builds: its commit would undo them', async (t) => {
  // A probe's repro: PUT /admin/weights during a reload answered 200, then the commit put the file's weight back;
  // a canary started then was acknowledged (202) and ended by the commit; so was a running one's promotion.
  const versions = { v1: { entry: TEST_WORKER_ENTRY, weight: 50 }, v2: { entry: TEST_WORKER_ENTRY, weight: 50 } };
  const gw = await startGateway(t, { versions });
  const running = await admin(gw, 'POST', '/admin/versions/v2/canary', { steps: [70, 100], stepMs: 60_000 });
  t.equal(running.status, 202, 'a canary runs when the reload begins');
  const gate = join(dirname(gw.configPath), 'release-v2');
  gw.writeConfig({
    versions: {
      v1: { ...versions.v1, weight: 60, env: { MARK: 'new' } },
      v2: { ...versions.v2, weight: 40, env: { TEST_WORKER_READY_FILE: gate } },
    },
  });
  const reload = admin(gw, 'POST', '/admin/reload');
  // v1's new build is ready while v2's waits on its gate: the reload is starting builds.
  const starting = await waitForStatus(
    gw,
    (v) => (v.v1!.lastDeploy?.newPids.length ?? 0) > 0,
    "v1's new build ready and probed",
  );
  // The builds being started show beside the serving ones, as `starting` until traffic moves to them (they were
  // missing from status and graygate_workers for as long as a deploy started them).
  const newV1 = starting.v1!.lastDeploy!.newPids[0]!;
  t.same(
    starting.v1!.workers.map((w) => w.state).sort(),
    ['ready', 'starting'],
    "v1: the serving worker, and the new build's, ready but without traffic",
  );
  t.equal(starting.v1!.workers.find((w) => w.state === 'starting')?.pid, newV1);
  t.same(
    starting.v2!.workers.map((w) => w.state).sort(),
    ['ready', 'starting'],
    "v2: the serving worker, and the new build's, waiting on its gate",
  );
  const metrics = await scrape(gw);
  t.same(
    [
      metrics.sum('graygate_workers', { version: 'v1', state: 'ready' }),
      metrics.sum('graygate_workers', { version: 'v1', state: 'starting' }),
    ],
    [1, 1],
    'graygate_workers counts them the same way',
  );
  const weights = await admin<{ error: { code: string } }>(gw, 'PUT', '/admin/weights', { v1: 7 });
  t.equal(weights.status, 409);
  t.equal(weights.body.error.code, 'deploy_in_progress');
  const canary = await admin<{ error: { code: string } }>(gw, 'POST', '/admin/versions/v2/canary', {
    steps: [30, 100],
    stepMs: 60_000,
  });
  t.equal(canary.status, 409);
  t.equal(canary.body.error.code, 'deploy_in_progress');
  for (const [method, path] of [
    ['POST', '/admin/versions/v2/canary/promote'],
    ['DELETE', '/admin/versions/v2/canary'],
  ] as const) {
    const ended = await admin<{ error: { code: string } }>(gw, method, path);
    t.equal(ended.status, 409, `${method} ${path}`);
    t.equal(ended.body.error.code, 'deploy_in_progress');
  }
  writeFileSync(gate, '');
  t.equal((await reload).status, 200);
  const after = await status(gw);
  t.same([after.v1!.weight, after.v2!.weight], [60, 40], "the file's weights, nothing acknowledged and undone");
  t.same(
    after.v1!.workers.filter((w) => w.pid === newV1).map((w) => w.state),
    ['ready'],
    "v1's new worker serves, once (a row for it, not two)",
  );
  t.equal((await admin(gw, 'PUT', '/admin/weights', { v1: 7 })).status, 200, 'once it ended, weights change again');
});

t.test('a reload answers once it committed: the next applies while an old build drains a long request', async (t) => {
  // The reload's answer waited for its old builds' drains, and reloads run one at a time: with drains as long as a
  // stream (limits.drainTimeoutMs), a config watch's next weight step waited for the longest stream of the last
  // deploy. Old builds drain after the commit now, as after `nginx -s reload`.
  const versions = { v1: { entry: TEST_WORKER_ENTRY, weight: 50 }, v2: { entry: TEST_WORKER_ENTRY, weight: 50 } };
  const gw = await startGateway(t, { versions });
  const oldPid = (await status(gw)).v2!.workers[0]!.pid;
  const gate = requestGate(t);
  const long = httpRequest(`${gw.url}${gate.path}&version=v2`);
  await waitForStatus(gw, (v) => v.v2!.workers[0]!.inflight === 1, 'the long request on the old build');
  gw.writeConfig({ versions: { ...versions, v2: { ...versions.v2, env: { MARK: 'new' } } } });
  let answer: { status: number; body: { applied: string[] } } | undefined;
  void admin<{ applied: string[] }>(gw, 'POST', '/admin/reload').then((r) => (answer = r));
  await pollUntil(
    () => Promise.resolve(answer),
    (a) => a !== undefined,
    'the reload answered while the old build serves',
  );
  t.same([answer!.status, answer!.body.applied], [200, ['deployed v2']]);
  gw.writeConfig({ versions: { v1: { ...versions.v1, weight: 90 }, v2: { ...versions.v2, env: { MARK: 'new' } } } });
  const next = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
  t.same([next.status, next.body.applied], [200, ['weights v1=90']], 'the next reload, at once');
  const now = await status(gw);
  t.same(
    now.v2!.workers.filter((w) => w.pid === oldPid).map((w) => w.state),
    ['draining'],
    'the old build drains, shown',
  );
  gate.release();
  t.equal((await long).status, 200, 'its request ends whole');
  await waitForStatus(gw, (v) => v.v2!.workers.every((w) => w.pid !== oldPid), 'the old build gone');
});
