import t from 'tap';
import { once } from 'node:events';
import { readFileSync } from 'node:fs';
import { Writable } from 'node:stream';
import { request } from 'node:http';
import { fork as nodeFork, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { forkLaunch } from '../helpers/child-env.js';
import { ROOT } from '../helpers/gateway.js';
import { WorkerHandle, type ForkFunction } from '../../master/worker-handle.js';
import { holdOpen } from '../../master/worker-direct.js';
import type { ExitReport } from '../../master/worker-process.js';
import { StartLimiter } from '../../master/start-limiter.js';
import { createLogger } from '../../shared/log.js';
import { PROTOCOL_VERSION } from '../../shared/ipc.js';
import { validateConfig } from '../../shared/config.js';
import { fakeFork, killAll, FAKE_WORKER_ENTRY, type FakeFork } from '../helpers/fake-fork.js';

// The worker handle (issue 11 part 4): the ready handshake, start failures as
// data, intended vs crashed exits, kill escalation, health probes — against
// real child processes forked through the injected fork.

const log = createLogger({ role: 'master', level: 'silent' });
const parsed = validateConfig({ versions: { v1: { weight: 1 } } });
if (!parsed.ok) throw new Error(parsed.problems.join('\n'));
const upstream = parsed.value.versions['v1']!.upstream;
/** A worker's settings as these tests' master passes them. */
const SETTINGS = {
  protocol: PROTOCOL_VERSION,
  version: 'v1',
  instance: 0,
  upstream,
  limits: { maxBodyBytes: 1000, shutdownTimeoutMs: 1000 },
  logLevel: 'silent',
};

function handle(
  t: { teardown(fn: () => unknown): void },
  fake: FakeFork,
  extra: Partial<ConstructorParameters<typeof WorkerHandle>[0]> = {},
): WorkerHandle {
  t.teardown(() => killAll(fake));
  return new WorkerHandle({
    entry: FAKE_WORKER_ENTRY,
    env: {},
    settings: SETTINGS,
    readyTimeoutMs: 10_000,
    maxSockets: 4,
    maxIdleSockets: 1,
    log,
    redactEnv: [],
    startLimiter: new StartLimiter(2),
    fork: fake.fork,
    ...extra,
  });
}

function get(w: WorkerHandle, path: string): Promise<number> {
  return new Promise((resolve) => {
    const req = request(w.requestOptions(path), (res) => {
      res.resume();
      resolve(res.statusCode ?? 0);
    });
    req.on('error', () => resolve(0));
    req.end();
  });
}

t.test('ready handshake, then an intended stop', async (t) => {
  const fake = fakeFork('ready');
  const w = handle(t, fake);
  t.equal(w.state, 'starting');
  await w.start();
  t.equal(w.state, 'ready');
  t.ok(w.isAccepting);
  t.equal(w.pid, fake.children[0]!.pid);
  t.equal(await get(w, '/'), 200, 'reachable at the address it reported');
  // A handle is one process for its life (direct-connections.ts keys a connection's holders on it): no second fork.
  await t.rejects(w.start(), /start\(\) called twice/);
  t.equal(fake.children.length, 1, 'nothing forked again');
  t.equal(w.state, 'ready', 'the running process goes on');
  const exit = once(w, 'exit') as Promise<[ExitReport]>;
  await w.stop(1000);
  const [report] = await exit;
  t.equal(report.isIntended, true);
  t.equal(report.code, 0);
  t.equal(w.state, 'stopped');
});

t.test('start failures are reported as data', async (t) => {
  const crash = handle(t, fakeFork('crash'));
  await t.rejects(crash.start(), {
    name: 'WorkerStartFailure',
    report: { code: 3, isIntended: false, reason: 'exited with code 3' },
  });
  t.match(crash.exitReport?.stderrTail, ['fake-worker: crash at start as asked'], 'last stderr lines');
  const silent = handle(t, fakeFork('silent'), { readyTimeoutMs: 200 });
  await t.rejects(silent.start(), {
    name: 'WorkerStartFailure',
    report: { reason: 'not ready within 200 ms', signal: 'SIGKILL' },
  });
  const old = handle(t, fakeFork('old-protocol'));
  await t.rejects(old.start(), {
    name: 'WorkerStartFailure',
    report: { reason: `worker speaks protocol 1, master ${PROTOCOL_VERSION}` },
  });
  // A ready without an address threw in the master's IPC listener and ended the master.
  const noAddress = handle(t, fakeFork('no-address'));
  await t.rejects(noAddress.start(), {
    name: 'WorkerStartFailure',
    report: { reason: /^its ready message is malformed/, signal: 'SIGKILL' },
  });
  // Nor does one whose protocol no message can be made of (String() of it threw, outside any catch: a review's repro).
  const objectProtocol = handle(t, fakeFork('object-protocol'));
  await t.rejects(objectProtocol.start(), {
    name: 'WorkerStartFailure',
    report: { reason: /^its ready message is malformed/ },
  });
});

t.test('a pong the master cannot read is no answer: its fields never reach the health view', async (t) => {
  // A string rssBytes was kept as sent, and prom-client's Gauge.set threw on it at every later /metrics scrape.
  const w = handle(t, fakeFork('bad-pong'));
  await w.start();
  t.equal(w.probe(0), 0, 'the first probe is sent');
  // IPC keeps order: with the answer to a later request in, the pong is in too.
  t.same(await w.requestMetrics(10_000), [], 'the worker answered');
  t.equal(w.health.rssBytes, 0, 'no rssBytes taken from it');
  t.equal(w.probe(1), 1, 'and the probe is still unanswered: a miss');
});

t.test('a crash is not intended; the handle says crashed', async (t) => {
  const w = handle(t, fakeFork('crash-later'));
  await w.start();
  const exit = once(w, 'exit') as Promise<[ExitReport]>;
  await get(w, '/crash');
  const [report] = await exit;
  t.equal(report.isIntended, false);
  t.equal(report.code, 1);
  t.equal(w.state, 'crashed');
});

t.test('kill escalation: a worker ignoring shutdown and SIGTERM is SIGKILLed', async (t) => {
  const w = handle(t, fakeFork('stubborn'), { killGraceMs: 50 });
  await w.start();
  const exit = once(w, 'exit') as Promise<[ExitReport]>;
  await w.stop(50);
  const [report] = await exit;
  t.equal(report.signal, 'SIGKILL');
  t.equal(report.isIntended, true, 'asked for, so not a crash');
});

t.test('a stop before the fork happens: the worker never starts', async (t) => {
  const limiter = new StartLimiter(1);
  const release = await limiter.acquire();
  const fake = fakeFork('ready');
  const w = handle(t, fake, { startLimiter: limiter });
  const starting = w.start();
  await w.stop(100);
  release();
  await t.rejects(starting, { name: 'WorkerStartFailure', report: { reason: 'stopped before it started' } });
  t.equal(fake.children.length, 0, 'nothing was forked');
});

t.test('redacted variables never reach the worker', async (t) => {
  process.env['FAKE_SECRET_TOKEN'] = 'sssh-9d1';
  t.teardown(() => delete process.env['FAKE_SECRET_TOKEN']);
  const w = handle(t, fakeFork('ready'), { redactEnv: ['FAKE_SECRET_TOKEN'], env: { FAKE_SECRET_TOKEN: 'also-this' } });
  await w.start();
  const environ = readFileSync(`/proc/${w.pid}/environ`, 'utf8');
  t.notOk(environ.includes('sssh-9d1'));
  t.notOk(environ.includes('FAKE_SECRET_TOKEN'));
  await w.stop(1000);
});

t.test('health probes: answered ones reset the count; a stopped worker misses them and is killed', async (t) => {
  const fake = fakeFork('ready');
  const w = handle(t, fake);
  await w.start();
  t.equal(w.probe(0), 0, 'first probe, nothing missed');
  while (w.health.rssBytes === 0) await once(fake.children[0]!, 'message');
  t.ok(w.health.rssBytes > 0, 'the answer carries the RSS');
  // A late answer (to a probe already counted as missed) still shows the worker is alive.
  const missesAtPongs: number[] = [];
  const allAnswered = new Promise<void>((resolve) => {
    const onMessage = (msg: { type?: string }): void => {
      if (msg.type !== 'pong') return;
      missesAtPongs.push(w.health.misses); // the handle's own listener ran first
      if (missesAtPongs.length < 3) return;
      fake.children[0]!.off('message', onMessage);
      resolve();
    };
    fake.children[0]!.on('message', onMessage);
  });
  w.probe(0);
  t.equal(w.probe(0), 1, 'the probe before is unanswered yet');
  t.equal(w.probe(0), 2);
  await allAnswered;
  t.same(missesAtPongs, [0, 0, 0], 'an answer to an older probe resets the count');
  process.kill(w.pid!, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(w.pid!, 'SIGCONT');
    } catch {
      // gone
    }
  });
  w.probe(1);
  t.equal(w.probe(2), 1);
  t.equal(w.probe(3), 2);
  const exit = once(w, 'exit') as Promise<[ExitReport]>;
  w.markUnhealthy('missed probes');
  t.equal(w.state, 'unhealthy');
  t.notOk(w.isAccepting, 'out of routing at once');
  const [report] = await exit;
  t.equal(report.signal, 'SIGKILL');
  t.equal(report.isIntended, false, 'a crash: the registry restarts it');
  t.equal(w.state, 'crashed');
});

