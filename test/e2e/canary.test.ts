import t from 'tap';
import { admin, startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { canaryOf, pollPause, pollUntil, status, waitForStatus } from '../helpers/wait.js';
import type { CanaryStatus } from '../../master/canary/controller.js';
import { drive, runCanaryToEnd } from '../helpers/load.js';
import { scrape, scrapeUntil } from '../helpers/metrics.js';
import { httpRequest } from '../helpers/http.js';
import { openRaw, rawRequest, type RawConnection } from '../helpers/raw-http.js';
import { runCli } from '../helpers/cli.js';

/** Resolves once `conn` has had an interim (1xx) response of `status`; rejects if it closes first. */
function interim(conn: RawConnection, status: number): Promise<void> {
  return new Promise((resolve, reject) => {
    const look = (): void => {
      if (!conn.responses.some((r) => r.status === status)) return;
      conn.socket.off('data', look);
      resolve();
    };
    conn.socket.on('data', look); // after openRaw's parser: `responses` already holds this chunk's
    look();
    void conn.closed.then(() => reject(new Error(`the connection closed before a ${status} response`)));
  });
}

/** The admin API call, under a name the CLI test's `admin` flags do not shadow. */
const adminApi = admin;

// SPEC §11, issue 13: canaries judged on the gateway's own outcomes, with
// real workers of different quality (the test worker's TEST_WORKER_ERROR_EVERY
// and TEST_WORKER_FIRST_EVENT_MS per version). Each canary here ends by itself;
// load is bounded in count and ends when the canary does.

interface ErrorBody {
  error: { code: string; message: string };
}

t.test('canaries', async (t) => {
  const worker = (env: Record<string, string> = {}, weight = 0) => ({ entry: TEST_WORKER_ENTRY, weight, env });
  const gw = await startGateway(t, {
    versions: {
      base: worker({}, 100),
      good: worker(),
      bad: worker({ TEST_WORKER_ERROR_EVERY: '4' }),
      slow: worker({ TEST_WORKER_FIRST_EVENT_MS: '400' }),
      hang: worker({ TEST_WORKER_HANG_EVERY: '3' }),
      quota: worker({ TEST_WORKER_ERROR_EVERY: '3', TEST_WORKER_ERROR_STATUS: '429' }),
      lister: worker({ TEST_WORKER_ERROR_EVERY: '1', TEST_WORKER_ERROR_METHOD: 'POST' }),
      idle: worker(),
    },
    routing: { default: 'base' },
  });
  const weights = async (): Promise<Record<string, number>> => {
    const v = await status(gw);
    return Object.fromEntries(Object.entries(v).map(([n, s]) => [n, s.weight]));
  };

  t.test('the API refuses what it cannot run', async (t) => {
    const cases: Array<[string, string, unknown, number, string]> = [
      ['unknown version', 'nope', {}, 404, 'unknown_version'],
      ['unknown baseline', 'good', { baseline: 'nope' }, 404, 'unknown_version'],
      ['steps going down', 'good', { steps: [50, 10, 100] }, 400, 'invalid_request'],
      ['last step not 100', 'good', { steps: [10, 50] }, 400, 'invalid_request'],
      ['a step of 0', 'good', { steps: [0, 100] }, 400, 'invalid_request'],
      ['bad alpha', 'good', { alpha: 2 }, 400, 'invalid_request'],
      ['the baseline as canary', 'base', {}, 400, 'invalid_request'],
      ['unknown field', 'good', { stepSeconds: 3 }, 400, 'invalid_request'],
      ['a pause at no step', 'good', { steps: [10, 100], pauseAt: [50] }, 400, 'invalid_request'],
      ['a pause that is no number', 'good', { pauseAt: ['25'] }, 400, 'invalid_request'],
    ];
    for (const [what, name, body, code, errorCode] of cases) {
      const res = await admin<ErrorBody>(gw, 'POST', `/admin/versions/${name}/canary`, body);
      t.equal(res.status, code, what);
      t.equal(res.body.error.code, errorCode, what);
    }
    t.equal((await admin(gw, 'GET', '/admin/versions/good/canary')).status, 404, 'no canary yet');
    t.equal((await admin(gw, 'DELETE', '/admin/versions/good/canary')).status, 404, 'nothing to abort');
  });

  t.test('a canary with no traffic is neither promoted nor rolled back; 409 while it runs; abort', async (t) => {
    const started = await admin<CanaryStatus>(gw, 'POST', '/admin/versions/idle/canary', {
      steps: [20, 100],
      stepMs: 50,
      minRequests: 20,
    });
    t.equal(started.status, 202);
    t.match(started.body, { version: 'idle', baseline: 'base', state: 'running', step: 0, canaryPercent: 20 });
    t.same(
      await weights(),
      { base: 80, good: 0, bad: 0, slow: 0, hang: 0, idle: 20, quota: 0, lister: 0 },
      'only the pair changed, its sum kept',
    );
    // The judge has looked at the empty step (its reason says so): still running, no verdict.
    const c = await pollUntil(
      () => canaryOf(gw, 'idle'),
      (c) => /not yet/.test(c.reason),
      'the judge has looked at the empty step',
    );
    t.equal(c.state, 'running', 'too little data is "not yet", never a verdict');
    t.equal((await admin<ErrorBody>(gw, 'POST', '/admin/versions/idle/canary', {})).status, 409);
    t.equal(
      (await admin<ErrorBody>(gw, 'POST', '/admin/versions/good/canary', {})).body.error.code,
      'canary_in_progress',
      'its baseline is taken',
    );
    t.equal(
      (await admin<ErrorBody>(gw, 'PUT', '/admin/weights', { idle: 50 })).body.error.code,
      'canary_in_progress',
      'weights of the pair are the canary’s',
    );
    const listed = await admin<{ canaries: CanaryStatus[] }>(gw, 'GET', '/admin/canaries');
    t.same(
      listed.body.canaries.map((x) => x.version),
      ['idle'],
    );
    t.equal((await status(gw)).idle!['canary' as 'weight'] !== undefined, true, 'in /admin/status');
    const metrics = await scrape(gw);
    t.equal(metrics.sum('graygate_canary_percent', { version: 'idle' }), 20);
    t.equal(metrics.sum('graygate_canary_state', { version: 'idle', state: 'running' }), 1);
    // An SRE's dashboard and alerts: each criterion's latest verdict while it runs, and every end counted.
    for (const metric of ['error_rate', 'first_token_p99', 'response_time_p99', 'time_per_token_p99'])
      t.same(
        ['pass', 'not_yet', 'fail'].map((verdict) =>
          metrics.sum('graygate_canary_verdict', { version: 'idle', metric, verdict }),
        ),
        [0, 1, 0],
        `graygate_canary_verdict: ${metric} not yet`,
      );
    t.same(
      ['promoted', 'rolled_back', 'aborted'].map((state) =>
        metrics.text.includes(`graygate_canary_ended_total{version="idle",state="${state}"} 0`),
      ),
      [true, true, true],
      'none ended yet: each end state at 0 from the start (an increase() from a series born at 1 sees nothing)',
    );
    const aborted = await admin<CanaryStatus>(gw, 'DELETE', '/admin/versions/idle/canary');
    t.equal(aborted.body.state, 'aborted');
    const after = await scrape(gw);
    t.equal(after.sum('graygate_canary_state', { version: 'idle', state: 'aborted' }), 1, 'its end stays');
    t.equal(after.sum('graygate_canary_ended_total', { version: 'idle', state: 'aborted' }), 1, 'and is counted');
    t.notOk(after.text.includes('graygate_canary_verdict{'), 'no verdicts of an ended canary');
    t.notOk(after.text.includes('graygate_canary_percent{'), 'its share is no longer current: not shown');
    t.same(
      await weights(),
      { base: 100, good: 0, bad: 0, slow: 0, hang: 0, idle: 0, quota: 0, lister: 0 },
      'the canary’s weight went back to 0 at once',
    );
  });

  t.test('a canary failing 25 % of requests is rolled back; the baseline gets the whole weight', async (t) => {
    t.equal(
      (
        await admin(gw, 'POST', '/admin/versions/bad/canary', {
          steps: [10, 50, 100],
          stepMs: 200,
          minRequests: 40,
          criteria: { firstTokenP99: false, responseTimeP99: false },
        })
      ).status,
      202,
    );
    // A pipeline's gate (Argo Rollouts' `status`): waits for the verdict, exit 3 when not promoted.
    const waiting = runCli(t, ['canary', 'status', 'bad', '--wait', '--interval', '0.1', '--admin', gw.adminUrl]);
    const { final, load, seconds } = await runCanaryToEnd(gw, 'bad', { path: '/slow?ms=0' });
    t.equal(final.state, 'rolled_back', final.reason);
    t.match(final.reason, /error/);
    const waited = await waiting;
    t.equal(waited.code, 3, 'canary status --wait: not promoted');
    t.match(waited.stdout, /^canary bad \(baseline base\): rolled back at step/);
    t.match(waited.stderr, /^graygate: canary bad rolled back: step \d \(\d+ %\): roll back/);
    t.ok(
      final.decisions.some((d) => d.metric === 'error_rate' && d.verdict === 'fail'),
      'the error-rate test rejected',
    );
    t.same(await weights(), { base: 100, good: 0, bad: 0, slow: 0, hang: 0, idle: 0, quota: 0, lister: 0 });
    t.comment(
      `rolled back after ${seconds.toFixed(1)} s and ${load.requests} requests (${JSON.stringify(Object.fromEntries(load.byVersion))})`,
    );
  });

  t.test(
    "a canary whose upstream answers a third of its model calls 429 is rolled back: the version's fault",
    async (t) => {
      // A probe: an upstream's 401/404/429, passed through as 4xx, were left out as the request's fault, and a canary
      // whose quota was spent on a third of its calls was promoted with "0 errors".
      const body = {
        steps: [10, 50, 100],
        stepMs: 200,
        minRequests: 40,
        criteria: { firstTokenP99: false, responseTimeP99: false },
      };
      t.equal((await admin(gw, 'POST', '/admin/versions/quota/canary', body)).status, 202);
      const { final, load } = await runCanaryToEnd(gw, 'quota', { path: '/v1/chat/completions', method: 'POST' });
      t.equal(final.state, 'rolled_back', final.reason);
      t.ok(
        final.decisions.some((d) => d.metric === 'error_rate' && d.verdict === 'fail'),
        'the error-rate test rejected',
      );
      t.ok((load.byStatus.get(429) ?? 0) > 0, 'its clients got the 429s');
    },
  );

  t.test('reads of the model list do not dilute a canary whose every model call fails', async (t) => {
    // A probe: clients polling GET /v1/models (answered from the worker's cache) a hundred times a call let a canary
    // whose every call failed be promoted with "0.49 % errors". Here one call in ten, and a margin that 10 % errors
    // would pass: judged on what it was judged on before, this canary was promoted.
    const body = {
      steps: [50, 100],
      stepMs: 200,
      minRequests: 40,
      criteria: { firstTokenP99: false, responseTimeP99: false, errorRate: { marginAbs: 0.2 } },
    };
    t.equal((await admin(gw, 'POST', '/admin/versions/lister/canary', body)).status, 202);
    let final: CanaryStatus | undefined;
    const load = await drive(gw.url, {
      path: (i) => (i % 10 === 0 ? '/v1/chat/completions' : '/v1/models'),
      method: (i) => (i % 10 === 0 ? 'POST' : 'GET'),
      concurrency: 8,
      maxRequests: 6000,
      isDone: async () => {
        const c = await canaryOf(gw, 'lister');
        if (['promoted', 'rolled_back', 'aborted', 'held'].includes(c.state)) final = c;
        return final !== undefined;
      },
    });
    final ??= await canaryOf(gw, 'lister');
    t.equal(final.state, 'rolled_back', final.reason);
    t.match(final.reason, /error_rate: canary 100\.00 %/, 'judged on its model calls alone');
    t.ok((load.byStatus.get(500) ?? 0) > 0, 'its clients got the failures');
    t.same(await weights(), { base: 100, good: 0, bad: 0, slow: 0, hang: 0, idle: 0, quota: 0, lister: 0 });
  });

  t.test('a canary that leaves a third of its requests hanging is rolled back: the clients gave up', async (t) => {
    // Its clients time out, as SDKs do: each request they gave up on waited longer than the limit, the least its
    // answer would have taken (judged only on the requests it answered, it was promoted). Not as errors: one client
    // closing a few connections then rolled any canary back. A first step of 10 %: the judge has no bound on the
    // baseline's p99 before ~830 of its requests at the step (alpha 0.01, three criteria: latency-metric.ts), and the
    // canary's waits reject it within a few dozen of its own then; at 50 % the load sent ~1,700 requests, ~950 now.
    const body = { steps: [10, 100], stepMs: 200, minRequests: 40, criteria: { firstTokenP99: false } };
    t.equal((await admin(gw, 'POST', '/admin/versions/hang/canary', body)).status, 202);
    const { final, load, seconds } = await runCanaryToEnd(gw, 'hang', {
      path: '/slow?ms=0',
      concurrency: 16,
      maxRequests: 4000,
      timeoutMs: 250,
    });
    t.equal(final.state, 'rolled_back', final.reason);
    t.ok(
      final.decisions.some((d) => d.metric === 'response_time_p99' && d.verdict === 'fail'),
      'the response-time test rejected, on the waits',
    );
    t.ok((load.byStatus.get(0) ?? 0) > 0, 'clients gave up');
    t.same((await weights()).hang, 0);
    t.comment(`rolled back after ${seconds.toFixed(1)} s and ${load.requests} requests`);
  });

  t.test('a canary whose first token is 400 ms slower is rolled back on latency', async (t) => {
    // A first step of 10 %, as above: ~540 baseline streams before a bound on its p99 exists (alpha 0.1, two
    // criteria), then a few of the canary's reject it (~1,150 streams at 50 %, ~600 now).
    const body = {
      steps: [10, 100],
      stepMs: 200,
      minRequests: 40,
      alpha: 0.1,
      criteria: { errorRate: false, responseTimeP99: false },
    };
    t.equal((await admin(gw, 'POST', '/admin/versions/slow/canary', body)).status, 202);
    const { final, load, seconds } = await runCanaryToEnd(gw, 'slow', {
      path: '/sse?events=2&ms=1',
      concurrency: 48,
      maxRequests: 8000,
    });
    t.equal(final.state, 'rolled_back', final.reason);
    t.ok(
      final.decisions.some((d) => d.metric === 'first_token_p99' && d.verdict === 'fail'),
      'the first-token test rejected',
    );
    t.equal(load.streamErrors, 0);
    t.same((await weights()).slow, 0);
    t.comment(`rolled back after ${seconds.toFixed(1)} s and ${load.requests} requests`);
  });

  t.test('an equal canary is promoted through every step with zero failed client requests', async (t) => {
    const body = {
      steps: [10, 50, 100],
      stepMs: 300,
      minRequests: 40,
      criteria: { firstTokenP99: false, responseTimeP99: false },
    };
    t.equal((await admin(gw, 'POST', '/admin/versions/good/canary', body)).status, 202);
    const waiting = runCli(t, ['canary', 'status', 'good', '--wait', '--json', '--admin', gw.adminUrl]);
    const { final, load, seconds } = await runCanaryToEnd(gw, 'good', { path: '/slow?ms=0' });
    t.equal(final.state, 'promoted', final.reason);
    const waited = await waiting;
    t.same([waited.code, waited.stderr], [0, ''], 'canary status --wait: promoted');
    t.equal((JSON.parse(waited.stdout) as CanaryStatus).state, 'promoted');
    t.same([...load.byStatus.keys()], [200], 'every client request succeeded');
    t.same(new Set(final.decisions.map((d) => d.step)), new Set([0, 1, 2]), 'judged at every step');
    t.same(
      await weights(),
      { base: 0, good: 100, bad: 0, slow: 0, hang: 0, idle: 0, quota: 0, lister: 0 },
      'the canary has the whole weight',
    );
    t.comment(`promoted after ${seconds.toFixed(1)} s and ${load.requests} requests`);
  });

  t.test('the CLI starts, explains and aborts a canary; graygate status shows it', async (t) => {
    const admin = ['--admin', gw.adminUrl];
    const started = await runCli(t, [
      'canary',
      'idle',
      '--baseline',
      'good',
      '--steps',
      '25,100',
      '--step',
      '30s',
      '--min-requests',
      '50',
      '--no-response-time',
      '--no-time-per-token',
      '--latency-margin',
      '25ms',
      '--max-error-rate',
      '5%',
      ...admin,
    ]);
    t.equal(started.code, 0, started.stderr);
    t.match(started.stdout, /canary idle \(baseline good\): running at step 1\/2 \(25 %\)/);
    const status = await runCli(t, ['status', ...admin]);
    t.match(status.stdout, /canary idle \(baseline good\): running, step 1\/2, 25 %/);
    const explained = await runCli(t, ['canary', 'status', 'idle', ...admin]);
    t.match(explained.stdout, /at least 30 s and 50 canary requests each/);
    t.match(explained.stdout, /why: /);
    // The flags' path, flag → body → status → CLI: what it judges by is in the answer and on the screen.
    t.match(
      explained.stdout,
      /judged by: error rate ≤ 1\.2 × baseline \+ 1 %, first token p99 ≤ 1\.2 × baseline \+ 25 ms, response time p99 off, time per token p99 off, error rate ≤ 5 % whatever the baseline's; alpha 0\.01; no verdict in \d+ s: hold/,
    );
    const json = await runCli(t, ['canary', 'status', 'idle', '--json', ...admin]);
    const parsed = JSON.parse(json.stdout) as CanaryStatus;
    t.equal(parsed.state, 'running');
    t.equal(parsed.onInconclusive, 'hold');
    t.same(parsed.criteria, {
      errorRate: { maxRatio: 1.2, marginAbs: 0.01 },
      firstTokenP99: { maxRatio: 1.2, marginMs: 25 },
      responseTimeP99: false,
      timePerTokenP99: false,
      maxErrorRate: 0.05,
    });
    const bad = await runCli(t, ['canary', 'idle', '--step', 'soon', ...admin]);
    t.equal(bad.code, 64, 'a malformed duration is a usage error');
    for (const flags of [
      ['--alpha', 'abc'],
      ['--steps', ''],
      ['--max-error-rate', '0.05'],
      ['--max-error-rate', '5'],
      ['--time-per-token-margin', '2'],
    ])
      t.equal((await runCli(t, ['canary', 'idle', ...flags, ...admin])).code, 64, `${flags.join(' ')}: a usage error`);
    for (const args of [
      ['canary', 'status', '--wait'],
      ['status', '--wait'],
      ['canary', 'abort', 'idle', '--wait'],
    ])
      t.equal((await runCli(t, [...args, ...admin])).code, 64, `${args.join(' ')}: --wait is for canary status NAME`);
    const again = await runCli(t, ['canary', 'idle', ...admin]);
    t.equal(again.code, 1);
    t.match(again.stderr, /409 canary_in_progress/);
    const aborted = await runCli(t, ['canary', 'abort', 'idle', ...admin]);
    t.equal(aborted.code, 0);
    t.match(aborted.stdout, /aborted/);
    t.same((await weights()).idle, 0);

    // Promoted by hand (Argo Rollouts' `promote --full`): from its first step, before any verdict.
    t.equal(
      (await runCli(t, ['canary', 'idle', '--baseline', 'good', '--steps', '25,100', '--step', '30s', ...admin])).code,
      0,
    );
    const promoted = await runCli(t, ['canary', 'promote', 'idle', ...admin]);
    t.equal(promoted.code, 0, promoted.stderr);
    t.match(
      promoted.stdout,
      /canary idle \(baseline good\): promoted at step 1\/2 \(25 %\), it left the canary at 100 % of the pair/,
    );
    t.match(
      promoted.stdout,
      /why: promoted by hand \(POST \/admin\/versions\/idle\/canary\/promote\) at step 1 \(25 %\)/,
    );
    t.same(
      await weights(),
      { base: 0, good: 0, bad: 0, slow: 0, hang: 0, idle: 100, quota: 0, lister: 0 },
      'the canary has the pair’s sum',
    );
    const afterPromotion = await scrape(gw);
    t.equal(afterPromotion.sum('graygate_canary_state', { version: 'idle', state: 'promoted' }), 1);
    t.same(
      ['promoted', 'aborted', 'rolled_back'].map((state) =>
        afterPromotion.sum('graygate_canary_ended_total', { version: 'idle', state }),
      ),
      [1, 2, 0],
      'graygate_canary_ended_total: this promotion, and the aborts before (the API’s and the CLI’s)',
    );
    const twice = await adminApi<{ error: { code: string } }>(gw, 'POST', '/admin/versions/idle/canary/promote');
    t.equal(twice.status, 404, 'an ended canary cannot be promoted');
    t.equal(twice.body.error.code, 'not_found');
    t.equal((await adminApi(gw, 'POST', '/admin/versions/nope/canary/promote')).status, 404, 'nor an unknown version');
    t.equal((await adminApi(gw, 'GET', '/admin/versions/idle/canary/promote')).status, 405);
    t.equal(
      (await adminApi(gw, 'PUT', '/admin/weights', { good: 100, idle: 0 })).status,
      200,
      'weights are free again',
    );
  });

  t.test('a reload aborts a running canary and the file’s weights apply', async (t) => {
    t.equal(
      (await admin(gw, 'POST', '/admin/versions/idle/canary', { baseline: 'good', steps: [30, 100], stepMs: 60_000 }))
        .status,
      202,
    );
    t.same((await weights()).idle, 30);
    const reloaded = await admin<{ applied: string[] }>(gw, 'POST', '/admin/reload');
    t.equal(reloaded.status, 200);
    // The abort moves the pair's weights first: with the file unchanged, the answer said "nothing changed".
    t.equal(reloaded.body.applied[0], 'aborted the canary of idle (baseline good)', 'the answer says so');
    const c = await canaryOf(gw, 'idle');
    t.equal(c.state, 'aborted');
    t.match(c.reason, /reloaded/);
    t.same(
      await weights(),
      { base: 100, good: 0, bad: 0, slow: 0, hang: 0, idle: 0, quota: 0, lister: 0 },
      'the file’s weights',
    );
  });

  t.test(
    'what a client sends does not decide a canary: give-ups, pinned and refused requests, a slow body',
    async (t) => {
      // A probe as an attacker: closing seven connections rolled any canary back within a second (they were its
      // errors), requests pinned to it or refused for their own fault counted as its requests, and a body sent slowly
      // counted as its latency.
      const plan = { baseline: 'base', steps: [50, 100], stepMs: 600_000, minRequests: 100_000 };
      t.equal((await admin(gw, 'POST', '/admin/versions/good/canary', plan)).status, 202);
      const users: string[] = [];
      for (let i = 0; users.length < 4 && i < 200; i++) {
        const res = await httpRequest(`${gw.url}/slow?ms=0`, { headers: { 'x-user-id': `probe-${i}` } });
        if (res.headers['x-graygate-version'] === 'good') users.push(`probe-${i}`);
      }
      t.equal(users.length, 4, 'four users the weights send to the canary (each answered: 4 canary requests)');
      // 24 clients that give up once the master holds their requests, half of them pinned with ?version=. (Not
      // after a fixed 50 ms: on a busy box some were given up before the master had read them, and were not its.)
      const giveUp = new AbortController();
      const gaveUp = Array.from({ length: 24 }, (_, i) =>
        fetch(`${gw.url}/slow?ms=60000${i % 2 === 0 ? '&version=good' : ''}`, {
          headers: { 'x-user-id': users[i % 4]! },
          signal: giveUp.signal,
        }).catch(() => undefined),
      );
      await waitForStatus(
        gw,
        (v) => v.good!.queued + v.good!.workers.reduce((n, w) => n + w.inflight, 0) === 24,
        'the 24 requests held by the master',
      );
      giveUp.abort();
      await Promise.all(gaveUp);
      await scrapeUntil(
        gw,
        (s) => s.sum('graygate_request_errors_total', { version: 'good', kind: 'abandoned' }) >= 24,
        'the master saw the 24 clients leave',
      );
      for (const user of users) {
        const head = `POST /echo HTTP/1.1\r\nHost: gw\r\nx-user-id: ${user}\r\nContent-Length: 99999999999\r\n\r\n`;
        t.equal((await rawRequest(gw.url, head, 'POST')).status, 413, 'refused for its own fault');
      }
      // Four bodies sent with a pause of 1.5 s (the clients'): the version answers each at once. Each head asks for
      // `100 Continue`, which the master sends once it has the head and reads the body: from then until the body's
      // last byte (`heldMs`, measured here), the master had the request and not its body.
      const slow = await Promise.all(users.map(() => openRaw(gw.url, ['POST'])));
      t.teardown(() => slow.forEach((conn) => conn.socket.destroy()));
      slow.forEach((conn, i) =>
        conn.write(
          `POST /echo HTTP/1.1\r\nHost: gw\r\nx-user-id: ${users[i]!}\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n`,
        ),
      );
      await Promise.all(slow.map((conn) => interim(conn, 100)));
      const headsHeldAt = performance.now();
      for (const conn of slow) conn.write('{');
      await new Promise((resolve) => setTimeout(resolve, 1500));
      const heldMs = performance.now() - headsHeldAt;
      for (const conn of slow) conn.write('}');
      for (const conn of slow) t.equal((await conn.waitFor(1))[0]!.status, 200);
      let c = await canaryOf(gw, 'good');
      const judged = (metric: string) => c.decisions.filter((d) => d.metric === metric).at(-1);
      // Until a tick has judged all 8 (bounded: a count that never gets there fails below, with the decision).
      for (let i = 0; i < 1000 && (judged('error_rate')?.canary.n ?? 0) < 8; i++) {
        await pollPause();
        c = await canaryOf(gw, 'good');
      }
      t.equal(c.state, 'running', c.reason);
      t.same(
        judged('error_rate')!.canary,
        { n: 8, value: 0 },
        'the 4 probes and the 4 slow bodies: no give-up, pin or 413',
      );
      // Its p99 (of 8: the 7th) is a slow body's. Timed from the head, each slow body's time would be more than
      // heldMs (the master had its head before heldMs began, and answered after it ended); timed from the end of
      // the body, it is the echo's own time. Compared with heldMs, not with a fixed bound: no speed of the box is
      // assumed beyond the echo of 2 bytes taking less than the 1.5 s the bodies were held.
      const p99 = judged('response_time_p99')!.canary.value!;
      t.ok(Number.isFinite(p99) && p99 >= 0, `response_time_p99 measured: ${p99} ms`);
      t.ok(p99 < heldMs, `timed from the end of the body, not the head (${p99} < ${heldMs.toFixed(0)} ms held)`);
      t.equal((await admin(gw, 'DELETE', '/admin/versions/good/canary')).status, 200);
    },
  );
});
