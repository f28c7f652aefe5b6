import t from 'tap';
import { admin, startGateway } from '../helpers/gateway.js';
import { status } from '../helpers/wait.js';
import { runCanaryToEnd } from '../helpers/load.js';
import { startMockUpstream, BASE_PATHS } from '../../shared/mock-upstream/index.js';

// SPEC §11 with an agent's traffic: most streams are tool-call answers (only `delta.tool_calls`, no text). A canary
// whose upstream ends them with an error event midway is rolled back. The mock upstream's faults (README "mock")
// ignored tool-call answers: fault=error after=2 answered the calls whole, and such a canary tried on the mock was
// promoted with "every criterion met".

const TOOL_STREAM = JSON.stringify({
  model: 'graygate-mock',
  stream: true,
  tools: [
    {
      type: 'function',
      function: { name: 'get_weather', parameters: { type: 'object', properties: { city: { type: 'string' } } } },
    },
  ],
  messages: [{ role: 'user', content: 'Weather in Paris? [mock tools=get_weather args={"city":"Paris"}]' }],
});

t.test('a canary whose upstream ends its tool-call streams with an error event midway is rolled back', async (t) => {
  const good = await startMockUpstream();
  t.teardown(() => good.close());
  const broken = await startMockUpstream({ defaults: { fault: 'error', after: 2 } });
  t.teardown(() => broken.close());
  const gw = await startGateway(t, {
    versions: {
      base: { weight: 100, upstream: { format: 'openai', url: good.url + BASE_PATHS.openai } },
      agent: { weight: 0, upstream: { format: 'openai', url: broken.url + BASE_PATHS.openai } },
    },
    routing: { default: 'base' },
  });
  // What the canary's clients read: the call's first fragment, then the upstream's error, no [DONE].
  const pinned = await fetch(gw.url + '/v1/chat/completions', {
    method: 'POST',
    headers: { 'content-type': 'application/json', 'x-version': 'agent' },
    body: TOOL_STREAM,
  });
  t.equal(pinned.status, 200);
  const text = await pinned.text();
  t.match(text, /"tool_calls":\[\{"index":0,"id":"call_/, 'a tool-call delta first');
  t.match(text, /data: \{"error":\{"message":"[^"]*mock upstream error 500"/, 'then the error event');
  t.notMatch(text, /\[DONE\]/);

  const body = { steps: [50, 100], stepMs: 200, minRequests: 20, criteria: { firstTokenP99: false } };
  t.equal((await admin(gw, 'POST', '/admin/versions/agent/canary', body)).status, 202);
  const { load, final } = await runCanaryToEnd(gw, 'agent', {
    path: '/v1/chat/completions',
    method: 'POST',
    body: TOOL_STREAM,
    maxRequests: 4000,
  });
  t.equal(final.state, 'rolled_back', final.reason);
  t.ok(
    final.decisions.some((d) => d.metric === 'error_rate' && d.verdict === 'fail'),
    'the error-rate test rejected',
  );
  t.ok(load.streamErrors > 0, 'its clients read the error events');
  t.equal((await status(gw)).agent!.weight, 0);
  t.comment(`rolled back after ${load.requests} requests: ${final.reason}`);
});

t.test('a canary whose upstream fails its embeddings (fault=error) is rolled back', async (t) => {
  // The retrieval half of an agent's traffic. The mock upstream's faults other than fault=status, and its
  // first-byte-ms, did not apply to embeddings (README "mock": an answer not streamed takes fault=error as its
  // status): such a canary tried on the mock answered them as its baseline did and was promoted.
  const good = await startMockUpstream();
  t.teardown(() => good.close());
  const broken = await startMockUpstream({ defaults: { fault: 'error', status: 503 } });
  t.teardown(() => broken.close());
  const gw = await startGateway(t, {
    versions: {
      base: { weight: 100, upstream: { format: 'openai', url: good.url + BASE_PATHS.openai } },
      bademb: { weight: 0, upstream: { format: 'openai', url: broken.url + BASE_PATHS.openai } },
    },
    routing: { default: 'base' },
  });
  const body = { steps: [50, 100], stepMs: 200, minRequests: 20, criteria: { responseTimeP99: false } };
  t.equal((await admin(gw, 'POST', '/admin/versions/bademb/canary', body)).status, 202);
  const { load, final } = await runCanaryToEnd(gw, 'bademb', {
    path: '/v1/embeddings',
    method: 'POST',
    body: JSON.stringify({ model: 'graygate-mock', input: 'hello' }),
    maxRequests: 4000,
  });
  t.equal(final.state, 'rolled_back', final.reason);
  t.ok(
    final.decisions.some((d) => d.metric === 'error_rate' && d.verdict === 'fail'),
    'the error-rate test rejected',
  );
  t.ok(
    [...load.byStatus.keys()].some((s) => s >= 500),
    'its clients got the errors',
  );
  t.equal((await status(gw)).bademb!.weight, 0);
  t.comment(`rolled back after ${load.requests} requests: ${final.reason}`);
});