t.test(
  'a probe or metrics request to a worker whose channel just broke logs no error (its exit says why)',
  async (t) => {
    const fake = fakeFork('ready');
    const lines: string[] = [];
    const sink = new Writable({
      write(chunk: Buffer, _enc, cb) {
        lines.push(chunk.toString('utf8'));
        cb();
      },
    });
    const w = handle(t, fake, { log: createLogger({ role: 'master', level: 'info', destination: sink }) });
    await w.start();
    // As node's send does on a channel whose peer died before its disconnect was read: EPIPE to the callback if there
    // is one, else an 'error' event on the child.
    const child = fake.children[0]!;
    const epipe = Object.assign(new Error('write EPIPE'), { code: 'EPIPE' });
    child.send = (...args: unknown[]) => {
      const callback = args.findLast((a) => typeof a === 'function') as ((err: Error) => void) | undefined;
      if (callback !== undefined) setImmediate(callback, epipe);
      else setImmediate(() => child.emit('error', epipe));
      return false;
    };
    w.probe(0);
    t.equal(await w.requestMetrics(50), undefined, 'no answer');
    await new Promise((resolve) => setImmediate(resolve));
    t.same(
      lines.filter((l) => l.includes('worker process error')),
      [],
    );
  },
);

t.test('afterSignOfLife: called once the worker answers a ping sent then, or once it is gone', async (t) => {
  const fake = fakeFork('ready');
  const w = handle(t, fake);
  await w.start();
  await new Promise<void>((resolve) => w.afterSignOfLife(resolve));
  t.pass('a live worker answers');
  process.kill(w.pid!, 'SIGSTOP');
  t.teardown(() => {
    try {
      process.kill(w.pid!, 'SIGCONT');
    } catch {
      // gone
    }
  });
  let calls = 0;
  w.afterSignOfLife(() => calls++);
  // Its answer would come only once its loop runs again: none while it is stopped; its exit instead.
  const exit = once(w, 'exit');
  w.markUnhealthy('missed probes');
  await exit;
  t.equal(calls, 1, 'called at its exit');
  w.afterSignOfLife(() => calls++);
  t.equal(calls, 2, 'and at once once it is gone');
});

