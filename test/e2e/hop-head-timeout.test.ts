import t from 'tap';
import { startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { openRaw } from '../helpers/raw-http.js';

// SPEC §4a, limits.headTimeoutMs (nginx client_header_timeout): a connection that sends no whole request head in
// time is closed, with a 408. Turning Node's whole-request deadline off (requestTimeout: 0,
// for long streams) had turned its head deadline off too: a silent connection, or one sending half a head, was held
// for good, and enough of them took every descriptor of the master (a helper's slowloris, 200 of 200 still open
// after 75 s). Each wait below is for the server's close, which never came on the old code.

t.test('a connection that sends no whole request head within headTimeoutMs is closed', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } },
    limits: { headTimeoutMs: 1000 },
  });
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
});
