import t from 'tap';
import { formatStatus, type StatusBody } from '../../../scripts/cli/format.js';

// `graygate status`'s canary lines (SPEC §11): a running one with its share, an ended one with its end (its share is
// history), and a version's last canary as a baseline shown beside a newer canary of the same canary version.

type Canary = NonNullable<StatusBody['versions'][string]['canary']>;

const canary = (over: Partial<Canary>): Canary => ({
  version: 'c',
  baseline: 'b',
  state: 'running',
  canaryPercent: 25,
  step: 0,
  steps: [25, 100],
  startedAt: '2026-12-06T00:00:00.000Z',
  endedAt: null,
  ...over,
});

const version = (c: Canary | undefined): StatusBody['versions'][string] => ({
  weight: 1,
  queued: 0,
  entry: 'dist/worker/main.js',
  upstream: { format: 'openai', url: 'mock:' },
  workers: [],
  lastDeploy: null,
  ...(c === undefined ? {} : { canary: c }),
});

t.test('running, ended, and two canaries of one version', async (t) => {
  const running = canary({});
  t.match(
    formatStatus({ versions: { b: version(running), c: version(running) } }),
    /\n\ncanary c \(baseline b\): running, step 1\/2, 25 % — graygate canary status c$/,
  );
  const ended = canary({ state: 'rolled_back', canaryPercent: 0, endedAt: '2026-12-06T00:01:00.000Z' });
  const text = formatStatus({ versions: { b: version(ended), c: version(ended) } });
  t.match(
    text,
    /\n\nlast canary c \(baseline b\): rolled back at 2026-12-06T00:01:00.000Z — graygate canary status c$/,
  );
  t.notMatch(text, / % /, 'no share for an ended canary');
  const newer = canary({ baseline: 'd', startedAt: '2026-12-06T00:02:00.000Z' });
  const both = formatStatus({ versions: { b: version(ended), c: version(newer), d: version(newer) } });
  t.match(both, /last canary c \(baseline b\): rolled back/, "b's last canary");
  t.match(both, /canary c \(baseline d\): running/, "c's running one");
});

t.test(
  'the main port’s connections: a per-client bound’s refusals once there are any, and an older master’s',
  async (t) => {
    const connections = { open: 3, max: 6, pastBound: 0, dropped: 0, closedIdle: 1 };
    const line = (body: StatusBody): string => formatStatus(body).split('\n').at(-1)!;
    t.equal(
      line({ versions: {}, clientConnections: { ...connections, refusedPerAddress: 40 } }),
      'client connections: 3 open (bound 6), 1 idle closed for new ones, 0 accepted past it (503), 0 closed as accepted, ' +
        '40 closed as accepted past the bound per client',
    );
    t.equal(
      line({ versions: {}, clientConnections: { ...connections, refusedPerAddress: 0 } }),
      'client connections: 3 open (bound 6), 1 idle closed for new ones, 0 accepted past it (503), 0 closed as accepted',
    );
    t.equal(
      line({ versions: {}, clientConnections: { open: 3, max: null, pastBound: 0, dropped: 0 } }),
      'client connections: 3 open (bound none), 0 accepted past it (503), 0 closed as accepted',
      'a master before closedIdle and refusedPerAddress',
    );
  },
);

t.test('a removed version whose workers still finish: a line under the table', async (t) => {
  const text = formatStatus({
    versions: {},
    removing: { v2: { workers: [{ pid: 7, instance: 0, state: 'draining', restarts: 0, inflight: 2 }] } },
  });
  t.match(text, /\n\nremoved v2, finishing: pid 7 draining \(2 in flight\)$/);
});
