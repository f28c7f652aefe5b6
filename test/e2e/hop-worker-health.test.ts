import t from 'tap';
import { admin, requestGate, startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { pollUntil, status, waitForStatus, isAlive } from '../helpers/wait.js';
import { scrape } from '../helpers/metrics.js';
import { untilOutput, untilOutputHas } from '../helpers/output.js';
import { atFileLimit, hasPrlimit, lowestFreeFd, nofileSoftLimit, setNofile } from '../helpers/file-limit.js';

// Issue 9 part 3, SPEC §4a: a worker that stops answering is found and
// replaced. Master → worker timeouts end requests a silent worker holds; an
// IPC health probe takes a stopped worker (SIGSTOP) out of routing, kills it
// and restarts it, while its sibling keeps serving.

interface ErrorBody {
  error: { message: string; type: string; code: string };
}

const UNSET_KEY = 'GG_HOP_HEALTH_UNSET_KEY';

t.test('a silent or stopped worker', async (t) => {
  const gw = await startGateway(t, {
    versions: {
      // A key variable nothing sets (the test worker calls no upstream): a warn line at start.
      one: { entry: TEST_WORKER_ENTRY, weight: 1, upstream: { format: 'openai', url: 'mock:', apiKeyEnv: UNSET_KEY } },
      two: { entry: TEST_WORKER_ENTRY, weight: 0, instances: 2 },
    },
    routing: { default: 'one' },
    // Short enough to see each timeout, long enough that a worker stalled a few seconds by a loaded machine is not
    // taken for a silent one: its requests answered late rather than 504, not killed as unhealthy (5 s of misses).
    limits: { workerHeadersTimeoutMs: 5000, workerIdleTimeoutMs: 2000, healthIntervalMs: 500, healthMisses: 10 },
  });

  t.test(
    'no response headers within workerHeadersTimeoutMs: 504 worker_timeout, and the worker request is closed',
    async (t) => {
      const res = await httpRequest(`${gw.url}/slow?ms=600000&version=one`);
      t.equal(res.status, 504);
      t.same(json<ErrorBody>(res).error, {
        message: 'the worker sent no response within workerHeadersTimeoutMs',
        type: 'gateway_error',
        code: 'worker_timeout',
      });
      await pollUntil(
        async () => json<{ active: number }>(await httpRequest(`${gw.url}/stats?version=one`)),
        (stats) => stats.active === 0, // the worker saw its request's socket close
        "the worker's request ended",
      );
      t.pass('the worker saw the request end');
    },
  );

  t.test('silence inside a stream: a final SSE error event worker_timeout', async (t) => {
    const res = await httpRequest(`${gw.url}/sse?events=3&ms=600000&version=one`);
    t.equal(res.status, 200);
    const events = res.body.split('\n\n').filter((e) => e.startsWith('data: '));
    t.equal(events.length, 1, 'only the error event');
    t.same((JSON.parse(events[0]!.slice('data: '.length)) as ErrorBody).error.code, 'worker_timeout');
  });

  t.test(
    'pings the idle timeout cuts are a warn line at start, and for a version added later; an unset key too',
    async (t) => {
      // The idle timeout (2 s) is not above the default ping interval (15 s). A probe: an add, a deploy or a reload was
      // silent about it, and only the start's config was looked at.
      const warning = (name: string): string =>
        `limits.workerIdleTimeoutMs (2000 ms) is not above version ${name}'s upstream.pingIntervalMs (15000 ms)`;
      await untilOutputHas(gw, warning('one'));
      t.notOk(gw.output().includes(warning('three')), 'nothing of a version not there yet');
      // A README probe: a version's calls went to its upstream without a key, and nothing said so.
      // Awaited too: the start's lines past 4 KiB go in more than one write, this one maybe in a later read.
      t.ok(
        await untilOutputHas(gw, `version one's upstream.apiKeyEnv names ${UNSET_KEY}, which is not set`),
        'and a key variable nothing sets',
      );
      const added = await admin(gw, 'POST', '/admin/versions', { name: 'three', entry: TEST_WORKER_ENTRY, weight: 0 });
      t.equal(added.status, 201);
      await untilOutputHas(gw, warning('three'));
      // And in the answer, as a reload's lists them: a pipeline's add got a plain 201, the reason in the log only.
      const { warnings } = added.body as { warnings?: string[] };
      t.equal(warnings?.length, 1, "in the add's answer");
      t.match(warnings, [warning('three')]);
      t.equal((await admin(gw, 'DELETE', '/admin/versions/three')).status, 200);
    },
  );

  t.test('SIGSTOP of one of two workers: its request ends, the other serves, it is replaced', async (t) => {
    const before = (await status(gw)).two!.workers;
    t.equal(before.length, 2);
    const held = httpRequest(`${gw.url}/slow?ms=600000&version=two`);
    const busy = await waitForStatus(
      gw,
      (v) => v.two!.workers.some((w) => w.inflight === 1),
      'a request is in flight on one worker',
    );
    const victim = busy.two!.workers.find((w) => w.inflight === 1)!.pid;
    const sibling = busy.two!.workers.find((w) => w.pid !== victim)!.pid;
    t.teardown(() => {
      if (isAlive(victim)) process.kill(victim, 'SIGCONT');
    });
    process.kill(victim, 'SIGSTOP');
    const ended = await held;
    t.ok(ended.status === 502 || ended.status === 504, `the stopped worker's request ended (${ended.status})`);
    t.ok(['worker_error', 'worker_timeout'].includes(json<ErrorBody>(ended).error.code));
    const after = await waitForStatus(
      gw,
      (v) => v.two!.workers.length === 2 && v.two!.workers.every((w) => w.state === 'ready' && w.pid !== victim),
      'the stopped worker is replaced by a ready one',
    );
    t.notOk(isAlive(victim), 'the stopped worker was killed');
    t.ok(
      after.two!.workers.some((w) => w.pid === sibling),
      'its sibling kept running',
    );
    t.equal(after.two!.workers.find((w) => w.pid !== sibling)!.restarts, 1, 'the replacement counts as a restart');
    const served = await Promise.all(Array.from({ length: 4 }, () => httpRequest(`${gw.url}/slow?ms=0&version=two`)));
    t.same(
      served.map((r) => r.status),
      [200, 200, 200, 200],
    );
    t.equal((await httpRequest(`${gw.url}/readyz`)).status, 200);
  });

  t.test('probe figures are in /admin/status and /metrics', async (t) => {
    const versions = await waitForStatus(
      gw,
      (v) => v.one!.workers[0]!.rssBytes > 0 && v.one!.workers[0]!.healthMisses === 0,
      'a probe was answered, and none is missed',
    );
    const w = versions.one!.workers[0]!;
    t.ok(w.rssBytes > 10 * 1024 * 1024, 'rss in bytes');
    t.ok(w.eventLoopDelayMs >= 0);
    const metrics = await scrape(gw);
    t.ok(metrics.sum('graygate_worker_rss_bytes', { version: 'one' }) > 0);
    t.ok(metrics.text.includes('graygate_worker_event_loop_delay_seconds{'), 'event-loop delay per worker');
  });
});

t.test(
  'a worker at its file limit keeps its requests: answering a health probe does not kill it',
  { skip: hasPrlimit() ? false : 'needs util-linux prlimit, to lower a worker’s file limit' },
  async (t) => {
    // Every probe read the worker's RSS by opening /proc/self/stat: at the limit, EMFILE, an uncaught exception.
    const gw = await startGateway(t, {
      versions: { one: { entry: TEST_WORKER_ENTRY, weight: 1 } },
      routing: { default: 'one' },
    });
    // Answered once released and two more probes answered: released after the limit is lowered, so both at the limit.
    const gate = requestGate(t);
    const inflight = httpRequest(`${gw.url}${gate.path}&probes=2`);
    const before = await waitForStatus(gw, (v) => v.one!.workers[0]!.inflight === 1, 'request in flight');
    const pid = before.one!.workers[0]!.pid;
    const restore = atFileLimit(t, pid);
    gate.release();
    const res = await inflight;
    restore();
    t.equal(res.status, 200);
    t.equal(json<{ pid: number }>(res).pid, pid);
    const after = await status(gw);
    t.equal(after.one!.workers[0]!.pid, pid, 'the same worker');
    t.equal(after.one!.workers[0]!.restarts, 0);
  },
);

t.test(
  'a worker the master cannot fork (its descriptor limit reached) is a failed start: nothing else stops',
  { skip: hasPrlimit() ? false : 'needs util-linux prlimit, to lower the master’s file limit' },
  async (t) => {
    // A fork that makes no process (EMFILE) has no stdio and no PID: the master read its stdout (a TypeError), and
    // killing the start's process signalled PID 0, the master's own process group: master and every worker gone.
    const gw = await startGateway(t, {
      versions: {
        one: { entry: TEST_WORKER_ENTRY, weight: 1 },
        two: { entry: TEST_WORKER_ENTRY, weight: 0 },
      },
      routing: { default: 'one' },
    });
    const before = await status(gw);
    const oneWorker = before.one!.workers[0]!.pid;
    const soft = nofileSoftLimit(gw.pid);
    t.teardown(() => isAlive(gw.pid) && setNofile(gw.pid, soft));
    // Every descriptor taken: the crashed worker's pipes give back three, a fork needs more (a pair per stdio).
    setNofile(gw.pid, lowestFreeFd(gw.pid));
    process.kill(before.two!.workers[0]!.pid, 'SIGKILL');
    await untilOutput(gw, () => /could not start: spawn \S* ?EMFILE/.exec(gw.output()) ?? undefined);
    setNofile(gw.pid, soft);
    t.ok(isAlive(gw.pid), 'the master lives');
    t.ok(isAlive(oneWorker), 'and the other version’s worker');
    const res = await httpRequest(`${gw.url}/hello?version=one`);
    t.equal(res.status, 200, 'which still answers');
    const after = await waitForStatus(gw, (v) => v.two!.workers.some((w) => w.state === 'ready'), 'two restarted');
    t.ok(after.two!.workers.length > 0, 'the failed start is retried, with the limit back');
  },
);
