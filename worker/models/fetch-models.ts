import { GraygateError } from '../../shared/errors.js';
import type { UpstreamConfig } from '../../shared/config.js';
import { upstreamAuthHeaders } from '../upstream/auth-headers.js';
import { toUpstreamError, type UpstreamClient } from '../upstream/client.js';
import { MAX_ERROR_BODY_BYTES, readStatusError } from '../upstream/pipeline.js';
import { checkUpstreamJson, withoutBom } from '../upstream/format-adapter.js';
import { MODEL_LIST_PATHS, modelsFromUpstream, type ModelEntry } from './model-list.js';

// One GET of the upstream's model list (SPEC §12), through the version's
// upstream client (its pool, connect timeout, HTTP/2), errors mapped to the
// catalogue's upstream codes as for any other call.

/** Largest model list read, bytes: OpenAI's ~100 models are ~10 KiB; Ollama hosts a few hundred at most. */
const MAX_LIST_BYTES = 4 * 1024 * 1024;

export interface FetchModelsOptions {
  client: UpstreamClient;
  upstream: Pick<UpstreamConfig, 'format' | 'timeouts'>;
  apiKey: string | undefined;
  /** `owned_by` of entries whose upstream names no owner. */
  ownedBy: string;
  signal: AbortSignal;
}

export async function fetchModels(options: FetchModelsOptions): Promise<ModelEntry[]> {
  const { format, timeouts } = options.upstream;
  let hasResponse = false;
  try {
    const headers = { accept: 'application/json', ...upstreamAuthHeaders(format, options.apiKey) };
    const res = await options.client.request({
      method: 'GET',
      path: MODEL_LIST_PATHS[format],
      headers,
      signal: options.signal,
    });
    hasResponse = true;
    if (res.statusCode < 200 || res.statusCode >= 300)
      throw await readStatusError(res.statusCode, res.headers, res.body, MAX_ERROR_BODY_BYTES);
    // A byte-order mark before the list (as before any upstream JSON) is not part of it.
    const list = withoutBom(await res.body.readAll(MAX_LIST_BYTES + 1));
    if (list.length > MAX_LIST_BYTES)
      throw new GraygateError(
        'upstream_protocol_error',
        `the upstream's model list is larger than ${MAX_LIST_BYTES} bytes`,
      );
    checkUpstreamJson(list, "the upstream's model list");
    let value: unknown;
    try {
      value = JSON.parse(list.toString('utf8'));
    } catch {
      throw new GraygateError('upstream_protocol_error', "the upstream's model list is not valid JSON");
    }
    return modelsFromUpstream(format, value, options.ownedBy);
  } catch (err) {
    // An abort's own reason (a deadline's typed error, shutting_down) is what the caller sees.
    throw toUpstreamError(options.signal.aborted ? options.signal.reason : err, { hasResponse, ...timeouts });
  }
}
