import type { UpstreamConfig } from '../../shared/config.js';

// SPEC §2/§8: `"url": "mock:"` runs the mock upstream inside the worker, on
// 127.0.0.1 port 0, reached over real HTTP like any upstream, so `npm start`
// streams with no API key and no network. The mock's code is loaded only by
// such versions (issue 9 part 0: a worker loads nothing it does not serve).

export interface ResolvedUpstream {
  /** The base URL requests go to. */
  baseUrl: string;
  /** Stops the embedded mock, if any, once nothing calls it any more (after the upstream pool closed). Idempotent. */
  close(): Promise<void>;
  /** Stops the embedded mock now, ending its open answers. Idempotent. */
  destroy(): Promise<void>;
}

export async function resolveUpstream(upstream: Pick<UpstreamConfig, 'url' | 'format'>): Promise<ResolvedUpstream> {
  if (upstream.url !== 'mock:')
    return { baseUrl: upstream.url, close: async () => undefined, destroy: async () => undefined };
  const { startMockUpstream } = await import('../../shared/mock-upstream/index.js');
  const mock = await startMockUpstream({ host: '127.0.0.1', port: 0, format: upstream.format });
  // The mock's close() already ends every connection: called after the pool closed, only idle ones are left.
  return { baseUrl: mock.baseUrl, close: () => mock.close(), destroy: () => mock.close() };
}
