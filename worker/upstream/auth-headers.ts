import type { UpstreamFormat } from './format-adapter.js';

// How each format is authenticated (SPEC §2 `apiKeyEnv`): OpenAI and
// OpenAI-compatible servers take a bearer token; Ollama has no auth of its
// own, but a proxy in front of it may take one; Anthropic takes `x-api-key`
// and needs its API version on every call, the model list included.

const ANTHROPIC_VERSION = '2023-06-01';

/** Headers every call to a `format` upstream carries. The key goes into headers only, never into logs. */
export function upstreamAuthHeaders(format: UpstreamFormat, apiKey: string | undefined): Record<string, string> {
  if (format === 'anthropic') {
    return apiKey === undefined
      ? { 'anthropic-version': ANTHROPIC_VERSION }
      : { 'anthropic-version': ANTHROPIC_VERSION, 'x-api-key': apiKey };
  }
  return apiKey === undefined ? {} : { authorization: `Bearer ${apiKey}` };
}
