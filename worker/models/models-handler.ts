import type { IncomingMessage, ServerResponse } from 'node:http';
import { GraygateError, toErrorResponse } from '../../shared/errors.js';
import { sendError, sendJson } from '../../shared/http-headers.js';
import type { ModelCatalog } from './model-catalog.js';
import type { ModelEntry } from './model-list.js';

// GET /v1/models and GET /v1/models/{id} (SPEC §12), in OpenAI's shapes: a
// list, one model object, or 404 not_found for an id the version does not
// serve.
//
// The master's deploy probe (master/deploy.ts) calls GET /v1/models on a new
// worker and needs an answer under 500 within seconds, whatever the state of
// the upstream. The probe is the one caller that does not come through the
// master's proxy, which stamps every request it forwards with
// `x-graygate-version` (SPEC §3). So a request without it is answered from
// what is known now, without waiting (an empty list at worst), and warms the
// cache for the clients that follow.

/** Header the master's proxy sets on every request it forwards (SPEC §3). */
const PROXIED_HEADER = 'x-graygate-version';

export function handleModels(
  req: IncomingMessage,
  res: ServerResponse,
  modelId: string | undefined,
  catalog: ModelCatalog,
): void {
  if (req.headers[PROXIED_HEADER] === undefined) {
    catalog.warm();
    sendList(res, catalog.peek() ?? []);
    return;
  }
  // Known (the configured model, or a list fetched within its TTL): answered now, as `list()` would a turn later,
  // without a signal, a listener and a promise per request.
  const known = catalog.peek();
  if (known !== undefined) {
    catalog.warm();
    answer(res, modelId, known);
    return;
  }
  const client = new AbortController();
  const onClose = (): void => client.abort();
  res.once('close', onClose);
  catalog
    .list({ signal: client.signal })
    .then((models) => answer(res, modelId, models))
    .catch((err: unknown) => {
      if (!client.signal.aborted) sendError(res, toErrorResponse(err));
    })
    .finally(() => res.off('close', onClose));
}

/** The list, or the one model `modelId` names (404 not_found if the version does not serve it). */
function answer(res: ServerResponse, modelId: string | undefined, models: ModelEntry[]): void {
  if (modelId === undefined) return sendList(res, models);
  const model = models.find((m) => m.id === modelId);
  if (model === undefined)
    return sendError(
      res,
      toErrorResponse(new GraygateError('not_found', `The model '${modelId}' does not exist on this version`)),
    );
  sendJson(res, 200, model);
}

/**
 * Each list's JSON, made once: a fetched list is kept for its TTL and was serialised again for every request (an
 * amplification audit: a hostile upstream's 4 MiB of tiny entries were ~26 MB of answer, ~190 ms of the worker's
 * loop a request). Keyed by the list itself, so it goes with it.
 */
const listBodies = new WeakMap<ModelEntry[], Buffer>();

function sendList(res: ServerResponse, models: ModelEntry[]): void {
  let body = listBodies.get(models);
  if (body === undefined)
    listBodies.set(models, (body = Buffer.from(JSON.stringify({ object: 'list', data: models }))));
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
  res.end(body);
}
