import { parseJsonExact } from './exact-numbers.js';
import { GraygateError } from '../../shared/errors.js';
import type { EmbeddingEncoding, RelayKind } from '../types.js';
import { CHAT_REQUEST_LIMITS, requestText } from './chat-request.js';
import {
  boolean,
  checker,
  firstProblemPath,
  isObject,
  nonEmptyString,
  nullable,
  object,
  positiveInteger,
} from './checks.js';
import { checkJsonLimits } from './json-limits.js';

// SPEC §12: the bodies of POST /v1/embeddings, /v1/completions and
// /v1/responses. They pass through to an OpenAI upstream as they are, so only
// what the gateway reads is checked (model, stream, stream_options, and for
// embeddings the input and its encoding); the upstream judges the rest. Same
// size and shape limits as chat bodies (issue 9 part 5).

export interface EndpointRequest {
  /** The parsed body, unknown fields included. */
  body: Record<string, unknown>;
  isStream: boolean;
  /** stream_options.include_usage. */
  includeUsage: boolean;
  /** Embeddings: how the client wants vectors (float unless it says base64). */
  encoding: EmbeddingEncoding;
}

export function parseEndpointRequest(kind: RelayKind, bytes: Buffer): EndpointRequest {
  checkJsonLimits(bytes, CHAT_REQUEST_LIMITS);
  const text = requestText(bytes);
  let raw: unknown;
  try {
    raw = parseJsonExact(text);
  } catch (err) {
    throw new GraygateError('invalid_request', `the request body is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new GraygateError('invalid_request', 'the request body must be a JSON object');
  const problems: string[] = [];
  const check = checker(problems);
  check('model', raw['model'], nonEmptyString);
  check('stream', raw['stream'], nullable(boolean));
  check('stream_options', raw['stream_options'], nullable(object));
  const streamOptions = raw['stream_options'];
  if (isObject(streamOptions)) check('stream_options.include_usage', streamOptions['include_usage'], boolean);
  if (kind === 'embeddings') {
    if (raw['stream'] === true) problems.push('stream: embeddings are not streamed');
    check('input', raw['input'] ?? null, (v) =>
      isInput(v) ? undefined : 'must be a string, an array of strings, or token arrays',
    );
    check(
      'encoding_format',
      raw['encoding_format'],
      nullable((v) => (v === 'float' || v === 'base64' ? undefined : 'must be "float" or "base64"')),
    );
    check('dimensions', raw['dimensions'], nullable(positiveInteger));
  }
  if (problems.length > 0) throw new GraygateError('invalid_request', problems.join('; '), firstProblemPath(problems));
  return {
    body: raw,
    isStream: raw['stream'] === true,
    includeUsage: isObject(streamOptions) && streamOptions['include_usage'] === true,
    encoding: raw['encoding_format'] === 'base64' ? 'base64' : 'float',
  };
}

/** OpenAI's embeddings input: text, texts, a token array or token arrays; never empty. */
function isInput(v: unknown): boolean {
  if (typeof v === 'string') return true;
  if (!Array.isArray(v) || v.length === 0) return false;
  const isTokens = (a: unknown): boolean => Array.isArray(a) && a.length > 0 && a.every((n) => Number.isInteger(n));
  return v.every((s) => typeof s === 'string') || v.every((n) => Number.isInteger(n)) || v.every(isTokens);
}
