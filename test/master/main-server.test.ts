import t from 'tap';
import { clientErrorResponse, keepAliveTimeoutFor, rawErrorResponse } from '../../master/main-server.js';
import { MAX_TIMER_MS, NODE_KEEP_ALIVE_BUFFER_MS } from '../../shared/defaults.js';

// What Node's parser refuses → the OpenAI-shaped answer (issue 9 part 7).

const LIMITS = { maxUrlBytes: 100, headTimeoutMs: 60_000 };

function error(code: string, rawPacket?: string): NodeJS.ErrnoException & { rawPacket?: Buffer } {
  const err = new Error(code) as NodeJS.ErrnoException & { rawPacket?: Buffer };
  err.code = code;
  if (rawPacket !== undefined) err.rawPacket = Buffer.from(rawPacket);
  return err;
}

t.test('clientErrorResponse', async (t) => {
  t.equal(clientErrorResponse(error('HPE_HEADER_OVERFLOW', 'GET / HTTP/1.1\r\nX: yyyy'), LIMITS)?.status, 431);
  t.equal(
    clientErrorResponse(error('HPE_HEADER_OVERFLOW', `GET /${'a'.repeat(200)} HTTP/1.1\r\n`), LIMITS)?.status,
    414,
    'a long request line',
  );
  t.equal(
    clientErrorResponse(error('HPE_HEADER_OVERFLOW', `GET /${'a'.repeat(200)}`), LIMITS)?.status,
    414,
    'cut before its end',
  );
  t.equal(clientErrorResponse(error('HPE_INVALID_METHOD'), LIMITS)?.body.error.code, 'invalid_request');
  t.equal(clientErrorResponse(error('ERR_HTTP_REQUEST_TIMEOUT'), LIMITS)?.status, 408);
  t.equal(clientErrorResponse(error('ECONNRESET'), LIMITS), undefined, 'a reset socket gets nothing');
});

t.test('clientErrorResponse: a header overflow is 414 only when the request target is over maxUrlBytes', async (t) => {
  // The target's bytes, not the line's: a target of exactly maxUrlBytes is served (gateway.ts), so its overflow is
  // the headers'. With no line end, the rest of the packet is target.
  const line = (bytes: number): string => `GET /${'a'.repeat(bytes - 1)}`;
  const cases = [
    { packet: line(100), status: 431 },
    { packet: line(101), status: 414 },
    { packet: `${line(100)} HTTP/1.1\r\nX: ${'y'.repeat(200)}`, status: 431 },
    { packet: `${line(101)} HTTP/1.1\r\nX: y`, status: 414 },
  ];
  for (const { packet, status } of cases) {
    const bytes = packet.split('\r\n')[0]!.split(' ')[1]!.length;
    const answer = clientErrorResponse(error('HPE_HEADER_OVERFLOW', packet), LIMITS);
    t.equal(answer?.status, status, `a ${bytes}-byte target${packet.includes('\r\n') ? '' : ' with no line end'}`);
  }
});

t.test('rawErrorResponse is a whole HTTP/1.1 response', async (t) => {
  const text = rawErrorResponse({
    code: 'headers_too_large',
    status: 431,
    headers: { 'retry-after': '1' },
    body: { error: { message: 'm', type: 'invalid_request_error', code: 'headers_too_large' } },
  });
  const [head, body] = text.split('\r\n\r\n');
  t.match(head, /^HTTP\/1\.1 431 Request Header Fields Too Large\r\n/);
  t.match(head, /content-type: application\/json/);
  t.match(head, /connection: close/);
  t.match(head, /retry-after: 1/);
  t.match(head, new RegExp(`content-length: ${Buffer.byteLength(body!)}`));
  t.same(JSON.parse(body!), { error: { message: 'm', type: 'invalid_request_error', code: 'headers_too_large' } });
});

t.test("keepAliveTimeoutFor: node's socket timer, 1 s past it, stays within node's timer limit", async (t) => {
  t.equal(keepAliveTimeoutFor({ keepAliveTimeoutMs: 75_000 }), 75_000);
  t.equal(keepAliveTimeoutFor({ keepAliveTimeoutMs: MAX_TIMER_MS }) + NODE_KEEP_ALIVE_BUFFER_MS, MAX_TIMER_MS);
});
