import t from 'tap';
import { PROTOCOL_VERSION, isReadyMessage, isWorkerToMaster } from '../../shared/ipc.js';

// A version's `entry` can be any build, and the master acts on its messages in its IPC listener, where a throw ended
// the master with every stream (a probe's hostile builds: a `ready` without an address, a `call-report` without
// `marks`). The master takes only messages whose fields are what it reads.

const ready = { type: 'ready', protocol: PROTOCOL_VERSION, pid: 1, address: { path: '/tmp/w.sock' } };
const report = { type: 'call-report', id: 7, marks: 'F', status: 200, isStream: true };
const pong = { type: 'pong', replyTo: 3, rssBytes: 1e6, eventLoopDelayMs: 0.5, counters: [] };

t.test('what a worker of this build sends is taken', async (t) => {
  for (const msg of [
    ready,
    { ...ready, address: { host: '127.0.0.1', port: 4000 }, takesConnections: true, takesCalls: false },
    { ...ready, takesConnections: true, takesCalls: true, acksCalls: true },
    { ...ready, takesCuts: true },
    { type: 'fatal', error: { code: 'x', message: 'y' } },
    { type: 'metrics', replyTo: 1, metrics: [] },
    pong,
    { type: 'pong', replyTo: 3, rssBytes: 1, eventLoopDelayMs: 0 },
    { type: 'conn-taken', id: 1 },
    report,
    { type: 'call-report', id: 7, marks: '', isEnd: true, isLast: false },
    { type: 'call-report', id: 7, marks: '', isTaken: true },
    { type: 'calls-taken', ids: [7] },
    { type: 'calls-taken', ids: [7, 8, 12] },
  ]) {
    t.ok(isWorkerToMaster(msg), JSON.stringify(msg));
  }
});

t.test('a message with a field the master reads missing or of another type is not', async (t) => {
  for (const msg of [
    null,
    'ready',
    [],
    { type: 'nope' },
    { type: 'toString' },
    { type: 'constructor' },
    { ...ready, address: undefined },
    { ...ready, address: 'w.sock' },
    { ...ready, address: { path: '' } },
    { ...ready, address: { host: '127.0.0.1', port: '4000' } },
    { ...ready, address: { host: '127.0.0.1', port: 70000 } },
    { ...ready, protocol: '2' },
    { ...ready, takesConnections: 'yes' },
    { ...ready, acksCalls: 1 },
    { ...ready, takesCuts: 'yes' },
    { type: 'fatal' },
    { type: 'metrics', replyTo: 1, metrics: {} },
    { ...pong, rssBytes: '5' },
    { ...pong, eventLoopDelayMs: Number.NaN },
    { ...pong, replyTo: 1.5 },
    { ...pong, counters: {} },
    { type: 'conn-taken', id: '1' },
    { ...report, marks: undefined },
    { ...report, marks: 7 },
    { ...report, id: undefined },
    { ...report, status: 'abc' },
    { ...report, status: { a: 1 } },
    { ...report, status: 1000 },
    { ...report, isEnd: 'true' },
    { ...report, isTaken: 'yes' },
    { type: 'calls-taken' },
    { type: 'calls-taken', ids: 7 },
    { type: 'calls-taken', ids: [] },
    { type: 'calls-taken', ids: { 0: 7, length: 1 } },
    { type: 'calls-taken', ids: [7, '8'] },
    { type: 'calls-taken', ids: [7, 1.5] },
  ]) {
    t.notOk(isWorkerToMaster(msg), JSON.stringify(msg));
  }
});

t.test('a ready the master cannot use is still known as one (its start fails at once)', async (t) => {
  t.ok(isReadyMessage({ ...ready, address: undefined }));
  t.ok(isReadyMessage({ type: 'ready', protocol: 1 }));
  t.notOk(isReadyMessage({ type: 'pong' }));
  t.notOk(isReadyMessage(null));
});
