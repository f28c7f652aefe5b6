import { GraygateError } from '../../shared/errors.js';
import type { UpstreamFormat } from '../upstream/format-adapter.js';

// GET /v1/models (SPEC §12): each format's own list → OpenAI's model objects.
//   openai     GET {url}/models      {data: [{id, object, created, owned_by}]}, kept as they are
//   ollama     GET {url}/api/tags    {models: [{name, model, modified_at, …}]}
//   anthropic  GET {url}/v1/models   {data: [{type: "model", id, display_name, created_at}]}
// https://github.com/ollama/ollama/blob/main/docs/api.md#list-local-models
// https://docs.anthropic.com/en/api/models-list

export interface ModelEntry {
  id: string;
  object: 'model';
  /** Unix seconds; 0 when unknown. */
  created: number;
  owned_by: string;
  [key: string]: unknown;
}

/**
 * Where each format lists its models, under the version's upstream URL. Anthropic pages by 20 unless asked for more.
 */
export const MODEL_LIST_PATHS: Readonly<Record<UpstreamFormat, string>> = {
  openai: '/models',
  ollama: '/api/tags',
  anthropic: '/v1/models?limit=1000',
};

/** The version's configured model (`upstream.model`), which wins over whatever the upstream lists. */
export function configuredModel(id: string, ownedBy: string): ModelEntry {
  return { id, object: 'model', created: 0, owned_by: ownedBy };
}

/** A format's model list → OpenAI model objects; a list of another shape is an upstream_protocol_error. */
export function modelsFromUpstream(format: UpstreamFormat, value: unknown, ownedBy: string): ModelEntry[] {
  const list = (value as Record<string, unknown> | null)?.[format === 'ollama' ? 'models' : 'data'];
  if (!Array.isArray(list))
    throw new GraygateError(
      'upstream_protocol_error',
      `the upstream's model list has no ${format === 'ollama' ? '`models`' : '`data`'} array`,
    );
  return list.map((item: Record<string, unknown> | null) => {
    const id = format === 'ollama' ? (item?.['name'] ?? item?.['model']) : item?.['id'];
    if (typeof id !== 'string' || id === '')
      throw new GraygateError('upstream_protocol_error', "the upstream's model list has an entry without an id");
    if (format === 'openai') {
      const created = typeof item!['created'] === 'number' ? item!['created'] : 0;
      const owner = typeof item!['owned_by'] === 'string' ? item!['owned_by'] : ownedBy;
      return { ...item, id, object: 'model', created, owned_by: owner };
    }
    return {
      id,
      object: 'model',
      created: unixSeconds(item?.[format === 'ollama' ? 'modified_at' : 'created_at']),
      owned_by: ownedBy,
    };
  });
}

function unixSeconds(iso: unknown): number {
  const ms = typeof iso === 'string' ? Date.parse(iso) : Number.NaN;
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : 0;
}
