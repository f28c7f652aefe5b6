import t, { type Test } from 'tap';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { Writable } from 'node:stream';
import { performance } from 'node:perf_hooks';
import { createRequestEnd, type OutcomeSink } from '../../master/request-end.js';
import { RequestContext, type RequestPhase } from '../../master/request-context.js';
import { createMasterMetrics } from '../../master/metrics.js';
import { ByteBudget } from '../../shared/byte-budget.js';
import { createLogger } from '../../shared/log.js';
import { GraygateError, type ErrorCode } from '../../shared/errors.js';

// SPEC §11 and an attacker probe: which refusals of a routed request the canary judges. A refusal of the version's own
// admission (its queue full, no ready worker) is the version's; one before the request was admitted (its head or
// body refused) never reached it. The body budget is the master's, every version's: its 503 counted for the version
// a request's x-user-id chose, so one slow upload pinned to any version (not judged) made each cheap request of a
// client's chosen keys an error of the canary.

interface Recorded {
  version: string;
  isError: boolean;
}

/**
 * A real server on loopback whose one request is refused with `code` in `phase`, after routing to `v2` (past the
 * shutdown deadline when `isCutting`): what the canary recorded, and the version's error counts and time-to-headers
 * count as /metrics shows them.
 */
async function refusedOutcome(
  t: Test,
  phase: RequestPhase,
  code: ErrorCode,
  isCutting = false,
): Promise<{ recorded: Recorded[]; metricLines: string }> {
  const recorded: Recorded[] = [];
  const metrics = createMasterMetrics({ versions: () => undefined });
  const outcomes: OutcomeSink = {
    record: (version, isError) => void recorded.push({ version, isError }),
    recordWait: () => {},
  };
  const ended = new Promise<void>((resolve) => {
    const end = createRequestEnd({
      log: createLogger({
        role: 'master',
        level: 'silent',
        destination: new Writable({ write: (_c, _e, cb) => cb() }),
      }),
      metrics,
      budget: new ByteBudget(1024),
      isClosing: () => isCutting,
      isCutting: () => isCutting,
      now: () => performance.now(),
      outcomes,
      done: resolve,
    });
    const server = createServer((req: IncomingMessage, res: ServerResponse) => {
      const ctx = new RequestContext(req, res, performance.now());
      res.once('close', () => end.finish(ctx));
      ctx.version = 'v2'; // routed by the weights (not pinned) at its head
      ctx.phase = phase;
      end.refuse(ctx, new GraygateError(code));
    });
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as AddressInfo;
      request({ host: '127.0.0.1', port, path: '/v1/chat/completions', method: 'GET' }, (res) => res.resume()).end();
    });
    t.teardown(() => server.close());
  });
  await ended;
  const metricLines = (await metrics.registry.metrics())
    .split('\n')
    .filter((line) => /^graygate_request_(errors_total|duration_seconds_count)\{/.test(line))
    .join('\n');
  return { recorded, metricLines };
}

t.test('a refusal before the request was admitted for its version is not judged: body_budget', async (t) => {
  t.same((await refusedOutcome(t, 'body', 'body_budget')).recorded, [], "the master's body budget: no outcome of v2");
  t.same((await refusedOutcome(t, 'head', 'body_too_large')).recorded, [], 'a 413 at the head: none either');
});

t.test("a refusal of the version's admission is its error", async (t) => {
  t.same((await refusedOutcome(t, 'queue', 'queue_full')).recorded, [{ version: 'v2', isError: true }]);
  t.same((await refusedOutcome(t, 'queue', 'no_ready_worker')).recorded, [{ version: 'v2', isError: true }]);
});

t.test("past the shutdown deadline the master's refusal is neither the version's error nor judged", async (t) => {
  // A request still waiting for its answer at the deadline is answered 503 shutting_down (it was reset): the
  // shutdown's, as a stream it cut is (its log line and metrics, SPEC §10).
  const cut = await refusedOutcome(t, 'worker', 'shutting_down', true);
  t.same(cut.recorded, [], 'no outcome for the canary');
  t.match(
    cut.metricLines,
    /graygate_request_errors_total\{version="v2",kind="5xx"\} 0/,
    'no error of v2 in the metrics',
  );
  t.notMatch(cut.metricLines, /\} [1-9]/, "of any kind, nor its time to headers (the deadline's)");
  const before = await refusedOutcome(t, 'worker', 'worker_error');
  t.match(
    before.metricLines,
    /graygate_request_errors_total\{version="v2",kind="5xx"\} 1/,
    'as a worker_error before it is',
  );
  t.match(before.metricLines, /graygate_request_duration_seconds_count\{version="v2"\} 1/, 'and its time');
});

t.test('past the shutdown deadline a refusal says shutting_down, and a bug is still logged as one', async (t) => {
  // A request the deadline cut was logged (and answered) as its worker's failure; the rewrite to `shutting_down` must
  // not hide an unexpected error, which is logged whatever the client is told.
  const lines: string[] = [];
  const end = createRequestEnd({
    log: createLogger({
      role: 'master',
      level: 'info',
      destination: new Writable({ write: (c: Buffer, _e, cb) => void (lines.push(c.toString()), cb()) }),
    }),
    metrics: createMasterMetrics({ versions: () => undefined }),
    budget: new ByteBudget(1024),
    isClosing: () => true,
    isCutting: () => true,
    now: () => performance.now(),
    outcomes: undefined,
    done: () => undefined,
  });
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const ctx = new RequestContext(req, res, performance.now());
    ctx.phase = 'worker';
    end.refuse(ctx, new Error('a bug'));
  });
  server.listen(0, '127.0.0.1');
  t.teardown(() => server.close());
  await new Promise((resolve) => server.once('listening', resolve));
  const { port } = server.address() as AddressInfo;
  const answer = await new Promise<{ status: number; body: string }>((resolve, reject) => {
    request({ host: '127.0.0.1', port, path: '/v1/models' }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
    })
      .on('error', reject)
      .end();
  });
  t.equal(answer.status, 503);
  t.match(answer.body, /"code":"shutting_down"/);
  t.match(lines.join(''), /"msg":"unexpected error in the request path"/, 'the bug logged');
});
