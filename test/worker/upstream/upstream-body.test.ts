import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import { createServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import t from 'tap';
import type { Teardown } from '../../helpers/gateway.js';
import type { UpstreamClient } from '../../../worker/upstream/client.js';
import { testUpstreamClient } from '../fixtures/upstream-client.js';
import type { BodySink } from '../../../worker/upstream/upstream-body.js';
import { pollUntil } from '../../helpers/wait.js';
import { watchShift } from '../../helpers/array-shift.js';
import { finishesPausedParsers, UNDICI_FINISHES_PAUSED_PARSERS } from '../../../worker/upstream/undici-fix.js';

// Issue 10: the upstream's body goes to its reader chunk by chunk from undici's parser
// (worker/upstream/upstream-body.ts), with no stream between. What a reader relies on: nothing is
// given to a paused reader, and nothing read ahead of it; what came before it started is given first
// and in order, then the end; destroy() aborts the request, and a reason reaches the reader; the
// signal does the same. A raw upstream on 127.0.0.1 writes a whole answer in one write, so undici
// parses it in one go and every step below is decided inside that parse, not by timing.

/** An upstream that answers every request with `answer`, in one write, and keeps the connection open. */
async function upstream(
  t: Teardown,
  answer: string,
): Promise<{ url: string; closed: Promise<void>; sockets: Set<Socket> }> {
  const sockets = new Set<Socket>();
  let onClose: () => void = () => undefined;
  const closed = new Promise<void>((resolve) => (onClose = resolve));
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.once('data', () => socket.write(answer));
    socket.on('close', onClose);
    socket.on('error', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, closed, sockets };
}

const HEAD = 'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n';
const chunked = (...parts: string[]): string => parts.map((p) => `${p.length.toString(16)}\r\n${p}\r\n`).join('');
const END = '0\r\n\r\n';

/** `readAheadBytes` 0: undici's parser is paused at once on every answer, as on a chunked one. */
const client = (t: Teardown, url: string, readAheadBytes?: number): UpstreamClient =>
  testUpstreamClient(t, url, readAheadBytes === undefined ? {} : { readAheadBytes });

const call = (signal = new AbortController().signal) => ({ path: '/x', headers: {}, body: Buffer.from('{}'), signal });

/** A sink that records what it is given; `onData` may act on the body from inside a chunk. */
function recorder(onData: (chunk: Buffer) => void = () => undefined) {
  const got = { chunks: [] as string[], ended: 0, errors: [] as unknown[] };
  let onFirst: () => void = () => undefined;
  const first = new Promise<void>((resolve) => (onFirst = resolve));
  let settled: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (settled = resolve));
  const sink: BodySink = {
    data(chunk) {
      got.chunks.push(chunk.toString());
      onFirst();
      onData(chunk);
    },
    end() {
      got.ended++;
      settled();
    },
    error(err) {
      got.errors.push(err);
      settled();
    },
  };
  return { got, sink, first, done };
}

t.test('a paused reader is given nothing more, and nothing is read ahead of it, until it resumes', async (t) => {
  const up = await upstream(t, HEAD + chunked('a', 'b', 'c') + END);
  const response = await client(t, up.url).request(call());
  let isPausing = true;
  const { got, sink, first, done } = recorder(() => {
    if (isPausing) response.body.pause();
  });
  response.body.read(sink);
  await first;
  t.same(got.chunks, ['a'], 'paused at its first chunk: the rest of the same read waits in the parser');
  t.equal(response.body.heldBytes, 0, 'nothing held for it either');
  t.equal(got.ended, 0);
  isPausing = false;
  response.body.resume();
  await done;
  t.same(got.chunks, ['a', 'b', 'c']);
  t.equal(got.ended, 1, 'then the end, once');
  t.ok(response.body.isEnded);
  t.same(got.errors, []);
});

t.test('what came before the reader started is given first, in order, then the end', async (t) => {
  const up = await upstream(t, HEAD + chunked('one ', 'two ', 'three') + END);
  const response = await client(t, up.url).request(call());
  // The headers and the whole body came in one read: the first chunk arrived with nobody to take it.
  t.ok(response.body.heldBytes > 0, 'held until a reader takes the body');
  const { got, sink, done } = recorder();
  let closes = 0;
  response.body.onClose(() => closes++);
  response.body.read(sink);
  await done;
  t.same(got.chunks, ['one ', 'two ', 'three']);
  t.equal(got.ended, 1);
  t.equal(closes, 1, 'closed once');
  response.body.onClose(() => closes++);
  t.equal(closes, 2, 'a close callback added after the end runs at once');
});

t.test('destroy() aborts the request; with a reason, the reader is given it', async (t) => {
  const up = await upstream(t, HEAD + chunked('a', 'b')); // no end: the body stays open
  const response = await client(t, up.url).request(call());
  const reason = new Error('the client left');
  const { got, sink, done } = recorder(() => response.body.destroy(reason));
  response.body.read(sink);
  await done;
  t.same(got.chunks, ['a'], 'nothing after the destroy');
  t.same(got.errors, [reason]);
  await up.closed;
  t.pass('the upstream connection was closed');
  response.body.destroy(new Error('again'));
  t.equal(got.errors.length, 1, 'a second destroy is a no-op');
});