t.test(
  'afterSignOfLife on a worker that closed its channel and lives on: it is killed, its exit calls back',
  async (t) => {
    // A review: such a build is never probed, so the slot would have waited for an exit that never came.
    const fake = fakeFork('disconnects');
    const w = handle(t, fake);
    await w.start();
    const child = fake.children[0]!;
    const disconnected = once(child, 'disconnect');
    t.equal(await get(w, '/disconnect'), 200);
    await disconnected;
    const exit = once(w, 'exit') as Promise<[ExitReport]>;
    await new Promise<void>((resolve) => w.afterSignOfLife(resolve));
    const [report] = await exit;
    t.equal(report.signal, 'SIGKILL', 'killed');
    t.notOk(w.isAccepting);
  },
);

t.test('stopping a worker that died unseen: its exit says it was killed, not a failed start', async (t) => {
  // A probe: an old build's worker killed by the health probes while it drained, then stopped by the deploy.
  const fake = fakeFork('ready');
  const w = handle(t, fake);
  await w.start();
  const pid = w.pid!;
  w.markUnhealthy('missed probes'); // its SIGKILL
  // Synchronously, so that this loop has not seen its channel close: the process is gone (a zombie, not reaped).
  untilZombie(pid);
  const exit = once(w, 'exit') as Promise<[ExitReport]>;
  const stopped = w.stop(1000);
  const [report] = await exit;
  await stopped;
  t.equal(report.reason, 'killed by SIGKILL');
});

