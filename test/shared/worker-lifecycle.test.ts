import t, { type Test } from 'tap';
import { fork, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { join } from 'node:path';
import { forkLaunch } from '../helpers/child-env.js';
import { ROOT } from '../helpers/root.js';

// limits.directStreams: a worker reports each IPC call taken before anything of it runs, so that the master can send a
// call its dead worker never reported to another (master/direct-calls.ts). Under load a worker reads ~7 calls at a time
// from its channel; one report for them all costs the master one message to read instead of seven. Real processes:
// the worker's lifecycle in a child, this test as its master; the child stopped while the calls are written, so that
// it reads them in one turn when it resumes.

const ENTRY = join(ROOT, 'dist/test/fixtures/lifecycle-worker.js');

interface Message {
  type: string;
  signal?: string;
  address?: { host: string; port: number };
  id?: number;
  ids?: number[];
  isTaken?: boolean;
  isEnd?: boolean;
}

function startWorker(
  t: Test,
  readsTaken: boolean,
  takesSignals = false,
  env: Record<string, string> = {},
): { child: ChildProcess; messages: Message[] } {
  const child = fork(
    ENTRY,
    [],
    forkLaunch({
      LIFECYCLE_READS_TAKEN: readsTaken ? '1' : '0',
      LIFECYCLE_TAKES_SIGNALS: takesSignals ? '1' : '0',
      ...env,
    }),
  );
  const messages: Message[] = [];
  child.on('message', (msg: Message) => messages.push(msg));
  t.teardown(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  });
  return { child, messages };
}

/** What the worker reports of three calls it reads in one turn. */
async function reportsOfThreeCalls(t: Test, readsTaken: boolean): Promise<string[]> {
  const { child, messages } = startWorker(t, readsTaken);
  const [ready] = (await once(child, 'message')) as [Message];
  t.equal(ready.type, 'ready');
  messages.length = 0;
  child.kill('SIGSTOP');
  const sent = [1, 2, 3].map(
    (id) =>
      new Promise<void>((resolve, reject) =>
        child.send({ type: 'call', id }, (err) => (err ? reject(err) : resolve())),
      ),
  );
  await Promise.all(sent); // all three in the channel: the stopped worker reads them in one turn
  child.kill('SIGCONT');
  while (messages.filter((m) => m.isEnd === true).length < 3) await once(child, 'message');
  child.kill('SIGKILL');
  return messages.map((m) =>
    m.type === 'calls-taken' ? `taken ${m.ids!.join(',')}` : `${m.isTaken === true ? 'taken' : 'end'} ${m.id}`,
  );
}

t.test('calls read in one turn are reported taken in one message, before any of them runs', async (t) => {
  t.same(await reportsOfThreeCalls(t, true), ['taken 1,2,3', 'end 1', 'end 2', 'end 3']);
});

t.test('to a master from before `calls-taken`, each call is reported taken on its own', async (t) => {
  t.same(await reportsOfThreeCalls(t, false), ['taken 1', 'taken 2', 'taken 3', 'end 1', 'end 2', 'end 3']);
});

// A ready worker's SIGTERM is its master's to act on (WorkerSettings.takesSignals): sent to the whole process group it
// reaches the master too, whose drain has its own deadline; sent to the worker alone, the master replaces it first.

/** The next message of `type` from the worker. */
async function next(child: ChildProcess, messages: Message[], type: string): Promise<Message> {
  for (;;) {
    const found = messages.find((m) => m.type === type);
    if (found !== undefined) return found;
    await once(child, 'message');
  }
}

/** Whether the worker's HTTP server still answers. */
async function serves(ready: Message): Promise<number> {
  const res = await fetch(`http://${ready.address!.host}:${ready.address!.port}/`);
  await res.arrayBuffer();
  return res.status;
}

t.test('a SIGTERM is told to a master that takes signals: the worker serves on until its shutdown', async (t) => {
  const { child, messages } = startWorker(t, true, true);
  const ready = await next(child, messages, 'ready');
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  t.equal((await next(child, messages, 'signal')).signal, 'SIGTERM', 'the master is told');
  child.send({ type: 'signal-taken' });
  child.send({ type: 'ping', id: 1 });
  await next(child, messages, 'pong');
  t.equal(await serves(ready), 200, 'it serves on');
  child.send({ type: 'shutdown', deadlineMs: 5000 });
  t.same(await exited, [0, null], 'drained and exited 0 once told');
});

t.test(
  'the shutdown deadline’s `cut`: a worker that takes it says so, ends its work, and drains when told',
  async (t) => {
    const { child, messages } = startWorker(t, true);
    const ready = await next(child, messages, 'ready');
    t.equal((ready as Message & { takesCuts?: boolean }).takesCuts, true, 'its `ready` says `takesCuts`');
    const exited = once(child, 'exit');
    child.send({ type: 'cut' });
    child.send({ type: 'ping', id: 1 });
    await next(child, messages, 'pong');
    t.equal(await serves(ready), 503, 'cut: what it answers now is the cut’s');
    child.send({ type: 'shutdown', deadlineMs: 5000 });
    t.same(await exited, [0, null], 'a known message, not a protocol error: drained and exited 0');
  },
);

t.test('a second SIGTERM while the master has not said to drain: the worker drains on its own', async (t) => {
  const { child, messages } = startWorker(t, true, true);
  await next(child, messages, 'ready');
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await next(child, messages, 'signal');
  child.kill('SIGTERM');
  t.same(await exited, [0, null]);
  t.equal(messages.filter((m) => m.type === 'signal').length, 1, 'told once');
});

t.test('to a master from before `signal`, a SIGTERM drains the worker at once', async (t) => {
  const { child, messages } = startWorker(t, true, false);
  await next(child, messages, 'ready');
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  t.same(await exited, [0, null]);
  t.same(
    messages.filter((m) => m.type === 'signal'),
    [],
    'nothing told',
  );
});

t.test('a master that does not answer a SIGTERM told to it: the worker drains on its own', async (t) => {
  // A master stopped or hung: a SIGTERM still ends the worker (after 5 s by default; 50 ms here).
  const { child, messages } = startWorker(t, true, true, { LIFECYCLE_SIGNAL_ANSWER_MS: '50' });
  await next(child, messages, 'ready');
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  await next(child, messages, 'signal');
  t.same(await exited, [0, null], 'drained and exited 0 without an answer');
});
