import { subscribe, unsubscribe } from 'node:diagnostics_channel';
import { once } from 'node:events';
import type { Http2ServerResponse, ServerHttp2Stream } from 'node:http2';
import t from 'tap';
import type { Teardown } from '../../helpers/gateway.js';
import { startH2Upstream, TEST_CERT } from '../../helpers/h2-upstream.js';
import type { UpstreamClient } from '../../../worker/upstream/client.js';
import { testUpstreamClient } from '../fixtures/upstream-client.js';
import type { BodySink, UpstreamBody } from '../../../worker/upstream/upstream-body.js';

// Issue 10: the upstream body over HTTP/2, the protocol undici speaks to an https upstream that offers it (the
// hosted APIs do): undici's HTTP/2 client pauses the response stream when the reader pauses (HTTP/2 flow control
// holds the upstream back), aborts it with RST_STREAM, and completes an answer at its trailers
// (test/helpers/h2-upstream.ts).

/** An upstream answering every request with `answer(res)`; the streams it answered on, for the test. */
async function upstream(
  t: Teardown,
  answer: (res: Http2ServerResponse) => void,
): Promise<{ url: string; streams: ServerHttp2Stream[] }> {
  const streams: ServerHttp2Stream[] = [];
  const url = await startH2Upstream(t, (req, res) => {
    streams.push(res.stream);
    req.resume();
    req.on('end', () => answer(res));
  });
  return { url, streams };
}

/** `readAheadBytes` 0: the stream is paused at once, as it is once 64 KiB are held. */
const client = (t: Teardown, url: string, readAheadBytes?: number): UpstreamClient =>
  testUpstreamClient(t, url, {
    ca: TEST_CERT,
    http2: true,
    ...(readAheadBytes === undefined ? {} : { readAheadBytes }),
  });

const call = () => ({ path: '/x', headers: {}, body: Buffer.from('{}'), signal: new AbortController().signal });

/**
 * Reads `body` pausing at every chunk and resuming on the next turn (a client slower than the upstream), or acting
 * on the body from inside its first chunk; resolves with what it got.
 */
function read(
  body: UpstreamBody,
  onFirst?: () => void,
): Promise<{ bytes: number; chunks: number; ended: number; errors: unknown[] }> {
  const got = { bytes: 0, chunks: 0, ended: 0, errors: [] as unknown[] };
  return new Promise((resolve) => {
    const sink: BodySink = {
      data(chunk) {
        got.bytes += chunk.length;
        if (got.chunks++ === 0 && onFirst !== undefined) return onFirst();
        body.pause();
        setImmediate(() => body.resume());
      },
      end() {
        got.ended++;
        resolve(got);
      },
      error(err) {
        got.errors.push(err);
        resolve(got);
      },
    };
    body.read(sink);
  });
}

t.test(
  'a long answer over HTTP/2 to a reader that pauses at every chunk: every byte, in order, then the end',
  async (t) => {
    const CHUNKS = 400;
    const up = await upstream(t, (res) => {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      let n = 0;
      const write = (): void => {
        while (n < CHUNKS) if (!res.write(`data: ${String(n++).padStart(4, '0')}${'x'.repeat(4084)}\n\n`)) return;
        res.end();
      };
      res.on('drain', write);
      write();
    });
    const response = await client(t, up.url).request(call());
    t.equal(response.statusCode, 200);
    const got = await read(response.body);
    t.equal(got.bytes, CHUNKS * 4096, 'every byte');
    t.equal(got.ended, 1, 'then the end, once');
    t.same(got.errors, []);
  },
);

t.test('destroy() over HTTP/2 resets the stream: the upstream has it closed, the reader is told', async (t) => {
  const up = await upstream(t, (res) => {
    res.writeHead(200, { 'content-type': 'text/event-stream' });
    res.write('data: 1\n\n'); // and never ends
  });
  const response = await client(t, up.url).request(call());
  const reason = new Error('the client left');
  const got = await read(response.body, () => response.body.destroy(reason));
  t.same(got.errors, [reason]);
  const stream = up.streams[0]!;
  if (!stream.closed) await once(stream, 'close');
  // It never ended its answer: closed is reset (RST_STREAM; undici 7 sends NO_ERROR, 8 CANCEL).
  t.ok(stream.closed, `the upstream's stream was closed (RST_STREAM code ${stream.rstCode})`);
});

// A review's finding: undici's HTTP/2 client completes an answer at its trailers and leaves a paused stream paused,
// so the request never finished and held its slot; a completed body resumes it. undici also drops the DATA a paused
// stream had buffered when its trailers come (so an HTTP/2 answer is read 64 KiB ahead before its stream is paused):
// with the stream paused at once, what the reader gets of such an answer is undici's to fix, not asserted here.
const withTrailers = (res: Http2ServerResponse): void => {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write('data: a\n\n');
  res.write('data: b\n\n');
  res.addTrailers({ 'x-done': '1' });
  res.end();
};
for (const readAhead of [undefined, 0]) {
  const how = readAhead === undefined ? 'read ahead as the worker does' : 'its stream paused at once';
  t.test(`an answer that ends with trailers, ${how}, ends its request: the pool closes after it`, async (t) => {
    const up = await upstream(t, withTrailers);
    const c = client(t, up.url, readAhead);
    const response = await c.request(call());
    // The reader pauses at the first chunk and stays paused until undici has had the trailers.
    const completed = new Promise<void>((resolve) => {
      const done = (message: unknown): void => {
        if (String((message as { request?: { origin?: unknown } }).request?.origin) !== up.url) return;
        unsubscribe('undici:request:trailers', done);
        resolve();
      };
      subscribe('undici:request:trailers', done);
    });
    const reading = read(response.body, () => response.body.pause());
    await completed;
    response.body.resume();
    const got = await reading;
    if (readAhead === undefined) t.equal(got.bytes, 18, 'every byte');
    t.equal(got.ended, 1, 'the end, once');
    t.same(got.errors, []);
    await c.close(); // waits for every request the pool runs: one that never finished would hold it (test timeout)
    t.pass('the pool closed');
  });
}
