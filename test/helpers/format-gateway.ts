import { BASE_PATHS, startMockUpstream, type MockFormat, type MockUpstream } from '../../shared/mock-upstream/index.js';
import { startGateway, type Gateway, type Teardown } from './gateway.js';

// The end-to-end tests that run the same thing against every upstream format (openai-tools,
// streaming-adapters, streaming-framing): one in-process mock upstream, and one gateway with a version
// per format named after it (`?version=ollama`), `openai` the default. Both stop at teardown.

export const FORMATS: readonly MockFormat[] = ['openai', 'ollama', 'anthropic'];

export async function startFormatGateway(t: Teardown): Promise<{ gw: Gateway; mock: MockUpstream }> {
  const mock = await startMockUpstream({});
  t.teardown(() => mock.close());
  const versions: Record<string, Record<string, unknown>> = {};
  for (const f of FORMATS)
    versions[f] = { weight: f === 'openai' ? 1 : 0, upstream: { format: f, url: mock.url + BASE_PATHS[f] } };
  const gw = await startGateway(t, { versions, routing: { default: 'openai' } });
  return { gw, mock };
}
