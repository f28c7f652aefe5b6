import t from 'tap';
import { once } from 'node:events';
import { request, type IncomingMessage } from 'node:http';
import { startGateway, type Gateway } from '../helpers/gateway.js';
import { startMockUpstream, BASE_PATHS, type MockStream } from '../../shared/mock-upstream/index.js';
import { chatBody } from '../worker/fixtures/sse-client.js';

// Issue 3 part 6: a client that stops reading makes the worker stop reading
// the upstream. The upstream answer is ~50 MB; the client reads nothing past
// the headers for a while, then reads to the end.
// The bound we state and assert: the worker never holds more than 256 KiB for
// the stream: unsent output (res.writableLength, ≤ the 16 KiB high-water mark
// plus one upstream chunk converted) plus unread upstream body (one chunk: a
// paused reader pauses undici's parser, worker/upstream/upstream-body.ts;
// 64 KiB more with undici's request() stream before). It is measured by the
// worker itself and read from its request log line (SPEC §9).
// What the upstream manages to write before it is held back is only reported,
// not asserted: it is dominated by kernel socket buffers on three loopback
// hops, which autotune up to net.ipv4.tcp_rmem max (32 MiB here) each.

const TOKENS = 32 * 1024;
const TOKEN_CHARS = 1024;
const MAX_WORKER_BUFFERED_BYTES = 256 * 1024;
// How long the upstream must stay blocked before we call it stopped. Only the
// moment of measuring depends on it, never the verdict: an upstream that is
// not held back writes all 32 MiB and fails the bound whenever we look.
const QUIET_MS = 300;

/**
 * Resolves with bytesWritten once the mock stream has been blocked (write
 * returned false) for QUIET_MS without a drain, or finished.
 */
async function whenStopped(stream: MockStream): Promise<number> {
  for (;;) {
    if (stream.isClosed || stream.isComplete) return stream.bytesWritten;
    // Each turn's losing once() listeners are taken off (the signal), or they pile up on the stream,
    // one set per drain: MaxListenersExceededWarning.
    const turn = new AbortController();
    const { signal } = turn;
    const next = (event: 'blocked' | 'drain' | 'close'): Promise<typeof event> =>
      once(stream, event, { signal }).then(
        () => event,
        (err: unknown) => {
          if (signal.aborted) return event; // this turn is over: nobody is waiting for it
          throw err;
        },
      );
    try {
      if (!stream.isBlocked) await Promise.race([next('blocked'), next('close')]);
      let timer: NodeJS.Timeout | undefined;
      const quiet = new Promise<'quiet'>((resolve) => (timer = setTimeout(resolve, QUIET_MS, 'quiet')));
      const outcome = await Promise.race([quiet, next('drain'), next('close')]);
      clearTimeout(timer);
      if (outcome !== 'drain') return stream.bytesWritten;
    } finally {
      turn.abort();
    }
  }
}

t.test('a client that stops reading holds the upstream back', async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const gw = await startGateway(
    t,
    { versions: { v1: { weight: 1, upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } } } },
    { env: { LOG_LEVEL: 'info' } },
  );

  const upstream = once(mock.events, 'stream').then(([s]) => s as MockStream);
  const payload = JSON.stringify(chatBody(`[mock tokens=${TOKENS} token-size=${TOKEN_CHARS}]`));
  const req = request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/json', 'x-request-id': 'backpressure-1' },
  });
  t.teardown(() => req.destroy());
  req.end(payload);
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  t.equal(res.statusCode, 200);
  res.pause(); // read nothing more

  const stream = await upstream;
  const written = await whenStopped(stream);
  t.notOk(stream.isComplete, 'the upstream could not finish while the client was not reading');
  t.comment(`the upstream wrote ${(written / 1048576).toFixed(2)} MiB before being held back`);

  // Read on: the whole answer arrives intact.
  let bytes = 0;
  let tail = '';
  let tokens = 0;
  res.setEncoding('utf8');
  res.on('data', (text: string) => {
    bytes += Buffer.byteLength(text);
    const joined = tail + text;
    const parts = joined.split('\n\n');
    tail = parts.pop()!;
    for (const part of parts) if (part.includes('"content":"') && !part.includes('"content":""')) tokens++;
  });
  res.resume();
  await once(res, 'end');
  t.equal(tokens, TOKENS, 'every token arrived');
  t.ok(bytes > TOKENS * TOKEN_CHARS, `${bytes} bytes read`);

  // The worker's own request log line (SPEC §9) reports what it buffered.
  await t.resolves(waitForLine(gw, 'backpressure-1'));
  const line = JSON.parse(
    gw
      .output()
      .split('\n')
      .find((l) => l.includes('"reqId":"backpressure-1"') && l.includes('request finished'))!,
  ) as { peakBufferedBytes: number; upstreamBytes: number; tokens: number };
  t.ok(
    line.peakBufferedBytes <= MAX_WORKER_BUFFERED_BYTES,
    `worker held at most ${line.peakBufferedBytes} B for the stream (bound ${MAX_WORKER_BUFFERED_BYTES} B)`,
  );
  t.ok(line.upstreamBytes >= bytes * 0.5, 'and it did read the whole answer from the upstream');
  t.equal(line.tokens, TOKENS);
});

/** The master collects its workers' stdout; wait until the line is there (it is written when the response ends). */
async function waitForLine(gw: Gateway, reqId: string): Promise<void> {
  while (
    !gw
      .output()
      .split('\n')
      .some((l) => l.includes(`"reqId":"${reqId}"`) && l.includes('request finished'))
  ) {
    await once(gw.child.stdout!, 'data');
  }
}

t.test('a client that reads nothing for sendTimeoutMs is cut, and so is its upstream call', async (t) => {
  // nginx send_timeout: without it such a client held its worker slot and its upstream call for as long as it
  // kept the connection open (a few hundred idle sockets locked a version out).
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const gw = await startGateway(
    t,
    {
      versions: { v1: { weight: 1, upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } } },
      limits: { sendTimeoutMs: 500 },
    },
    { env: { LOG_LEVEL: 'info' } },
  );
  const upstream = once(mock.events, 'stream').then(([s]) => s as MockStream);
  const req = request(`${gw.url}/v1/chat/completions`, {
    method: 'POST',
    agent: false,
    headers: { 'content-type': 'application/json', 'x-request-id': 'send-timeout-1' },
  });
  t.teardown(() => req.destroy());
  req.end(JSON.stringify(chatBody(`[mock tokens=${TOKENS} token-size=${TOKEN_CHARS}]`)));
  const [res] = (await once(req, 'response')) as [IncomingMessage];
  t.equal(res.statusCode, 200);
  res.pause(); // read nothing more, ever
  const stream = await upstream;
  if (!stream.isClosed) await once(stream, 'close');
  t.notOk(stream.isComplete, 'the upstream call was cut before its end');
  const masterLine = (): string | undefined =>
    gw
      .output()
      .split('\n')
      .find((l) => l.includes('"reqId":"send-timeout-1"') && l.includes('"msg":"request"'));
  while (masterLine() === undefined) await once(gw.child.stdout!, 'data');
  t.match(masterLine(), /"error":"send_timeout"/, 'the master logged why');
});
