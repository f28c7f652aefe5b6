import t from 'tap';
import { once } from 'node:events';
import { startMockUpstream, BASE_PATHS, type MockStream } from '../../shared/mock-upstream/index.js';
import { httpRequest, json } from '../helpers/http.js';
import { postStream, chatBody } from './fixtures/sse-client.js';
import { startTestWorker } from './fixtures/worker-server.js';

// Issue 11 part 2, STYLE §14: the worker server's close() drains (new requests
// 503, in-flight ones finish, then the upstream pool and the mock close) and
// destroy() aborts what is in flight.

interface ErrorBody {
  error: { code: string };
}

t.test('close() refuses new requests, waits for the ones in flight, then closes the upstream', async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const w = await startTestWorker(t, { upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } });
  const upstream = once(mock.events, 'stream') as Promise<[MockStream]>;
  const s = await postStream(`${w.url}/v1/chat/completions`, chatBody('[mock tokens=5 fault=stall after=2]'));
  const [handle] = await upstream;
  await s.until(() => s.text() !== '');

  let isClosed = false;
  const closed = w.worker.close().then(() => (isClosed = true));
  t.equal(w.worker.close(), w.worker.close(), 'idempotent: one promise');
  const refused = await httpRequest(`${w.url}/v1/chat/completions`, {
    method: 'POST',
    body: JSON.stringify(chatBody('')),
  });
  t.equal(refused.status, 503);
  t.equal(refused.headers['connection'], 'close');
  t.equal(json<ErrorBody>(refused).error.code, 'shutting_down');
  t.equal(isClosed, false, 'still waiting for the stream in flight');
  t.equal(w.upstreamCalls.close, 0, 'the upstream is still in use');

  const upstreamClosed = once(handle, 'close');
  s.req.destroy();
  await closed;
  await upstreamClosed;
  t.equal(w.upstreamCalls.close, 1, 'the embedded upstream closed once the stream was over');
  const line = w.lines().find((l) => l['msg'] === 'request finished' && l['stream'] === true);
  t.equal(line?.['aborted'], true, 'a client that left is logged as aborted');
  t.equal(line?.['status'], 200);
  t.notOk('error' in (line ?? {}), 'and not as an error');
});

t.test('destroy() ends streams in flight with a final error event', async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const w = await startTestWorker(t, { upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } });
  const s = await postStream(`${w.url}/v1/chat/completions`, chatBody('[mock tokens=5 fault=stall after=2]'));
  await s.until(() => s.text() !== '');
  const destroyed = w.worker.destroy();
  t.equal(w.worker.destroy(), destroyed, 'idempotent: one promise');
  await destroyed;
  const { isComplete } = await s.done;
  t.ok(isComplete, 'the response ended cleanly');
  t.equal((JSON.parse(s.data.at(-1)!) as ErrorBody).error.code, 'shutting_down');
  t.notOk(s.data.includes('[DONE]'));
  t.equal(w.upstreamCalls.destroy, 1);
});

t.test(
  'destroy() during close() (a draining worker told `cut`): close() resolves, not rejected by the destroyed pool',
  async (t) => {
    const mock = await startMockUpstream({});
    t.teardown(() => mock.close());
    const w = await startTestWorker(t, { upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } });
    const s = await postStream(`${w.url}/v1/chat/completions`, chatBody('[mock tokens=5 fault=stall after=2]'));
    await s.until(() => s.text() !== '');
    const closed = w.worker.close().then(
      () => 'resolved',
      (err: unknown) => `rejected: ${(err as Error).message}`,
    );
    await w.worker.destroy();
    await s.done;
    t.equal(await closed, 'resolved');
  },
);