/**
 * Blocks this thread (no loop turn) until `pid` is a zombie: 1 ms pauses, not a hot spin, and bounded so a kill that
 * never lands fails the test instead of blocking tap's own timeout.
 */
function untilZombie(pid: number): void {
  const pause = new Int32Array(new SharedArrayBuffer(4));
  for (let i = 0; processState(pid) !== 'Z'; i++) {
    if (i === 30_000) throw new Error(`process ${pid} is not a zombie after 30000 pauses of 1 ms`);
    Atomics.wait(pause, 0, 0, 1);
  }
}

/** The state letter of /proc/PID/stat ('Z': exited, not reaped yet). */
function processState(pid: number): string {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
}

t.test('workerExecArgv: profiling and heap flags pass, debugger ports and preloads do not', async (t) => {
  const { workerExecArgv } = await import('../../master/worker-process.js');
  const cases: Array<[string[], string[]]> = [
    [
      ['--cpu-prof', '--cpu-prof-dir=/tmp/p', '--max-old-space-size=512'],
      ['--cpu-prof', '--cpu-prof-dir=/tmp/p', '--max-old-space-size=512'],
    ],
    [['--inspect=9229', '--inspect-brk', '--inspect-port', '9230'], []],
    [
      [
        '--import=file:///tap/import.mjs',
        '--import',
        'tsx',
        '--require',
        'ts-node/register',
        '-r',
        'x',
        '--loader=y',
        '--enable-source-maps',
      ],
      ['--enable-source-maps'],
    ],
    [['--experimental-loader', 'z', '--heap-prof'], ['--heap-prof']],
  ];
  for (const [input, want] of cases) t.same(workerExecArgv(input), want, input.join(' '));
});

t.test('workerNodeOptions: the operator’s NODE_OPTIONS without debugger flags', async (t) => {
  const { workerNodeOptions } = await import('../../master/worker-process.js');
  const cases: Array<[string | undefined, string | undefined]> = [
    [undefined, undefined],
    ['--inspect', undefined],
    ['--inspect=127.0.0.1:9229 --max-old-space-size=512', '--max-old-space-size=512'],
    [
      '--require ./hook.cjs --inspect-brk=0.0.0.0:9230 --enable-source-maps',
      '--require ./hook.cjs --enable-source-maps',
    ],
    ['--inspect-port 9231 --import=./otel.mjs', '--import=./otel.mjs'],
    ['--debug-port=5858 --inspect-publish-uid=http', undefined],
    ['--max-semi-space-size=16', '--max-semi-space-size=16'],
    ['--require "/a  b/hook.cjs" --inspect', '--require "/a  b/hook.cjs"'],
  ];
  for (const [input, want] of cases) t.equal(workerNodeOptions(input), want, String(input));
});

t.test('workerEnv: the master’s NODE_OPTIONS as workerNodeOptions leaves it, none if nothing is left', async (t) => {
  // Under `npm test` every master has NODE_OPTIONS (the tests' coverage preload, test/helpers/child-env.ts): the
  // branch where a worker gets none runs here only.
  const { workerEnv } = await import('../../master/worker-process.js');
  const cases: Array<[string, string | undefined, Record<string, string>, string | undefined]> = [
    ['a master without', undefined, {}, undefined],
    ['only a debugger flag', '--inspect=127.0.0.1:9229', {}, undefined],
    ['a preload kept, the debugger port not', '--inspect --import=./otel.mjs', {}, '--import=./otel.mjs'],
    ["the version's own, as written", '--import=./otel.mjs', { NODE_OPTIONS: '--inspect' }, '--inspect'],
  ];
  for (const [name, master, env, want] of cases) {
    const got = workerEnv(master === undefined ? {} : { NODE_OPTIONS: master }, {
      env,
      settings: SETTINGS,
      redactEnv: [],
    });
    t.equal(got['NODE_OPTIONS'], want, name);
    t.equal(Object.hasOwn(got, 'NODE_OPTIONS'), want !== undefined, `${name}: the variable itself`);
  }
});

