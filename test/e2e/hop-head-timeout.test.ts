import t, { type Test } from 'tap';
import { startGateway, TEST_WORKER_ENTRY, type Gateway } from '../helpers/gateway.js';
import { openRaw, rawRequest } from '../helpers/raw-http.js';
import { untilOutput, untilOutputHas } from '../helpers/output.js';
import { scrape } from '../helpers/metrics.js';
import { pollPause, waitForStatus } from '../helpers/wait.js';
import { readFile } from 'node:fs/promises';

// SPEC §4a, limits.headTimeoutMs (nginx client_header_timeout): a connection that sends no whole request head in
// time is closed, with a 408. Turning Node's whole-request deadline off (requestTimeout: 0,
// for long streams) had turned its head deadline off too: a silent connection, or one sending half a head, was held
// for good, and enough of them took every descriptor of the master (a helper's slowloris, 200 of 200 still open
// after 75 s). Each wait below is for the server's close, which never came on the old code.

t.test('a connection that sends no whole request head within headTimeoutMs is closed', async (t) => {
  const gw = await startGateway(
    t,
    { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } }, limits: { headTimeoutMs: 1000 } },
    { env: { LOG_LEVEL: 'info' } },
  );
  const silent = await openRaw(gw.url);
  const halfLine = await openRaw(gw.url);
  halfLine.write('POST /v1/chat/compl');
  const halfHead = await openRaw(gw.url);
  halfHead.write('GET /slow HTTP/1.1\r\nHost: gw\r\nX-Slow: 1\r\n');
  for (const c of [silent, halfLine, halfHead]) t.teardown(() => c.socket.destroy());

  // Meanwhile a whole request is served at once.
  const ok = await openRaw(gw.url);
  t.teardown(() => ok.socket.destroy());
  ok.write('GET /slow HTTP/1.1\r\nHost: gw\r\n\r\n');
  t.equal((await ok.waitFor(1))[0]!.status, 200, 'a whole head is answered');

  await Promise.all([silent.closed, halfLine.closed, halfHead.closed]);
  for (const [name, c] of [
    ['nothing sent', silent],
    ['half a request line', halfLine],
    ['half a head', halfHead],
  ] as const) {
    const [res] = c.responses;
    t.equal(res?.status, 408, `${name}: 408`);
    t.match(JSON.parse(res?.body ?? '{}'), { error: { code: 'body_timeout', message: /within 1000 ms/ } }, name);
  }

  // Logged and counted as nginx does: the two that began a request, not the connection that never spoke (a
  // browser's preconnect). Their lines were written before their connections closed; a request's line after them
  // is the mark that the output holds them all.
  await rawRequest(gw.url, 'GET /slow HTTP/1.1\r\nHost: gw\r\nX-Request-Id: after-408\r\n\r\n');
  await untilOutputHas(gw, '"reqId":"after-408"');
  const timedOut = gw
    .output()
    .split('\n')
    .filter((l) => l.includes('"msg":"request"') && l.includes('"status":408'));
  t.equal(timedOut.length, 2, 'an access-log line for each 408 but the silent connection');
  for (const line of timedOut)
    t.match(JSON.parse(line), { error: 'body_timeout', clientError: 'ERR_HTTP_REQUEST_TIMEOUT' });
  t.equal((await scrape(gw)).sum('graygate_requests_total', { version: 'none', code: '408' }), 2, 'and counted');
});

t.test(
  'a head the master stopped reading (pipelined past maxPipelinedRequests) gets its time once the rest is answered',
  async (t) => {
    // With a request in flight and one waiting, the master stops reading the connection; a third head split at that
    // read started Node's head clock anyway, which ran out while the master was not reading. The refusal was queued
    // behind the answers and sent after the third request's own answer: a 408 nobody asked for (a review's repro).
    // Now the head gets headTimeoutMs again once the connection is idle, and its 408 only if it is still not whole.
    const gw = await startGateway(
      t,
      {
        versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
        limits: { headTimeoutMs: 1000, maxPipelinedRequests: 1 },
      },
      { env: { LOG_LEVEL: 'debug' } },
    );
    const timedOut = (): number => gw.output().split('"code":"ERR_HTTP_REQUEST_TIMEOUT"').length - 1;
    const pipelined =
      'GET /slow?ms=3000 HTTP/1.1\r\nHost: gw\r\n\r\nGET /slow?ms=1 HTTP/1.1\r\nHost: gw\r\n\r\nGET /slow?ms=1 HTTP/1.1\r\n';

    const finished = await openRaw(gw.url, ['GET', 'GET', 'GET']);
    t.teardown(() => finished.socket.destroy());
    finished.write(pipelined);
    await untilOutput(gw, () => timedOut() >= 1 || undefined);
    finished.write('Host: gw\r\n\r\n');
    const answers = await finished.waitFor(3);
    t.same(
      answers.map((r) => r.status),
      [200, 200, 200],
      'the head finished after the clock ran out is answered, and nothing follows',
    );

    // The same, with the head never finished: once the connection is idle, a 408 after headTimeoutMs, and closed.
    const abandoned = await openRaw(gw.url, ['GET', 'GET', 'GET']);
    t.teardown(() => abandoned.socket.destroy());
    abandoned.write(pipelined);
    await abandoned.closed;
    t.same(
      abandoned.responses.map((r) => r.status),
      [200, 200, 408],
    );
    // By now (the idle connection's 408 took headTimeoutMs) a stray answer on the first would have come (at once).
    t.equal(finished.responses.length, 3, 'nothing was sent after the three answers on the first connection');
  },
);

