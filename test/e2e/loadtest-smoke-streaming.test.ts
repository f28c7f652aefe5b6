import t from 'tap';
import { RUN_BOUND_MS, SSE_RUN_BOUND_MS, smoke } from '../helpers/loadtest-smoke.js';

// Smoke runs of the streaming load-test scenarios and swap (test/helpers/loadtest-smoke.ts).
// Scenario runs one after another, each up to its bound on a busy box: more than tap's 120 s per file.
export const TIMEOUT_MS = 5 * RUN_BOUND_MS; // test/helpers/e2e-lane.ts reads it
t.setTimeout(TIMEOUT_MS);

t.test('swap', async (t) => {
  const report = await smoke(t, 'swap', ['--duration', '2', '--connections', '5']);
  t.equal((report.results as { operations: unknown[] }).operations.length, 3, 'two deploys and a rollback ran');
});

t.test('compare --sse: streaming workloads and GET /v1/models on every path', async (t) => {
  // direct-streams: graygate with limits.directStreams (issue 10), as its benchmark runs it; rawbody and rawlean: the
  // raw-body prototype hop (BENCHMARKS), whose relay must stay correct for its figures to mean anything; mux: the
  // multiplexed master↔worker hop prototype (its frames, demultiplexing and per-turn batching), and node2 its control.
  // nginx's column is the plain compare's to smoke-test; here it would only add two more processes.
  const report = await smoke(
    t,
    'compare',
    [
      '--sse',
      '--duration',
      '1',
      '--rounds',
      '1',
      '--streams',
      '10',
      '--tokens',
      '5',
      '--connections',
      '5',
      '--workloads',
      'loaded,small',
      '--paths',
      'direct,node,rawbody,rawlean,mux,node2,graygate,direct-streams',
    ],
    SSE_RUN_BOUND_MS,
  );
  const results = report.results as {
    loaded: Array<{ key: string; streams: number; failed: number }>;
    small: Array<{ target: { kind: string }; frontCpuUsPerRequest: number }>;
  };
  const keys = results.loaded.map((a) => a.key);
  t.same(
    keys,
    ['direct', 'node', 'rawbody', 'rawlean', 'mux', 'node2', 'graygate', 'direct-streams'],
    'direct, the node proxy, the raw-body prototype both ways, the mux prototype, two chained node proxies, graygate ' +
      'and graygate with limits.directStreams ran',
  );
  for (const a of results.loaded) {
    t.ok(a.streams > 0, `${a.key}: streams measured`);
    t.equal(a.failed, 0, `${a.key}: no stream failed`);
  }
  t.ok(
    ['graygate', 'node'].every((kind) => results.small.some((s) => s.target.kind === kind)),
    'small requests through graygate and the node proxy',
  );
  for (const s of results.small.filter((s) => s.target.kind === 'graygate' || s.target.kind === 'node'))
    t.ok(s.frontCpuUsPerRequest > 0, `${s.target.kind}: its front process's CPU a request reported`);
});

t.test('streams --hold --direct-streams: ramps, holds, reports first tokens and RSS', async (t) => {
  // --direct-streams (limits.directStreams, each stream after a GET on its own kept-alive connection) runs the whole
  // hold scenario and its own branch (worker affinity with two workers is hop-direct.test.ts's).
  const report = await smoke(t, 'streams', [
    '--hold',
    '--direct-streams',
    '--streams',
    '20',
    '--workers',
    '1',
    '--ramp-s',
    '1',
    '--hold-s',
    '3',
    '--token-interval-ms',
    '500',
  ]);
  const results = report.results as {
    atHoldEnd: { opened: number; firstTokens: number; errors: number };
    idleMb: { master: number };
  };
  t.same(
    results.atHoldEnd,
    { opened: 20, firstTokens: 20, errors: 0 },
    'every stream opened, got its first token, no error',
  );
  t.ok(results.idleMb.master > 0, 'the idle footprint was measured');
  t.match(report.notes.join('\n'), /20 answered 200, 0 did not/, 'every connection asked GET /v1/models first');
});
