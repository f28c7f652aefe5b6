// The OpenAI surface's paths a worker serves (SPEC §5, §12), shared by the worker, which routes them
// (worker/server.ts), and the canary, which judges them (master/request-end.ts).

/** The model calls: the POST endpoints a worker answers by calling its version's upstream, by path. */
export const MODEL_CALLS = {
  '/v1/chat/completions': 'chat',
  '/v1/embeddings': 'embeddings',
  '/v1/completions': 'completions',
  '/v1/responses': 'responses',
} as const;

/**
 * A Responses API path (a call, or a stored response's events again): its stream numbers its events, and so must the
 * master's own error event in it (master/relay.ts).
 */
export function isResponsesPath(path: string): boolean {
  return path.startsWith('/v1/responses');
}

/** The model list and one model (GET, HEAD), answered from the worker's cache of the upstream's list. */
export const MODELS_PATH = '/v1/models';

function pathOf(url: string): string {
  const query = url.indexOf('?');
  return query === -1 ? url : url.slice(0, query);
}

/** A POST to one of MODEL_CALLS' paths (its query string aside). */
export function isModelCall(method: string | undefined, url: string | undefined): boolean {
  return method === 'POST' && url !== undefined && Object.hasOwn(MODEL_CALLS, pathOf(url));
}

/** A GET or HEAD of the model list or of one model. */
export function isModelListRead(method: string | undefined, url: string | undefined): boolean {
  if ((method !== 'GET' && method !== 'HEAD') || url === undefined) return false;
  const path = pathOf(url);
  return path === MODELS_PATH || path.startsWith(`${MODELS_PATH}/`);
}
