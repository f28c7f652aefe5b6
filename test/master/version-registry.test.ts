import t from 'tap';
import { once } from 'node:events';
import { request } from 'node:http';
import { validateConfig, versionSchema, type Config } from '../../shared/config.js';
import { createLogger } from '../../shared/log.js';
import { Supervisor } from '../../master/supervisor.js';
import { VersionRegistry } from '../../master/version-registry.js';
import { buildOf } from '../../master/version.js';
import { StartLimiter } from '../../master/start-limiter.js';
import type { WorkerHandle } from '../../master/worker-handle.js';
import { fakeFork, killAll, FAKE_WORKER_ENTRY, type FakeFork } from '../helpers/fake-fork.js';
import { pollPause } from '../helpers/wait.js';

// The version registry and supervisor together (issue 11 part 4): the build
// swap state machine (deploy, failed deploy, rollback, add, remove), weights,
// and the crash-restart policy — with real processes from the injected fork.

const log = createLogger({ role: 'master', level: 'silent' });

function config(versions: Record<string, Record<string, unknown>>): Config {
  const parsed = validateConfig({
    versions,
    routing: { default: Object.keys(versions)[0] },
    // A drain's deadline: a request held in flight keeps its worker draining for the whole test.
    limits: { shutdownTimeoutMs: 60_000, healthIntervalMs: 60_000 },
  });
  if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
  return parsed.value;
}

function setup(
  t: { teardown(fn: () => unknown): void },
  fake: FakeFork,
  versions: Record<string, Record<string, unknown>>,
  removed: string[] = [],
  unrouted: string[] = [],
  /** After maxConsecutiveCrashes (2): long by default, so a test sees no restart. */
  crashLoopDelayMs = 600_000,
  /** A worker ready this long resets its crash count. */
  stableAfterMs = 60_000,
) {
  const cfg = config(versions);
  const supervisor: Supervisor = new Supervisor({
    log,
    limits: () => cfg.limits,
    redactEnv: () => [],
    fork: fake.fork,
    startLimiter: new StartLimiter(2),
    logLevel: 'silent',
  });
  const registry = new VersionRegistry({
    config: cfg,
    supervisor,
    log,
    onRemoved: (name) => removed.push(name),
    onUnrouted: (name) => unrouted.push(name),
    restartPolicy: {
      initialDelayMs: 1,
      maxDelayMs: 5,
      stableAfterMs,
      maxConsecutiveCrashes: 2,
      crashLoopDelayMs,
      signalSettleMs: 1,
    },
  });
  t.teardown(async () => {
    await supervisor.stopAll(500);
    killAll(fake);
  });
  return { supervisor, registry };
}

const pids = (workers: readonly WorkerHandle[]): number[] => workers.map((w) => w.pid!);
const alive = (pid: number): boolean => {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
};
function crash(w: WorkerHandle): void {
  request({ ...w.requestOptions('/crash'), agent: false })
    .on('error', () => undefined)
    .end();
}

type Version = ReturnType<VersionRegistry['require']>;

/** Crashes the version's worker and waits for its replacement to be ready. */
async function crashAndAwaitRestart(version: Version, slot = 0): Promise<void> {
  const worker = version.workers[slot]!;
  crash(worker);
  await once(worker, 'exit');
  while (version.workers[slot] === worker || version.workers[slot]!.state !== 'ready') await pollPause();
}

/**
 * Crashes the version's worker, then waits longer than the backoff (≤ 5 ms) by waiting on a full fork round trip of
 * another registry: how many forks the crash brought meanwhile.
 */
