import t from 'tap';
import { getEventListeners, once } from 'node:events';
import { Deadlines } from '../../../worker/upstream/timeouts.js';

// Each deadline aborts the combined signal with its own typed reason (STYLE §12).

t.test('first-byte deadline fires when no bytes come', async (t) => {
  const d = new Deadlines({ signal: new AbortController().signal, firstByteMs: 5, idleMs: 0, totalMs: 0 });
  await once(d.signal, 'abort');
  t.match(d.explain(new Error('x')), { code: 'upstream_timeout', phase: 'first-byte', status: 504 });
  d.dispose();
});

t.test('idle deadline after the first bytes; pause stops it', async (t) => {
  // Paused, the idle deadline (5 ms) does not fire; the total one (20 ms, armed in the same turn) does. Node runs
  // timers that are due in the order they fall due, so had the pause not stopped the idle deadline, it would have
  // aborted first, however late the loop got to them. (A look one setImmediate after the pause, 5 ms before the
  // idle deadline was due, passed whatever the pause did.)
  const paused = new Deadlines({ signal: new AbortController().signal, firstByteMs: 1000, idleMs: 5, totalMs: 20 });
  paused.onBytes();
  paused.pause();
  await once(paused.signal, 'abort');
  t.match(paused.explain(undefined), { code: 'upstream_timeout', phase: 'total' }, 'paused: no idle deadline');
  paused.dispose();

  const d = new Deadlines({ signal: new AbortController().signal, firstByteMs: 1000, idleMs: 5, totalMs: 0 });
  d.onBytes();
  d.pause();
  d.resume();
  await once(d.signal, 'abort');
  t.match(d.explain(undefined), { code: 'upstream_timeout', phase: 'idle' }, 'resumed: the idle deadline again');
  d.dispose();
});

t.test('total deadline and client abort', async (t) => {
  const d = new Deadlines({ signal: new AbortController().signal, firstByteMs: 0, idleMs: 0, totalMs: 5 });
  await once(d.signal, 'abort');
  t.match(d.explain(undefined), { phase: 'total' });
  const client = new AbortController();
  const d2 = new Deadlines({ signal: client.signal, firstByteMs: 1000, idleMs: 1000, totalMs: 1000 });
  const reason = new Error('client left');
  client.abort(reason);
  t.equal(d2.signal.aborted, true);
  t.equal(d2.signal.reason, reason, 'the upstream call is aborted with the client’s reason');
  t.equal(d2.explain(new Error('other')), reason);
  d2.dispose();
  const err = new Error('not aborted');
  const d3 = new Deadlines({ signal: new AbortController().signal, firstByteMs: 0, idleMs: 0, totalMs: 0 });
  t.equal(d3.explain(err), err, 'no abort: the error is kept');
  d3.dispose();
});

t.test('a client signal already aborted aborts at once, with its reason', (t) => {
  const client = new AbortController();
  const reason = new Error('gone before the call');
  client.abort(reason);
  const d = new Deadlines({ signal: client.signal, firstByteMs: 1000, idleMs: 1000, totalMs: 1000 });
  t.equal(d.signal.aborted, true);
  t.equal(d.signal.reason, reason);
  t.equal(d.explain(new Error('other')), reason);
  d.dispose();
  t.end();
});

t.test('a deadline first, then the client: the deadline aborted the call, the client is who left', async (t) => {
  const client = new AbortController();
  const d = new Deadlines({ signal: client.signal, firstByteMs: 5, idleMs: 0, totalMs: 0 });
  await once(d.signal, 'abort');
  t.match(d.signal.reason, { phase: 'first-byte' }, 'the signal carries the deadline');
  const reason = new Error('client left');
  client.abort(reason);
  t.match(d.signal.reason, { phase: 'first-byte' }, 'the first reason is kept');
  t.equal(d.explain(undefined), reason, 'explained as the client leaving, as before');
  d.dispose();
});

t.test('dispose lets go of the client signal, which may outlive the call', (t) => {
  const client = new AbortController();
  const d = new Deadlines({ signal: client.signal, firstByteMs: 1000, idleMs: 1000, totalMs: 1000 });
  t.equal(getEventListeners(client.signal, 'abort').length, 1, 'one listener on the client signal while the call runs');
  d.dispose();
  t.equal(getEventListeners(client.signal, 'abort').length, 0, 'no listener left on the client signal');
  client.abort(new Error('late'));
  t.equal(d.signal.aborted, false, 'a disposed call is not aborted any more');
  t.end();
});