t.test('the signal: before the headers the request fails with its reason; after them the body does', async (t) => {
  const early = new AbortController();
  const reason = new Error('deadline');
  early.abort(reason);
  const up = await upstream(t, HEAD + chunked('a'));
  await t.rejects(client(t, up.url).request(call(early.signal)), reason);

  const late = new AbortController();
  const response = await client(t, up.url).request(call(late.signal));
  const { got, sink, done } = recorder(() => late.abort(reason));
  response.body.read(sink);
  await done;
  t.same(got.errors, [reason]);
});

t.test('readAll(maxBytes) stops at maxBytes and lets the connection go', async (t) => {
  const up = await upstream(t, HEAD + chunked('x'.repeat(1000), 'y'.repeat(1000))); // no end
  const response = await client(t, up.url).request(call());
  const bytes = await response.body.readAll(1500);
  t.equal(bytes.length, 2000, 'the chunks read up to the bound, whole');
  await up.closed;
  const full = await upstream(t, HEAD + chunked('{"ok":', 'true}') + END);
  const whole = await client(t, full.url).request(call());
  t.equal((await whole.body.readAll(1 << 20)).toString(), '{"ok":true}');
});

/**
 * Resolves when undici has finished a request to `url`, completed or failed (its diagnostics channels, which are
 * global: a late event of an earlier test's request to another upstream does not count).
 */
function whenUndiciDone(url: string): Promise<void> {
  const origin = new URL(url).origin;
  return new Promise((resolve) => {
    const done = (message: unknown): void => {
      if (String((message as { request?: { origin?: unknown } }).request?.origin) !== origin) return;
      unsubscribe('undici:request:trailers', done);
      unsubscribe('undici:request:error', done);
      resolve();
    };
    subscribe('undici:request:trailers', done);
    subscribe('undici:request:error', done);
  });
}

// undici issue #5360 (worker/upstream/undici-fix.ts): undici 7 asserted its HTTP/1.1 parser is not paused when a
// connection that closes after the answer (`Connection: close`, HTTP/1.0, or a body that ends with the connection) is
// reset or ends; the AssertionError is thrown from a socket listener and kills the worker. A paused reader pauses the
// parser at once on a chunked answer, after 64 KiB on any other; these clients pause it at once on every answer, so
// each case below has it paused before the upstream's reset or end, as a client 64 KiB behind has in the worker.
// Without patches/undici+7.30.2.patch they throw (an uncaught exception fails this test). A reset or an end ends a
// body delimited by the connection's end; a chunked or Content-Length one cut short fails.
t.test('the installed undici has the fix (npm ci applies patches/ in its postinstall)', async (t) => {
  t.ok(UNDICI_FINISHES_PAUSED_PARSERS);
  // What the check tells apart: 7.30.2 as released, its 7.x backport branch (#5474 without #5389, which still throws),
  // and both fixes.
  const finish = (asserts: string, body: string): string =>
    `  finish () {\n    assert(currentParser === null)\n${asserts}\n    const { llhttp } = this\n${body}\n  }\n`;
  const drain = '    // ... Backpressure is advisory here: onData keeps buffering ...\n    if (this.paused) {}';
  t.notOk(finishesPausedParsers(finish('    assert(!this.paused)', '')), 'as released');
  t.notOk(finishesPausedParsers(finish('    assert(!this.paused)', drain)), 'the backport branch');
  t.ok(finishesPausedParsers(finish('', drain)), 'both');
  t.notOk(finishesPausedParsers('module.exports = {}'), 'no finish() found');
});

const BOTH = ['reset', 'end'] as const;
const RESET = ['reset'] as const;
for (const [name, head, hows] of [
  // Chunked: the parser pauses after a chunk's data, before its CRLF, so an end waits in the socket behind that CRLF
  // until the parser reads on (not a case here); a reset reaches undici at once.
  ['a chunked answer on a kept-alive connection', HEAD + chunked('data: 1\n\n'), RESET],
  ['Connection: close', HEAD.replace('\r\n\r\n', '\r\nconnection: close\r\n\r\n') + chunked('data: 1\n\n'), RESET],
  [
    'a body that ends with the connection',
    'HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n\r\ndata: 1\n\n',
    BOTH,
  ],
  [
    'Content-Length and Connection: close',
    'HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 99\r\n\r\n{}',
    BOTH,
  ],
  ['HTTP/1.0 with a Content-Length', 'HTTP/1.0 200 OK\r\ncontent-length: 99\r\n\r\n{}', BOTH],
] as const) {
  for (const how of hows) {
    t.test(`${name}: the upstream's ${how} under a paused reader, nothing throws and the reader is told`, async (t) => {
      const up = await upstream(t, head);
      const response = await client(t, up.url, 0).request(call());
      let isPausing = true;
      const { got, sink, first, done } = recorder(() => {
        if (isPausing) response.body.pause();
      });
      let closes = 0;
      response.body.onClose(() => closes++);
      response.body.read(sink);
      await first;
      const undiciDone = whenUndiciDone(up.url);
      for (const socket of up.sockets) {
        if (how === 'reset') socket.resetAndDestroy();
        else socket.end();
      }
      await undiciDone; // the upstream's reset or end reached undici while the reader was paused
      isPausing = false;
      response.body.resume();
      await done;
      t.equal(got.ended + got.errors.length, 1, `told once: ${got.ended === 1 ? 'the end' : String(got.errors[0])}`);
      t.equal(closes, 1, 'closed once');
    });
  }
}