async function forksAfterCrash(
  t: Parameters<typeof setup>[0],
  fake: FakeFork,
  version: Version,
  slot = 0,
): Promise<number> {
  const forks = fake.children.length;
  const last = version.workers[slot]!;
  crash(last);
  await once(last, 'exit');
  const probe = fakeFork('ready');
  const { registry: other } = setup(t, probe, { x: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
  await other.startAll();
  return fake.children.length - forks;
}

t.test('deploy swaps the build; a failed deploy leaves the old one serving; rollback', async (t) => {
  const fake = fakeFork('ready');
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
  await registry.startAll();
  const v1 = registry.require('v1');
  const before = pids(v1.workers);
  t.equal(v1.workers.length, 1);
  t.ok(registry.isReady);

  const deployed = await registry.deploy('v1', { ...v1.build, env: { BUILD: 'b2' } });
  t.notSame(pids(deployed.workers), before, 'new workers');
  t.ok(
    before.every((pid) => !alive(pid)),
    'the old ones are gone when deploy answers',
  );
  t.match(deployed.lastDeploy, { kind: 'deploy', phase: 'done' });
  t.equal(deployed.previousBuilds.length, 1, 'the old build is kept for rollback');
  const current = pids(deployed.workers);

  fake.mode = 'crash';
  await t.rejects(registry.deploy('v1', { ...v1.build, env: { BUILD: 'broken' } }), {
    code: 'deploy_failed',
    message: /exited with code 3.*crash at start/,
  });
  t.same(pids(registry.require('v1').workers), current, 'the old build keeps serving');
  t.match(registry.require('v1').lastDeploy, { phase: 'failed', error: { exitCode: 3 } });
  t.equal(registry.require('v1').build.env['BUILD'], 'b2');

  fake.mode = 'ready';
  const slow = registry.deploy('v1', { ...v1.build, env: { BUILD: 'b3' } });
  await t.rejects(registry.deploy('v1', v1.build), { code: 'deploy_in_progress' });
  await slow;
  const rolled = await registry.rollback('v1');
  t.equal(rolled.build.env['BUILD'], 'b2', 'back to the build before');
  t.match(rolled.lastDeploy, { kind: 'rollback', phase: 'done' });
  await registry.rollback('v1');
  await t.rejects(registry.rollback('v1'), { code: 'no_previous_build' });
});

t.test(
  'a deploy of the running build is no step to roll back to: a rollback after it goes to the build before',
  async (t) => {
    // The automation probe: a pipeline retried a deploy that had timed out in its client (the first went on in the
    // master); the rollback after it forked the same build again, from the same files, and rolled back nothing.
    const fake = fakeFork('ready');
    const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1, env: { BUILD: 'b1' } } });
    await registry.startAll();
    const b2 = { ...registry.require('v1').build, env: { BUILD: 'b2' } };
    await registry.deploy('v1', b2);
    const first = pids(registry.require('v1').workers);
    const again = await registry.deploy('v1', { ...b2 });
    t.notSame(pids(again.workers), first, 'the same build deployed again is still a restart (its files may be new)');
    t.same(
      again.previousBuilds.map((b) => b.env['BUILD']),
      ['b1'],
      'and not a build to roll back to',
    );
    const rolled = await registry.rollback('v1');
    t.equal(rolled.build.env['BUILD'], 'b1', 'the rollback goes to the build before it');
    await t.rejects(registry.rollback('v1'), { code: 'no_previous_build' });
  },
);

