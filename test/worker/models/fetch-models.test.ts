import t from 'tap';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fetchModels } from '../../../worker/models/fetch-models.js';
import { testUpstreamClient } from '../fixtures/upstream-client.js';

// One GET of an upstream's model list, from a real server on loopback.

const MARK = '\ufeff';

t.test("a byte-order mark before the upstream's list or its error body is not part of them", async (t) => {
  // An encoding probe: a list after a mark was 502 "not valid JSON", an error body's message lost.
  const server = createServer((req, res) => {
    const isError = req.headers['authorization'] === 'Bearer bad';
    res.writeHead(isError ? 401 : 200, { 'content-type': 'application/json' });
    res.end(
      isError
        ? `${MARK}{"error":{"message":"Incorrect API key","type":"invalid_request_error","code":"invalid_api_key"}}`
        : `${MARK}{"object":"list","data":[{"id":"m1","object":"model","created":1,"owned_by":"them"}]}`,
    );
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => server.close());
  const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  const options = (apiKey: string): Parameters<typeof fetchModels>[0] => ({
    client: testUpstreamClient(t, url),
    upstream: {
      format: 'openai',
      timeouts: { connectMs: 5000, firstByteMs: 5000, idleMs: 5000, totalMs: 10_000, keepAliveMs: 1000 },
    },
    apiKey,
    ownedBy: 'graygate',
    signal: new AbortController().signal,
  });
  t.match(await fetchModels(options('good')), [{ id: 'm1' }]);
  await t.rejects(fetchModels(options('bad')), {
    code: 'upstream_status',
    message: 'upstream answered 401: Incorrect API key',
  });
});