// #5360's reproduction: a whole answer, read by nobody, then the connection's end. undici completes the answer on
// its end (without the fix: the AssertionError); the reader that starts then gets every byte. 16 KiB, so the answer
// is parsed in one read and the end comes with nothing left in the socket.
const BODY = 16 * 1024;
for (const [name, head] of [
  ['Content-Length and Connection: close', `HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: ${BODY}\r\n\r\n`],
  ['HTTP/1.0 with a Content-Length', `HTTP/1.0 200 OK\r\ncontent-length: ${BODY}\r\n\r\n`],
  ['a body that ends with the connection', 'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\r\n'],
] as const) {
  t.test(`${name}: the whole answer, then the upstream's end, before the reader starts`, async (t) => {
    const up = await upstream(t, head + 'x'.repeat(BODY));
    const undiciDone = whenUndiciDone(up.url);
    const response = await client(t, up.url, 0).request(call());
    for (const socket of up.sockets) socket.end();
    await undiciDone;
    t.equal((await response.body.readAll(1 << 20)).length, BODY, 'every byte, then the end');
  });
}

// A review's finding: a reader paused on the last chunk of a Content-Length answer paused undici's parser before it
// marked the answer complete; the upstream's keep-alive timeout then closed the idle connection, and undici failed
// the whole answer ("other side closed"), every byte of it received. The completing chunk no longer pauses it.
t.test(
  'a Content-Length answer whose last chunk reached a paused reader survives its connection closing',
  async (t) => {
    const up = await upstream(
      t,
      'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 11\r\n\r\n{"ok":true}',
    );
    const response = await client(t, up.url, 0).request(call());
    let isPausing = true;
    const { got, sink, first, done } = recorder(() => {
      if (isPausing) response.body.pause();
    });
    response.body.read(sink);
    await first;
    for (const socket of up.sockets) socket.end(); // the upstream's keep-alive timeout, while the reader is paused
    await up.closed; // undici had the end and closed its side
    isPausing = false;
    response.body.resume();
    await done;
    t.same(got.chunks, ['{"ok":true}']);
    t.equal(got.ended, 1, 'the end');
    t.same(got.errors, [], 'no error');
  },
);

t.test('a reader that starts after a destroy is told, not left waiting', async (t) => {
  const up = await upstream(t, HEAD + chunked('a')); // no end
  const signal = new AbortController();
  const response = await client(t, up.url).request(call(signal.signal));
  const reason = new Error('the client left');
  signal.abort(reason);
  await t.rejects(response.body.readAll(100), reason);
  const other = await client(t, up.url).request(call());
  other.body.destroy();
  await t.rejects(other.body.readAll(100), /destroyed/);
});

t.test('many small chunks held for a paused reader are given in order, with no shift() through them', async (t) => {
  // A probe: a paused reader's read-ahead (64 KiB) held as one-byte reads was 65,536 chunks, and shift() took them out
  // one by one, each copying the rest: 4.6 s of the worker's loop. An upstream here writes a Content-Length answer a
  // byte a write; the reader pauses at its first chunk and resumes once all the rest is held. Counted, not timed.
  const size = 20_000;
  const bytes = Array.from({ length: size }, (_, i) => String.fromCharCode(97 + (i % 26))).join('');
  const sockets = new Set<Socket>();
  const server = createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.once('data', () => {
      socket.setNoDelay(true);
      socket.write(`HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: ${size}\r\n\r\n`);
      let at = 0;
      const next = (): void => {
        if (at === size || socket.destroyed) return;
        socket.write(bytes[at++]!);
        setImmediate(next);
      };
      next();
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const response = await client(t, url).request(call());
  let isPausing = true;
  const { got, sink, first, done } = recorder(() => {
    if (isPausing) response.body.pause();
  });
  response.body.read(sink);
  await first;
  const held = got.chunks.join('').length;
  await pollUntil(
    async () => response.body.heldBytes,
    (n) => n === size - held,
    'the rest held for the paused reader',
  );
  const shifts = watchShift(t);
  isPausing = false;
  response.body.resume(); // gives every held chunk at once
  const longest = shifts.stop();
  await done;
  t.equal(got.chunks.join(''), bytes, 'every byte, in order');
  t.equal(got.ended, 1);
  t.equal(longest, 0, `no shift() (the held chunks: ${got.chunks.length - 1})`);
});