t.test('add, weights, remove', async (t) => {
  const fake = fakeFork('ready');
  const removed: string[] = [];
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } }, removed);
  await registry.startAll();
  const cfg = versionSchema.parse({ entry: FAKE_WORKER_ENTRY, weight: 0 });
  const added = registry.add('v2', cfg);
  t.notOk(
    registry.routingTable.versions.some((v) => v.name === 'v2'),
    'not routable while starting',
  );
  await t.rejects(
    registry.add('v2', cfg),
    { code: 'version_exists', message: 'version "v2" is being added: it is routable once it is ready' },
    'a second add of the same name is refused, saying the first is under way (not "exists; deploy")',
  );
  await t.rejects(
    registry.deploy('v2', buildOf(cfg)),
    { code: 'unknown_version', message: /^unknown version "v2" \(it is being added: it is known once it is ready\);/ },
    'a deploy meanwhile says why it is unknown',
  );
  await added;
  t.ok(
    registry.routingTable.versions.some((v) => v.name === 'v2'),
    'routable once ready',
  );

  registry.setWeights({ v2: 5 });
  t.same(registry.routingTable.versions, [
    { name: 'v1', weight: 1 },
    { name: 'v2', weight: 5 },
  ]);
  t.throws(() => registry.setWeights({ v9: 1 }), { code: 'unknown_version' });
  t.throws(() => registry.setWeights({ v1: 0, v2: 0 }), { code: 'invalid_request' });
  t.equal(registry.require('v2').weight, 5, 'a refused change changes nothing');

  // A canary's pair is routed as one, named after its baseline, until a change of either's weight made another way.
  const pairOf = (): Array<string | undefined> => registry.routingTable.versions.map((v) => v.pair);
  registry.setPairWeights('v2', 'v1', { v1: 3, v2: 3 });
  t.same(pairOf(), ['v1', 'v1'], 'paired by a canary step');
  registry.setWeights({ v2: 3 });
  t.same(pairOf(), ['v1', 'v1'], 'a weight set to what it was changes nothing: the pair stays');
  registry.setWeights({ v2: 5 });
  t.same(pairOf(), [undefined, undefined], 'a weight set another way: two versions again');
  registry.setPairWeights('v2', 'v1', { v1: 1, v2: 5 });

  await t.rejects(registry.remove('v1'), { code: 'invalid_request' }, 'not the routing default');
  const v2pids = pids(registry.require('v2').workers);
  await registry.remove('v2');
  t.notOk(registry.get('v2'));
  t.same(pairOf(), ['v1'], 'the one left keeps the pair’s name, by which its users came');
  t.ok(
    v2pids.every((pid) => !alive(pid)),
    'its workers stopped',
  );
  t.same(removed, ['v2']);
  t.throws(() => registry.require('v2'), { code: 'unknown_version' });
});

t.test('a version named like a property of every object (constructor) is weighed by its own weight', async (t) => {
  // A probe: every weight check read the changes as a plain object, whose prototype answers `constructor`.
  const fake = fakeFork('ready');
  const { registry } = setup(t, fake, {
    v1: { entry: FAKE_WORKER_ENTRY, weight: 1 },
    constructor: { entry: FAKE_WORKER_ENTRY, weight: 0 },
    v3: { entry: FAKE_WORKER_ENTRY, weight: 0 },
  });
  await registry.startAll();
  t.throws(() => registry.setWeights({ v1: 0 }), { code: 'invalid_request' }, 'all zero is refused');
  t.equal(registry.require('v1').weight, 1);
  registry.setWeights({ constructor: 10, v3: 5, v1: 0 });
  t.doesNotThrow(
    () => registry.assertRemovable('v3', { weights: { v1: 0 } }),
    'constructor still has weight: v3 is not the last',
  );
  t.throws(
    () => registry.assertRemovable('constructor', { weights: { v3: 0 } }),
    { code: 'invalid_request', message: /last version with weight > 0/ },
    'with v3 set to 0, constructor is the last one weighted',
  );
});

t.test('a version re-added while its old self drains keeps its name: the old drain forgets nothing', async (t) => {
  // The old drain's end called onRemoved, and the master wiped the NEW version's metrics (and canary record).
  const fake = fakeFork('ready');
  const removed: string[] = [];
  const unrouted: string[] = [];
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } }, removed, unrouted);
  await registry.startAll();
  const cfg = versionSchema.parse({ entry: FAKE_WORKER_ENTRY, weight: 1 });
  await registry.add('v2', cfg);
  // A request in flight holds the old worker draining until it is released.
  const lease = registry.require('v2').admission.tryAcquire();
  if (lease === undefined || !('release' in lease)) throw new Error('no slot on v2');
  const oldPid = lease.worker.pid!;
  const removing = registry.remove('v2');
  t.notOk(registry.get('v2'), 'out of routing at once');
  // The old version's ended canary is forgotten now, before the namesake comes (main.ts: canaries.forget).
  t.same(unrouted, ['v2'], 'told when it left routing');
  const again = await registry.add('v2', cfg);
  t.ok(alive(oldPid), 'the old worker still drains');
  lease.release();
  await removing;
  t.notOk(alive(oldPid), 'the old worker is gone');
  t.same(removed, [], 'the name is routed again: nothing forgotten');
  t.equal(registry.get('v2'), again, 'the new version stays');
  await registry.remove('v2');
  t.same(removed, ['v2'], 'removing the new one forgets the name');
});

