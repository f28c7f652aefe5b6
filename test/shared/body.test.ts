import t from 'tap';
import { createServer, request, type IncomingMessage } from 'node:http';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { readBody, hasBody, declaredLength } from '../../shared/body.js';
import { ByteBudget } from '../../shared/byte-budget.js';
import type { Teardown } from '../helpers/gateway.js';

// The one bounded body reader (issue 9), over real loopback sockets.

async function withServer(
  t: Teardown,
  onRequest: (req: IncomingMessage) => Promise<unknown>,
): Promise<(send: (port: number) => void) => Promise<unknown>> {
  let result: Promise<unknown> | undefined;
  const server = createServer((req, res) => {
    result = onRequest(req).then(
      (v) => (res.end('ok'), v),
      (err: unknown) => (res.writeHead(500, { connection: 'close' }).end(), Promise.reject(err)),
    );
    result.catch(() => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const port = (server.address() as AddressInfo).port;
  return async (send) => {
    send(port);
    while (result === undefined) await new Promise((r) => setImmediate(r));
    return result;
  };
}

t.test('hasBody and declaredLength', async (t) => {
  t.equal(hasBody({ headers: {} }), false);
  t.equal(hasBody({ headers: { 'content-length': '0' } }), false);
  t.equal(hasBody({ headers: { 'content-length': '3' } }), true);
  t.equal(hasBody({ headers: { 'transfer-encoding': 'chunked' } }), true);
  t.equal(declaredLength({ headers: { 'content-length': '12' } }), 12);
  t.equal(declaredLength({ headers: {} }), undefined);
  // Over 2^53: Node still frames a body by it; "no body" let 200 MiB through a 1 MiB limit, unseen.
  t.equal(hasBody({ headers: { 'content-length': '9007199254740993' } }), true);
  t.ok(declaredLength({ headers: { 'content-length': '9007199254740993' } })! >= 2 ** 53);
});

t.test('reads a chunked body and a sized one; the budget holds what was read', async (t) => {
  const budget = new ByteBudget(1000);
  const run = await withServer(t, (req) => readBody(req, { maxBytes: 100, idleTimeoutMs: 5000, budget }));
  const chunked = await run((port) => {
    const req = request({ port, method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => res.resume());
    req.write('hello ');
    req.end('world');
  });
  t.equal((chunked as Buffer).toString(), 'hello world');
  t.equal(budget.heldBytes, 11, 'the caller owns the reservation of what it read');
});

t.test('over maxBytes: 413 before reading when declared, at the crossing when chunked; budget returned', async (t) => {
  const budget = new ByteBudget(1000);
  const run = await withServer(t, (req) => readBody(req, { maxBytes: 10, idleTimeoutMs: 5000, budget }));
  await t.rejects(
    run((port) =>
      request({ port, method: 'POST', headers: { 'content-length': '50' } })
        .on('error', () => undefined)
        .end('x'.repeat(50)),
    ),
    { code: 'body_too_large' },
  );
  t.equal(budget.heldBytes, 0);
});

t.test('a chunked body of exactly maxBytes is read; one byte more is 413', async (t) => {
  const chunked = { 'transfer-encoding': 'chunked' };
  for (const [size, outcome] of [
    [10, 'read'],
    [11, 'body_too_large'],
  ] as const) {
    const run = await withServer(t, (req) => readBody(req, { maxBytes: 10, idleTimeoutMs: 5000 }));
    const result = run((port) => {
      const req = request({ port, method: 'POST', headers: chunked }, (res) => res.resume());
      req.on('error', () => undefined);
      req.write('x'.repeat(5));
      req.end('x'.repeat(size - 5));
    });
    if (outcome === 'read') t.equal(((await result) as Buffer).length, 10, `${size} bytes`);
    else await t.rejects(result, { code: outcome }, `${size} bytes`);
  }
});

t.test('the idle timeout is per gap, not per body: a slow, steady body is read whole', async (t) => {
  // Each gap ~300 ms, a tenth of the timeout; the body takes one and a half timeouts in all.
  const idleTimeoutMs = 3000;
  const run = await withServer(t, (req) => readBody(req, { maxBytes: 1000, idleTimeoutMs }));
  let sent = 0;
  const body = await run((port) => {
    const req = request({ port, method: 'POST', headers: { 'transfer-encoding': 'chunked' } }, (res) => res.resume());
    req.on('error', () => undefined);
    const start = performance.now();
    const tick = setInterval(() => {
      req.write('x');
      sent++;
      if (performance.now() - start < 1.5 * idleTimeoutMs) return;
      clearInterval(tick);
      req.end();
    }, 300);
    t.teardown(() => clearInterval(tick));
  });
  t.equal((body as Buffer).length, sent, 'every byte');
});

t.test('silence: 408 body_timeout', async (t) => {
  const run = await withServer(t, (req) => readBody(req, { maxBytes: 100, idleTimeoutMs: 100 }));
  await t.rejects(
    run((port) => {
      const req = request({ port, method: 'POST', headers: { 'content-length': '20' } });
      req.on('error', () => undefined);
      req.write('12345');
    }),
    { code: 'body_timeout' },
  );
});

t.test('over the budget: 503 body_budget with Retry-After', async (t) => {
  const budget = new ByteBudget(10);
  const run = await withServer(t, (req) => readBody(req, { maxBytes: 100, idleTimeoutMs: 5000, budget }));
  await t.rejects(
    run((port) =>
      request({ port, method: 'POST', headers: { 'content-length': '20' } })
        .on('error', () => undefined)
        .end('x'.repeat(20)),
    ),
    { code: 'body_budget', status: 503, retryAfterS: 1 },
  );
  t.equal(budget.heldBytes, 0);
});

t.test('a declared length reserves nothing until its bytes arrive: a silent client holds no budget', async (t) => {
  // Reserved from Content-Length, four connections declaring 1 MiB and sending a byte now and then held a 4 MiB
  // budget, and every other body got 503 body_budget.
  const budget = new ByteBudget(10);
  const run = await withServer(t, (req) => {
    readBody(req, { maxBytes: 100, idleTimeoutMs: 5000, budget }).catch(() => undefined);
    const atHead = budget.heldBytes;
    return new Promise((resolve) => req.once('data', () => setImmediate(() => resolve([atHead, budget.heldBytes]))));
  });
  const held = await run((port) => {
    const req = request({ port, method: 'POST', headers: { 'content-length': '20' } });
    req.on('error', () => undefined);
    req.write('12345');
  });
  t.same(held, [0, 5], 'nothing at the head, then what arrived');
});

t.test('an aborted signal rejects with its reason', async (t) => {
  const controller = new AbortController();
  const run = await withServer(t, (req) => {
    const p = readBody(req, { maxBytes: 100, idleTimeoutMs: 5000, signal: controller.signal });
    controller.abort(new Error('client left'));
    return p;
  });
  await t.rejects(
    run((port) => {
      const req = request({ port, method: 'POST', headers: { 'content-length': '20' } });
      req.on('error', () => undefined);
      req.write('1');
    }),
    { message: 'client left' },
  );
});

t.test('ownMemory: sized and chunked bodies own their ArrayBuffer (they can move to another thread)', async (t) => {
  for (const headers of [{ 'content-length': '11' }, { 'transfer-encoding': 'chunked' }]) {
    const run = await withServer(t, (req) => readBody(req, { maxBytes: 100, idleTimeoutMs: 0, ownMemory: true }));
    const body = (await run((port) => {
      const req = request({ port, method: 'POST', headers }, (res) => res.resume());
      req.end('hello world');
    })) as Buffer;
    t.equal(body.toString(), 'hello world', Object.keys(headers)[0]!);
    t.equal(body.byteOffset, 0, 'not a slice of a shared pool');
    t.equal(body.buffer.byteLength, body.length, 'the whole ArrayBuffer is the body');
  }
});
