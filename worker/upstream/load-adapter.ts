import type { UpstreamAdapter, UpstreamFormat } from './format-adapter.js';

// A worker serves one upstream format (SPEC §2), so it loads that converter
// only (issue 9 part 0: nothing at start-up that the version does not use).

/** The converter for a version's upstream.format. */
export async function loadAdapter(format: UpstreamFormat): Promise<UpstreamAdapter> {
  switch (format) {
    case 'openai':
      return (await import('./openai.js')).openaiAdapter;
    case 'ollama':
      return (await import('./ollama.js')).ollamaAdapter;
    case 'anthropic':
      return (await import('./anthropic.js')).anthropicAdapter;
  }
}