t.test('crashes are restarted with backoff, up to the policy; intended exits are not', async (t) => {
  const fake = fakeFork('crash-later');
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
  await registry.startAll();
  const v1 = registry.require('v1');
  for (let n = 1; n <= 2; n++) {
    await crashAndAwaitRestart(v1);
    t.equal(v1.restarts, n, `restart ${n}`);
    t.equal(v1.workers[0]!.restarts, n, 'the replacement carries the count');
  }
  // Past maxConsecutiveCrashes (2): no restart is scheduled.
  t.equal(await forksAfterCrash(t, fake, v1), 0, 'no quick restart after the third crash in a row');
  t.equal(v1.workers[0]!.state, 'crashed');
  t.notOk(registry.isReady, '/readyz would say not ready');
});

t.test('crashes are counted per instance: every instance crashing once is no crash loop', async (t) => {
  // A probe: 11 instances killed once each (an OOM kill of the pod's processes), the last restarted after 5 minutes.
  const fake = fakeFork('crash-later');
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1, instances: 3 } });
  await registry.startAll();
  const v1 = registry.require('v1');
  for (const slot of [0, 1]) await crashAndAwaitRestart(v1, slot);
  t.equal(await forksAfterCrash(t, fake, v1, 2), 1, "the third instance's first crash is restarted at once");
  t.same(
    v1.workers.map((w) => w.consecutiveCrashes),
    [1, 1, 1],
    'one crash in a row each',
  );
});

t.test('a wall-clock step (NTP, a resumed VM) does not make a crash loop look stable', async (t) => {
  const fake = fakeFork('crash-later');
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
  await registry.startAll();
  const v1 = registry.require('v1');
  for (let n = 1; n <= 2; n++) await crashAndAwaitRestart(v1);
  // The clock steps an hour ahead, past stableAfterMs (60 s), while the worker has been up for milliseconds.
  const realNow = Date.now;
  Date.now = () => realNow() + 3_600_000;
  t.teardown(() => {
    Date.now = realNow;
  });
  const forks = await forksAfterCrash(t, fake, v1);
  Date.now = realNow;
  t.equal(forks, 0, 'the third crash in a row still counts: no quick restart');
  t.equal(v1.workers[0]!.state, 'crashed');
});

t.test(
  'past the crashes in a row, a version is still restarted, slowly (CrashLoopBackOff), not given up',
  async (t) => {
    const fake = fakeFork('crash-later');
    const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } }, [], [], 20);
    await registry.startAll();
    const v1 = registry.require('v1');
    for (let n = 1; n <= 4; n++) {
      await crashAndAwaitRestart(v1);
      t.equal(v1.restarts, n, `restart ${n}${n > 2 ? ', after crashLoopDelayMs' : ''}`);
    }
    t.ok(registry.isReady, 'serving again');
  },
);

