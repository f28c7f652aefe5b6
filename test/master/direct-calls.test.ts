import t from 'tap';
import { once } from 'node:events';
import { createServer, connect, type AddressInfo, type Socket } from 'node:net';
import type { ChildProcess } from 'node:child_process';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createLogger } from '../../shared/log.js';
import { DIRECT_ALIVE, DIRECT_LATE, leaseGuardMs, monotonicMs, type DirectCallMessage } from '../../shared/direct.js';
import { callDirect } from '../../master/direct-calls.js';
import type { RelayHooks } from '../../master/relay.js';
import { RequestContext } from '../../master/request-context.js';
import { WorkerDirect } from '../../master/worker-direct.js';
import type { WorkerHandle } from '../../master/worker-handle.js';

// limits.directStreams: when a worker process ends, the IPC calls it never reported taken never ran there and go to
// another worker (whatever their method); those it did report taken may have run, and are answered 502. A worker
// reports them as `calls-taken` (the calls of one read) or, a build from before, one `call-report` `isTaken` each;
// each way, and a report for an unknown, repeated or ended id, decides which calls go again. The worker process is
// a stand-in here (its channel a list of sent ids); the calls and their accounting are the master's own.

const OFFER = { conn: 1, keepAliveTimeoutS: 5, sendTimeoutMs: 60_000, heartbeatMs: 0, headers: {} };
const TIMEOUTS = { headersMs: 60_000, idleMs: 0 };

interface Outcomes {
  bodySent: string[];
  refused: string[];
  triedAgain: string[];
}

/** A worker process whose `ready` said `acksCalls` (or not), the master's side of it, and what became of each call. */
function worker(
  acksCalls: boolean,
  takesLeases = false,
  timeouts: { headersMs: number; idleMs: number } = TIMEOUTS,
): {
  call: (name: string) => number;
  direct: WorkerDirect;
  outcomes: Outcomes;
  leases: Array<{ conn: number; writeBy: number }>;
  /** The refusals' codes, in order. */
  codes: string[];
  /** Resolves at the next refusal. */
  nextRefusal: () => Promise<void>;
} {
  const direct = new WorkerDirect(createLogger({ role: 'master', level: 'silent' }));
  const sent: number[] = [];
  const leases: Array<{ conn: number; writeBy: number }> = [];
  const child = {
    connected: true,
    send: (msg: DirectCallMessage | { type: 'call-lease'; conn: number; writeBy: number }) =>
      msg.type === 'call-lease' ? leases.push({ conn: msg.conn, writeBy: msg.writeBy }) > 0 : sent.push(msg.id) > 0,
    on: () => child,
  } as unknown as ChildProcess;
  direct.attach(child);
  direct.onReady({ takesConnections: true, takesCalls: true, acksCalls, takesLeases });
  const handle = {
    acksCalls,
    sendCall: (msg: DirectCallMessage, start: Parameters<WorkerDirect['sendCall']>[1]) => direct.sendCall(msg, start),
    renewLease: (conn: number, writeBy: number) => direct.renewLease(conn, writeBy),
  } as unknown as WorkerHandle;
  const outcomes: Outcomes = { bodySent: [], refused: [], triedAgain: [] };
  const codes: string[] = [];
  const refusalWaiters: Array<() => void> = [];
  const nextRefusal = (): Promise<void> => new Promise((resolve) => refusalWaiters.push(resolve));
  const names = new Map<RequestContext, string>();
  const hooks: RelayHooks = {
    now: timeouts === TIMEOUTS ? () => 0 : () => performance.now(),
    isClosing: () => false,
    refuse: (ctx, err) => {
      outcomes.refused.push(names.get(ctx)!);
      codes.push((err as { code: string }).code);
      for (const resolve of refusalWaiters.splice(0)) resolve();
    },
    onHeaders: () => undefined,
    onBodySent: (ctx) => void outcomes.bodySent.push(names.get(ctx)!),
  };
  const call = (name: string): number => {
    const ctx = new RequestContext(
      { method: 'POST', socket: {} } as unknown as IncomingMessage,
      {} as ServerResponse,
      0,
    );
    ctx.forwardPath = '/v1/chat/completions';
    ctx.body = Buffer.from('{}');
    names.set(ctx, name);
    const onUnread = (unread: RequestContext): boolean => outcomes.triedAgain.push(names.get(unread)!) > 0;
    if (!callDirect(ctx, handle, {}, OFFER, timeouts, hooks, onUnread)) throw new Error('not sent');
    return sent.at(-1)!;
  };
  return { call, direct, outcomes, leases, codes, nextRefusal };
}

