import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { runCannon } from '../../../scripts/loadtest/autocannon-process.js';

// autocannon's own `errors` already counts each timeout (its lib/run.js onTimeout): adding `timeouts` to it counted a
// timed-out request twice (the load-script probe). A real server on loopback that never answers: every error is one.

t.test('a timed-out request is one error', async (t) => {
  const server = createServer(() => undefined);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  t.teardown(() => {
    server.closeAllConnections();
    server.close();
  });
  const { port } = server.address() as AddressInfo;
  const r = await runCannon({
    url: `http://127.0.0.1:${port}/`,
    connections: 2,
    durationS: 3,
    timeoutS: 1,
    signal: AbortSignal.timeout(60_000),
  });
  t.equal(r.total, 0, 'nothing was answered');
  t.ok(r.timeouts > 0, `requests timed out: ${r.timeouts}`);
  t.equal(r.errors, r.timeouts, 'each timeout is one error, no more');
});