t.test(
  'once the master shuts down, a change is 503 shutting_down and a deploy it cut is not the build failing',
  async (t) => {
    // An admin probe: a deploy whose body came after SIGTERM forked a worker the shutdown had not counted and answered
    // 200; one running at the signal answered 500 deploy_failed "killed by SIGTERM", blaming its build.
    const fake = fakeFork('ready');
    const { supervisor, registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
    await registry.startAll();
    const v1 = registry.require('v1');
    const forks = fake.children.length;
    fake.mode = 'silent'; // never ready: the deploy is starting its build when the shutdown begins
    const cut = registry.deploy('v1', { ...v1.build, env: { BUILD: 'b2' } });
    while (fake.children.length === forks) await pollPause();
    registry.stopRestarts();
    const stopped = supervisor.stopAll(500);
    await t.rejects(cut, { code: 'shutting_down', message: /the deploy of v1 was stopped, nothing changed/ });
    await stopped;
    fake.mode = 'ready';
    await t.rejects(registry.deploy('v1', { ...v1.build, env: { BUILD: 'b3' } }), { code: 'shutting_down' });
    await t.rejects(registry.add('v2', versionSchema.parse({ entry: FAKE_WORKER_ENTRY, weight: 0 })), {
      code: 'shutting_down',
    });
    t.throws(() => registry.setWeights({ v1: 2 }), { code: 'shutting_down' });
    t.throws(() => supervisor.spawn({ version: 'v1', instance: 0, build: v1.build, onCrash: () => undefined }), {
      code: 'shutting_down',
    });
    t.equal(fake.children.length, forks + 1, 'nothing forked after the shutdown began');
  },
);

/** GET /signal: the fake worker tells the master it was sent SIGTERM; resolves once the master has heard it. */
async function signal(w: WorkerHandle, times = 1): Promise<void> {
  const heard = once(w, 'signal');
  request({ ...w.requestOptions(`/signal?times=${times}`), agent: false }, (res) => res.resume())
    .on('error', () => undefined)
    .end();
  await heard;
}

t.test(
  'a worker sent SIGTERM is replaced once its replacement is ready, then drains and stops: no crash',
  async (t) => {
    const fake = fakeFork('ready');
    const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1, instances: 2 } });
    await registry.startAll();
    const v1 = registry.require('v1');
    const [old, other] = v1.workers as [WorkerHandle, WorkerHandle];
    await signal(old);
    t.equal(v1.workers[0], old, 'it serves on while its replacement starts');
    while (fake.children.length < 3) await pollPause();
    t.same(
      [...v1.starting].map((w) => w.pid),
      [fake.children[2]!.pid],
      'its replacement shows as starting (status, metrics)',
    );
    const stopped = once(old, 'exit');
    while (v1.workers[0] === old || v1.workers[0]!.state !== 'ready') await pollPause();
    t.equal(v1.workers[1], other, 'the other instance untouched');
    t.equal(v1.workers[0]!.instance, 0, 'in its slot');
    const [report] = (await stopped) as [{ isIntended: boolean }];
    t.equal(report.isIntended, true, 'stopped by the master, not a crash');
    t.equal(old.state, 'stopped');
    t.equal(v1.restarts, 1, 'counted as a restart of the version');
    t.equal(v1.starting.size, 0, 'starting no more');
    t.equal(fake.children.length, 3, 'one process forked for it');
  },
);

t.test('a stable worker sent SIGTERM: its replacement starts with no crash in a row', async (t) => {
  // An old crash loop's count stays on a worker that then served for hours (a crash resets it, stableAfterMs): carried
  // to its replacement, that one's first crash was counted past maxConsecutiveCrashes (the crash-loop delay).
  const fake = fakeFork('ready');
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } }, [], [], 600_000, 1);
  await registry.startAll();
  const v1 = registry.require('v1');
  const old = v1.workers[0]!;
  old.consecutiveCrashes = 2;
  await signal(old);
  while (v1.workers[0] === old || v1.workers[0]!.state !== 'ready') await pollPause();
  t.equal(v1.workers[0]!.consecutiveCrashes, 0, 'stable (1 ms here): counted afresh');
});

t.test('a worker that says `signal` again and again gets one replacement', async (t) => {
  // A build's own IPC code (a version's `entry`) may send anything: each `signal` made a settle timer, and each timer
  // that ran before the first replacement was ready forked one more (the shared worker lifecycle sends one).
  const fake = fakeFork('ready');
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
  await registry.startAll();
  const v1 = registry.require('v1');
  const old = v1.workers[0]!;
  await signal(old, 5);
  const stopped = once(old, 'exit');
  while (v1.workers[0] === old || v1.workers[0]!.state !== 'ready') await pollPause();
  await stopped;
  // Longer than the settle (1 ms): a full fork round trip of another registry.
  const probe = fakeFork('ready');
  await setup(t, probe, { x: { entry: FAKE_WORKER_ENTRY, weight: 1 } }).registry.startAll();
  t.equal(fake.children.length, 2, 'one replacement forked');
  t.equal(v1.restarts, 1);
});

