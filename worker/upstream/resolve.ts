import type { UpstreamConfig } from '../../shared/config.js';
import { startMockUpstream } from '../../shared/mock-upstream/index.js';

// SPEC §2/§8: `"url": "mock:"` runs the mock upstream inside the worker, on
// 127.0.0.1 port 0, reached over real HTTP like any upstream, so `npm start`
// streams with no API key and no network.

export interface ResolvedUpstream {
  /** The base URL requests go to. */
  baseUrl: string;
  /** Stops the embedded mock, if any. */
  close(): Promise<void>;
}

export async function resolveUpstream(upstream: UpstreamConfig): Promise<ResolvedUpstream> {
  if (upstream.url !== 'mock:') return { baseUrl: upstream.url, close: async () => undefined };
  const mock = await startMockUpstream({ host: '127.0.0.1', port: 0, format: upstream.format });
  return { baseUrl: mock.baseUrl, close: () => mock.close() };
}