t.test('a worker that reports calls taken: those it never reported go again when it ends', async (t) => {
  const { call, direct, outcomes } = worker(true);
  const batched = call('batched');
  const alone = call('alone');
  call('unread');
  const ended = call('ended');
  direct.onCallsTaken([batched, ended, batched, 1e9]); // a repeated id, an unknown one
  direct.onCallReport({ type: 'call-report', id: alone, marks: '', isTaken: true }); // a build from before
  direct.onCallReport({ type: 'call-report', id: ended, marks: '', isEnd: true }); // given up, unanswered
  direct.onCallsTaken([ended]); // after its end
  t.same(outcomes, { bodySent: ['batched', 'ended', 'alone'], refused: ['ended'], triedAgain: [] });
  direct.end(); // the process is gone, its channel read to the end
  t.same(outcomes.refused, ['ended', 'batched', 'alone'], 'taken: it may have run, 502');
  t.same(outcomes.triedAgain, ['unread'], 'never taken: never ran, goes again');
});

t.test("a call in an ended call's slot hears nothing meant for the one that ended", async (t) => {
  // Ids name reused slots (slot-table.ts): a late or repeated message for the ended call must not reach the next.
  const { call, direct, outcomes } = worker(true);
  const first = call('first');
  direct.onCallsTaken([first]);
  direct.onCallReport({ type: 'call-report', id: first, marks: '', isEnd: true }); // given up, unanswered
  const second = call('second'); // in first's slot
  t.not(second, first);
  direct.onCallsTaken([first]);
  direct.onCallReport({ type: 'call-report', id: first, marks: '', status: 200 });
  direct.onCallReport({ type: 'call-report', id: first, marks: '', isEnd: true });
  t.same(outcomes, { bodySent: ['first'], refused: ['first'], triedAgain: [] }, 'nothing reached the second call');
  direct.end();
  t.same(outcomes.triedAgain, ['second'], 'never taken, so it goes again');
});

t.test('a worker build that reports nothing taken: every call counts as read once sent', async (t) => {
  const { call, direct, outcomes } = worker(false);
  call('first');
  call('second');
  t.same(outcomes.bodySent, ['first', 'second']);
  direct.end();
  t.same(outcomes, { bodySent: ['first', 'second'], refused: ['first', 'second'], triedAgain: [] });
});

t.test(
  'write leases: renewed on a sign of life before the status, to the guard before the timer; L is a 504',
  async (t) => {
    // shared/direct.ts: the worker begins no answer past its lease, and says so (`L`); the master, which may be writing
    // its own 504 past it, renews it on each heartbeat, only to a worker whose `ready` said `takesLeases`.
    const { call, direct, outcomes, leases, codes } = worker(true, true);
    const slow = call('slow');
    direct.onCallsTaken([slow]);
    const before = monotonicMs();
    direct.onCallReport({ type: 'call-report', id: slow, marks: DIRECT_ALIVE });
    const guard = leaseGuardMs(TIMEOUTS.headersMs);
    t.equal(leases.length, 1, 'a heartbeat renews the lease');
    t.equal(leases[0]!.conn, OFFER.conn, 'for the call on its connection');
    t.ok(leases[0]!.writeBy >= before + TIMEOUTS.headersMs - guard, 'to the guard before the timer restarted now');
    t.ok(leases[0]!.writeBy <= monotonicMs() + TIMEOUTS.headersMs - guard);
    direct.onCallReport({ type: 'call-report', id: slow, marks: DIRECT_LATE, isEnd: true });
    t.same([outcomes.refused, codes], [['slow'], ['worker_timeout']], 'past its lease: the master’s 504 at once');
    t.equal(leases.length, 1, 'its end renews nothing');

    const statused = call('statused');
    direct.onCallsTaken([statused]);
    direct.onCallReport({ type: 'call-report', id: statused, marks: '', status: 200, isStream: true });
    direct.onCallReport({ type: 'call-report', id: statused, marks: DIRECT_ALIVE });
    t.equal(leases.length, 1, 'after the status no lease is needed');

    const old = worker(true, false);
    const id = old.call('old');
    old.direct.onCallReport({ type: 'call-report', id, marks: DIRECT_ALIVE });
    t.same(old.leases, [], 'a build that keeps no leases is sent none (it would exit on the message)');
    old.direct.onCallReport({ type: 'call-report', id, marks: DIRECT_LATE, isEnd: true }); // its timer stopped
  },
);