t.test('a worker sent SIGTERM whose replacement fails to start serves on', async (t) => {
  const fake = fakeFork('ready');
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
  await registry.startAll();
  const v1 = registry.require('v1');
  const old = v1.workers[0]!;
  fake.mode = 'crash';
  await signal(old);
  // Once the signal has settled (signalSettleMs).
  while (fake.children.length < 2) await pollPause();
  t.equal(fake.children.length, 2, 'a replacement forked');
  await once(fake.children[1]!, 'close');
  while (v1.starting.size > 0) await pollPause();
  // Long enough for a crash restart to have forked one (as forksAfterCrash waits): none may, for a failed replacement.
  const probe = fakeFork('ready');
  await setup(t, probe, { x: { entry: FAKE_WORKER_ENTRY, weight: 1 } }).registry.startAll();
  t.equal(fake.children.length, 2, 'nothing forked after it');
  t.equal(v1.workers[0], old, 'the worker keeps its slot');
  t.equal(old.state, 'ready', 'and serves');
  t.equal(v1.restarts, 0);
});

t.test('a new build’s worker sent SIGTERM before its swap is done is told to drain, not left serving', async (t) => {
  // Answered `signal-taken` and never replaced (it has no slot yet), it served on for good: the operator's SIGTERM was
  // lost (a review). Told to drain now, as it drained on its own before, its swap cannot move traffic to it.
  const base = fakeFork('ready');
  // The third fork (the new build's second instance) never gets ready: the swap waits for it.
  const fake: FakeFork = {
    ...base,
    fork: (modulePath, args, options) => {
      base.mode = base.children.length === 2 ? 'silent' : 'ready';
      return base.fork(modulePath, args, options);
    },
  };
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
  await registry.startAll();
  const v1 = registry.require('v1');
  const deploying = registry.deploy('v1', { ...v1.build, instances: 2, env: { BUILD: 'b2' } });
  deploying.catch(() => undefined);
  let fresh: WorkerHandle | undefined;
  while ((fresh = [...v1.starting].find((w) => w.state === 'ready')) === undefined) await pollPause();
  await signal(fresh);
  t.equal(fresh.state, 'draining', 'it takes no new request');
  if (fresh.state === 'draining') await once(fresh, 'exit');
  t.equal(v1.workers.length, 1, 'the old build serves on');
  t.equal(v1.workers[0]!.state, 'ready');
});

// A SIGTERM to the whole process group: the master may read the workers' `signal` before its own signal (libuv blocks
// signals across each fork), and forked a replacement for each, to stop it again (a review: half of the group kills of
// 4 workers forked 2 to 4). Its stop, begun before the signal or within the settle, is the answer.
for (const isStopFirst of [true, false])
  t.test(
    `a worker sent SIGTERM ${isStopFirst ? 'while the master stops' : 'just before the master’s own'}: nothing is forked`,
    async (t) => {
      const fake = fakeFork('ready');
      const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
      await registry.startAll();
      if (isStopFirst) registry.stopRestarts();
      await signal(registry.require('v1').workers[0]!);
      if (!isStopFirst) registry.stopRestarts();
      // Longer than the settle (1 ms): a full fork round trip of another registry.
      const probe = fakeFork('ready');
      await setup(t, probe, { x: { entry: FAKE_WORKER_ENTRY, weight: 1 } }).registry.startAll();
      t.equal(fake.children.length, 1, 'nothing forked');
      t.equal(registry.require('v1').workers[0]!.state, 'ready', 'it serves until the master stops it');
    },
  );

t.test('a worker that exits once the master is shutting down is not restarted', async (t) => {
  // A probe: a SIGTERM to the whole process group (systemd's default KillMode) reaches the workers, which drain and
  // exit; the master restarted each during its own drain.
  const fake = fakeFork('ready');
  const { registry } = setup(t, fake, { v1: { entry: FAKE_WORKER_ENTRY, weight: 1 } });
  await registry.startAll();
  t.equal(await forksAfterCrash(t, fake, registry.require('v1')), 1, 'before: a crashed worker is restarted');
  while (registry.require('v1').workers[0]!.state !== 'ready') await pollPause();
  registry.stopRestarts();
  t.equal(await forksAfterCrash(t, fake, registry.require('v1')), 0, 'shutting down: not restarted');
});
