import t from 'tap';
import { once } from 'node:events';
import { startGateway, TEST_WORKER_ENTRY, type Gateway } from '../helpers/gateway.js';
import { openRaw } from '../helpers/raw-http.js';
import { scrape } from '../helpers/metrics.js';

// SPEC §4a: what Node's parser reports about the request whose body the gateway is reading is acted on at
// once, not after bodyTimeoutMs (60 s here, so a test that waited for it would time out): a client that
// closes mid-body gives its budget back, a malformed chunk is a 400.

/** The master's access-log line of `reqId`, once written. */
async function accessLine(gw: Gateway, reqId: string): Promise<Record<string, unknown>> {
  const find = (): string | undefined =>
    gw
      .output()
      .split('\n')
      .find((l) => l.includes(`"reqId":"${reqId}"`) && l.includes('"msg":"request"'));
  while (find() === undefined) await once(gw.child.stdout!, 'data');
  return JSON.parse(find()!) as Record<string, unknown>;
}

t.test('errors in the body being read', async (t) => {
  const gw = await startGateway(
    t,
    { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } }, limits: { bodyTimeoutMs: 60_000 } },
    { env: { LOG_LEVEL: 'info' } },
  );

  t.test('a client that closes in the middle of its body: the request ends now', async (t) => {
    const conn = await openRaw(gw.url, ['POST']);
    conn.write('POST /echo HTTP/1.1\r\nHost: gw\r\nX-Request-Id: eof-1\r\nContent-Length: 100000\r\n\r\n');
    conn.write('x'.repeat(50_000));
    conn.socket.end(); // FIN mid-body: Node reports HPE_INVALID_EOF_STATE and leaves the socket open
    const line = await accessLine(gw, 'eof-1');
    t.equal(line['aborted'], true, 'ended as a client that left');
    t.not(line['error'], 'body_timeout', 'not after bodyTimeoutMs');
    t.equal((await scrape(gw)).sum('graygate_buffered_body_bytes'), 0, 'its bytes left the budget');
  });

  t.test('a malformed chunk in the body being read: 400 now, in the OpenAI shape', async (t) => {
    const conn = await openRaw(gw.url, ['POST']);
    conn.write(
      'POST /echo HTTP/1.1\r\nHost: gw\r\nX-Request-Id: chunk-1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\nzz\r\n',
    );
    const [res] = await conn.waitFor(1);
    t.equal(res!.status, 400);
    t.match(res!.body, /"code":"invalid_request"/);
    t.match(res!.body, /malformed request body/);
    t.equal(res!.headers['connection'], 'close');
    conn.socket.destroy();
  });

  t.test('a malformed chunk in the body of a request pipelined behind another: 400 at its turn', async (t) => {
    // The parser fails while the first request owns the connection; the second's body bytes never come. It waited
    // bodyTimeoutMs (60 s here: the test would time out) for them and got a 408 (a helper's repro).
    const conn = await openRaw(gw.url, ['GET', 'POST']);
    conn.write(
      'GET /sse?events=3&ms=20 HTTP/1.1\r\nHost: gw\r\n\r\n' +
        'POST /echo HTTP/1.1\r\nHost: gw\r\nX-Request-Id: chunk-2\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n',
    );
    const [first, second] = await conn.waitFor(2);
    t.equal(first!.status, 200, 'the first is answered whole');
    t.match(first!.body, /\[DONE\]/);
    t.equal(second!.status, 400);
    t.match(second!.body, /malformed request body \(HPE_INVALID_CHUNK_SIZE\)/);
    t.equal(second!.headers['connection'], 'close');
    t.match(await accessLine(gw, 'chunk-2'), { status: 400, error: 'invalid_request' }, 'with its access-log line');
    conn.socket.destroy();
  });
});