t.test(
  'a heartbeat read after the headers timer fired, before its 504, spares the call; the timer fires again',
  async (t) => {
    // Timers run before I/O in a loop turn, and the 504 waits for the I/O (setImmediate): a heartbeat read there has
    // restarted the timer and renewed the worker's lease, so a 504 then could follow the worker's bytes. As a stalled
    // master meets it: inside an I/O callback the loop is held past the wait while the heartbeat's bytes arrive, so
    // the next turn runs the timer, then reads them, then the timer's immediate (libuv's order).
    const { call, direct, outcomes, leases, codes, nextRefusal } = worker(true, true, { headersMs: 100, idleMs: 0 });
    const server = createServer();
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const client = connect((server.address() as AddressInfo).port, '127.0.0.1');
    const [peer] = (await once(server, 'connection')) as [Socket];
    t.teardown(() => {
      client.destroy();
      peer.destroy();
      server.close();
    });
    let id = 0;
    const spared = new Promise<string[]>((resolve) => {
      let reads = 0;
      client.on('data', () => {
        if (++reads === 1) {
          // In the poll phase: the call's timer starts, the heartbeat's bytes are sent, the loop is held past the wait.
          id = call('late-sign');
          direct.onCallsTaken([id]);
          peer.write('.');
          const until = performance.now() + 150;
          while (performance.now() < until);
          return;
        }
        direct.onCallReport({ type: 'call-report', id, marks: DIRECT_ALIVE });
        setImmediate(() => resolve([...outcomes.refused])); // after the timer's own immediate
      });
    });
    peer.write('g');
    const refused = nextRefusal();
    t.same(await spared, [], 'no 504 after a sign of life read in the same turn');
    t.equal(leases.length, 1, 'the lease renewed');
    await refused;
    t.same([outcomes.refused, codes], [['late-sign'], ['worker_timeout']], 'the restarted timer answers 504 after all');
  },
);

t.test('the shutdown deadline’s `cut`: sent once, only to a worker whose `ready` said `takesCuts`', async (t) => {
  // A build from before `cut` exits on a message it does not know (STYLE §19), its answers with it: the master cuts
  // their connections itself then, as it did before.
  const sent: unknown[] = [];
  const child = { connected: true, send: (msg: unknown) => sent.push(msg) > 0, on: () => child };
  const cuts = new WorkerDirect(createLogger({ role: 'master', level: 'silent' }));
  cuts.attach(child as unknown as ChildProcess);
  t.notOk(cuts.cutAnswers(), 'not before its `ready`');
  cuts.onReady({ takesConnections: true, takesCalls: true, takesCuts: true });
  t.ok(cuts.cutAnswers());
  t.ok(cuts.cutAnswers(), 'asked again (another of its answers)');
  t.same(sent, [{ type: 'cut' }], 'told once');
  const old = new WorkerDirect(createLogger({ role: 'master', level: 'silent' }));
  old.attach(child as unknown as ChildProcess);
  old.onReady({ takesConnections: true, takesCalls: true, acksCalls: true, takesLeases: true });
  t.notOk(old.cutAnswers(), 'a build from before: not told');
  child.connected = false;
  const gone = new WorkerDirect(createLogger({ role: 'master', level: 'silent' }));
  gone.attach(child as unknown as ChildProcess);
  gone.onReady({ takesCuts: true });
  t.notOk(gone.cutAnswers(), 'a process whose channel closed: not told');
  t.equal(sent.length, 1);
});
