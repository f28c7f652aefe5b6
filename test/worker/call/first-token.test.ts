import t from 'tap';
import { startMockUpstream, BASE_PATHS } from '../../../shared/mock-upstream/index.js';
import { METRIC } from '../../../shared/metric-names.js';
import { WAITED_HEADER, waitedMs } from '../../../shared/ipc.js';
import { parsePrometheusText } from '../../../scripts/cli/prom-text.js';
import { postStream, chatBody } from '../fixtures/sse-client.js';
import { startTestWorker } from '../fixtures/worker-server.js';

// The first-token histogram counts from the request's arrival at the master: the master says how long it held the
// request (WAITED_HEADER: head, body, the queue for a slot), and a client that waited 5 s in the queue for a token
// the upstream sent in 50 ms waited 5 s, as the canary and `graygate top` must say (a probe saw top show 232 ms
// while clients waited 5.3 s).

t.test("the master's wait is part of the first token's time", async (t) => {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const w = await startTestWorker(t, { upstream: { format: 'openai', url: mock.url + BASE_PATHS.openai } });
  const bucket = async (le: string): Promise<number> => {
    const samples = parsePrometheusText(await w.metrics.registry.metrics());
    return samples.find((s) => s.name === `${METRIC.streamFirstTokenSeconds}_bucket` && s.labels['le'] === le)!.value;
  };
  // 8 s with the master: past the 7.5 s bucket, however fast the upstream.
  const waited = await postStream(`${w.url}/v1/chat/completions`, chatBody('[mock tokens=2]'), {
    [WAITED_HEADER]: '8000',
  });
  await waited.done;
  t.equal(await bucket('7.5'), 0, 'not at or below 7.5 s');
  t.equal(await bucket('+Inf'), 1);
  // A value that is not a wait is not believed (only the master reaches a worker; the worker does not rely on it).
  for (const value of ['-8000', 'soon', '1e12']) {
    const s = await postStream(`${w.url}/v1/chat/completions`, chatBody('[mock tokens=2]'), { [WAITED_HEADER]: value });
    await s.done;
  }
  // Believed, 1e12 ms would land past the last bucket (300 s); the negative one is read as 0 (below).
  t.equal(await bucket('300'), 4, 'the three counted from their arrival at the worker, and the 8 s one');
  t.same(['12.5', '', undefined, 'NaN', 'Infinity', '-8000', '1e12'].map(waitedMs), [12.5, 0, 0, 0, 0, 0, 0]);
});
