import type { WorkerSettings } from '../shared/ipc.js';

export interface ModelList {
  object: 'list';
  data: Array<{ id: string; object: 'model'; created: number; owned_by: string }>;
}

/** The mock upstream's model name when a version names none. */
export const MOCK_MODEL = 'graygate-mock';

/** GET /v1/models: the version's model (SPEC §5), OpenAI list shape. */
export function listModels(settings: WorkerSettings): ModelList {
  const id = settings.upstream.model ?? MOCK_MODEL;
  return { object: 'list', data: [{ id, object: 'model', created: 0, owned_by: `graygate/${settings.version}` }] };
}
