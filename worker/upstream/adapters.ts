import type { UpstreamAdapter, UpstreamFormat } from './adapter.js';
import { anthropicAdapter } from './anthropic.js';
import { ollamaAdapter } from './ollama.js';
import { openaiAdapter } from './openai.js';

const ADAPTERS: Record<UpstreamFormat, UpstreamAdapter> = { openai: openaiAdapter, ollama: ollamaAdapter, anthropic: anthropicAdapter };

/** The adapter for a version's upstream.format (SPEC §2). */
export function adapterFor(format: UpstreamFormat): UpstreamAdapter {
  return ADAPTERS[format];
}