/** The timer of the kernel's socket from local port `local` to remote port `remote`, as /proc/net/tcp shows it. */
async function tcpTimer(local: number, remote: number): Promise<{ kind: number; ticks: number } | undefined> {
  const hex = (port: number): string => port.toString(16).toUpperCase().padStart(4, '0');
  for (const line of (await readFile('/proc/net/tcp', 'utf8')).split('\n')) {
    const [, from, to, , , timer] = line.trim().split(/\s+/);
    if (from?.endsWith(`:${hex(local)}`) && to?.endsWith(`:${hex(remote)}`)) {
      const [kind, ticks] = timer!.split(':');
      return { kind: Number.parseInt(kind!, 16), ticks: Number.parseInt(ticks!, 16) };
    }
  }
  return undefined;
}

// One gateway for the two tests on the default limits (a master and its worker's start were most of each one's CPU).
t.test('the default limits, logging requests', async (t) => {
  const gw = await startGateway(
    t,
    { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } },
    { env: { LOG_LEVEL: 'info' } },
  );
  t.test(
    'accepted connections have TCP keepalive: a client gone without a FIN is found, not held until the answer ends',
    { skip: process.platform === 'linux' ? false : '/proc/net/tcp is Linux' },
    (t) => keepaliveTimer(t, gw),
  );
  t.test('a connection that errors under its request says why in the access log (clientError)', (t) =>
    clientErrorLogged(t, gw),
  );
});

async function keepaliveTimer(t: Test, gw: Gateway): Promise<void> {
  // A network probe's repro: a client whose machine vanished (no FIN, no RST) kept its slot, and the upstream kept
  // generating for it, until the answer ended. The kernel's keepalive finds such a peer; what the test can see
  // without a network that drops packets is that the master's end of the connection has the keepalive timer.
  const c = await openRaw(gw.url);
  t.teardown(() => c.socket.destroy());
  c.write('GET /slow?ms=1 HTTP/1.1\r\nHost: gw\r\n\r\n');
  t.equal((await c.waitFor(1))[0]!.status, 200);
  const server = Number(new URL(gw.url).port);
  // Until the client's kernel acknowledges the answer the socket shows its retransmission timer (kind 1).
  let timer = await tcpTimer(server, c.socket.localPort!);
  while (timer?.kind === 1) {
    await pollPause();
    timer = await tcpTimer(server, c.socket.localPort!);
  }
  t.equal(timer?.kind, 2, "the master's socket has the keepalive timer (0 without keepalive)");
  t.ok(timer !== undefined && timer.ticks <= 300, 'probes start after at most 3 s of silence (USER_HZ ticks)');
}

async function clientErrorLogged(t: Test, gw: Gateway): Promise<void> {
  // `aborted: true` alone did not tell a client that closed from one whose network died (ETIMEDOUT, the keepalive's
  // verdict) or that reset; a reset is what loopback can show.
  const c = await openRaw(gw.url);
  // Its own request id: the log holds the test before's request to /slow too.
  c.write('GET /slow?ms=60000 HTTP/1.1\r\nHost: gw\r\nx-request-id: reset-under-request\r\n\r\n');
  await waitForStatus(gw, (v) => v.v1!.workers[0]!.inflight === 1, 'the request is at the worker');
  c.socket.resetAndDestroy();
  const line = await untilOutput(gw, () =>
    gw
      .output()
      .split('\n')
      .find((l) => l.includes('"msg":"request"') && l.includes('"reqId":"reset-under-request"')),
  );
  t.match(JSON.parse(line), { status: 0, aborted: true, clientError: 'ECONNRESET' });
}