t.test(
  'holdOpen: a close asked while a descriptor is held waits for every hold, reads nothing meanwhile, happens once',
  (t) => {
    const calls: string[] = [];
    class FakeHandle {
      close(cb?: () => void): void {
        calls.push('close');
        cb?.();
      }

      readStop(): number {
        calls.push('readStop');
        return 0;
      }
    }
    const handle = new FakeHandle();
    // Two workers sending the same connection: the first to finish must not let the other's descriptor close.
    const first = holdOpen(handle);
    const second = holdOpen(handle);
    let isClosed = false;
    handle.close(() => (isClosed = true));
    t.same(calls, ['readStop'], 'held: reading stops, nothing closes');
    first();
    first();
    t.notOk(isClosed, 'one hold released (twice): still held for the other');
    second();
    t.ok(isClosed, 'the last release closes, as asked');
    t.same(calls, ['readStop', 'close'], 'closed once');
    t.notOk(Object.hasOwn(handle, 'close'), 'the prototype close is back');
    const again = holdOpen(handle);
    again();
    t.same(calls, ['readStop', 'close'], 'a hold with no close asked closes nothing');
    t.end();
  },
);

t.test(
  'a stop of a worker the master still sees starting, whose SIGTERM it takes for an operator’s: told to drain',
  async (t) => {
    // The master SIGTERMs a worker it has not heard `ready` from yet (#terminate); one that sent it meanwhile
    // (WorkerSettings.takesSignals) leaves that SIGTERM to the master. Answered `signal-taken`, it served on until the
    // kill escalation, deadlineMs + the grace later, and drained 5 s more on the second SIGTERM (a review).
    const lifecycleEntry = join(ROOT, 'dist/test/fixtures/lifecycle-worker.js');
    let held: unknown[] | undefined = [];
    let onHeld: (() => void) | undefined;
    const sent: unknown[] = [];
    let child: ChildProcess | undefined;
    const fork: ForkFunction = (_modulePath, args, options) => {
      const c = nodeFork(lifecycleEntry, [...args], {
        ...options,
        ...forkLaunch({ LIFECYCLE_TAKES_SIGNALS: '1' }, options.env, options.execArgv),
      });
      child = c;
      // Holds the worker's messages (its `ready` among them) until the master has sent its SIGTERM.
      const emit = c.emit.bind(c) as (event: string | symbol, ...args: unknown[]) => boolean;
      c.emit = ((event: string | symbol, ...rest: unknown[]) => {
        if (event === 'message' && held !== undefined) {
          held.push(rest[0]);
          onHeld?.();
          return true;
        }
        return emit(event, ...rest);
      }) as typeof c.emit;
      const send = c.send.bind(c) as (...a: unknown[]) => boolean;
      c.send = (...a: unknown[]) => {
        sent.push(a[0]);
        return send(...a);
      };
      return c;
    };
    t.teardown(() => {
      if (child !== undefined && child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    });
    const w = handle(t, fakeFork('ready'), { fork, settings: { ...SETTINGS, takesSignals: true } });
    const heldOf = async (type: string): Promise<void> => {
      while (!held!.some((m) => (m as { type?: string }).type === type))
        await new Promise<void>((resolve) => (onHeld = resolve));
    };
    const starting = w.start();
    await heldOf('ready');
    t.equal(w.state, 'starting', 'the master has not read its ready yet');
    const stopped = w.stop(60_000);
    await heldOf('signal');
    const messages = held;
    held = undefined;
    const answered = once(w, 'signal');
    for (const msg of messages) child!.emit('message', msg);
    await answered;
    t.same(
      sent.map((m) => (m as { type: string }).type),
      ['shutdown'],
      'the signal answered with the stop’s drain, not taken over',
    );
    const exit = once(w, 'exit') as Promise<[ExitReport]>;
    await t.rejects(starting, { name: 'WorkerStartFailure' });
    await stopped;
    const [report] = await exit;
    t.same(
      { code: report.code, signal: report.signal, isIntended: report.isIntended },
      { code: 0, signal: null, isIntended: true },
    );
  },
);
