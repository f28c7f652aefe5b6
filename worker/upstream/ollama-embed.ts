import { endianness } from 'node:os';
import { stringifyJsonExact } from '../request/exact-numbers.js';
import { GraygateError } from '../../shared/errors.js';
import type { RelayKind } from '../types.js';
import { upstreamAuthHeaders } from './auth-headers.js';
import {
  parseUpstreamJson,
  withoutBom,
  tokenCount,
  type AnswerHints,
  type BuildOptions,
  type ConvertedAnswer,
  type UpstreamRequest,
} from './format-adapter.js';
import { invalid } from './message-parts.js';
import { findEmbeddingVectors } from './embedding-vectors.js';
import { problemsError, unconvertible } from './field-support.js';

// POST /v1/embeddings on an Ollama upstream (SPEC §12): OpenAI's request →
// `/api/embed`, and its answer `{model, embeddings: [[…]], prompt_eval_count}`
// → OpenAI's `{object: "list", data: [{object: "embedding", index, embedding}],
// model, usage}`. Vectors go out as floats or, when asked (the official npm
// client always asks), as base64 of little-endian float32s.
// https://github.com/ollama/ollama/blob/main/docs/api.md#generate-embeddings

/** OpenAI embeddings fields: what each becomes; any other field is a 400. */
const FIELDS: ReadonlySet<string> = new Set(['model', 'input', 'dimensions', 'encoding_format', 'user']);

export function buildOllamaEmbedRequest(
  kind: RelayKind,
  req: Record<string, unknown>,
  options: BuildOptions,
): UpstreamRequest {
  if (kind !== 'embeddings')
    throw new GraygateError('unsupported_endpoint', `POST /v1/${kind} is not supported by an ollama upstream`);
  const unknown = Object.keys(req).filter((k) => !FIELDS.has(k) && req[k] !== null && req[k] !== undefined);
  if (unknown.length > 0)
    throw problemsError(
      unknown.map((k) => unconvertible(k, 'ollama')),
      unknown[0],
    );
  const model = options.model ?? (req['model'] as string | undefined);
  if (model === undefined) throw invalid('model', 'is required');
  const input = req['input'];
  if (!isText(input))
    throw invalid('input', 'an ollama upstream embeds text (a string or an array of strings), not token arrays');
  const body: Record<string, unknown> = { model, input };
  if (typeof req['dimensions'] === 'number') body['dimensions'] = req['dimensions'];
  // `user` is the sticky-routing key (README Routing); Ollama has no use for it.
  const headers = {
    'content-type': 'application/json',
    accept: 'application/json',
    ...upstreamAuthHeaders('ollama', options.apiKey),
  };
  return { path: '/api/embed', headers, body: Buffer.from(stringifyJsonExact(body)), model };
}

function isText(input: unknown): boolean {
  return (
    typeof input === 'string' || (Array.isArray(input) && input.length > 0 && input.every((s) => typeof s === 'string'))
  );
}

export function convertOllamaEmbedAnswer(kind: RelayKind, body: Buffer, hints: AnswerHints): ConvertedAnswer {
  if (kind !== 'embeddings')
    throw new GraygateError('unsupported_endpoint', `POST /v1/${kind} is not supported by an ollama upstream`);
  const bytes = withoutBom(body);
  const found = findEmbeddingVectors(bytes, hints.inputs);
  if (found !== undefined) {
    const rest = parseUpstreamJson(found.rest.toString('utf8'), found.rest);
    const empty = rest['embeddings'];
    if (Array.isArray(empty) && empty.length === 0) {
      checkCount(found.vectors.length, hints.inputs);
      return answerOfSlices(bytes, found.vectors, rest, hints);
    }
  }
  const value = parseUpstreamJson(bytes.toString('utf8'), bytes);
  const embeddings = value['embeddings'];
  if (
    !Array.isArray(embeddings) ||
    !embeddings.every((e) => Array.isArray(e) && e.every((x) => typeof x === 'number'))
  ) {
    throw new GraygateError(
      'upstream_protocol_error',
      'the upstream answered embeddings without an `embeddings` array of vectors',
    );
  }
  checkCount(embeddings.length, hints.inputs);
  const tokens = tokenCount(value['prompt_eval_count']);
  const answer = {
    object: 'list',
    data: embeddings.map((vector, index) => ({
      object: 'embedding',
      index,
      embedding: hints.encoding === 'base64' ? toBase64Float32(vector) : vector,
    })),
    model: typeof value['model'] === 'string' ? value['model'] : '',
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
  return { body: Buffer.from(JSON.stringify(answer)), usage: { prompt_tokens: tokens, completion_tokens: 0 } };
}

/** The answer of vectors found in the upstream's bytes (embedding-vectors.ts): each goes out as it was written. */
function answerOfSlices(
  bytes: Buffer,
  vectors: Array<[number, number]>,
  rest: Record<string, unknown>,
  hints: AnswerHints,
): ConvertedAnswer {
  const tokens = tokenCount(rest['prompt_eval_count']);
  const parts: Buffer[] = [Buffer.from('{"object":"list","data":[')];
  vectors.forEach(([start, end], index) => {
    parts.push(Buffer.from(`${index === 0 ? '' : ','}{"object":"embedding","index":${index},"embedding":`));
    const vector = bytes.subarray(start, end);
    parts.push(
      hints.encoding === 'base64'
        ? Buffer.from(JSON.stringify(toBase64Float32(JSON.parse(vector.toString('latin1')) as number[])))
        : vector,
      CLOSE_DATUM,
    );
  });
  const model = typeof rest['model'] === 'string' ? rest['model'] : '';
  const usage = { prompt_tokens: tokens, total_tokens: tokens };
  parts.push(Buffer.from(`],"model":${JSON.stringify(model)},"usage":${JSON.stringify(usage)}}`));
  return { body: Buffer.concat(parts), usage: { prompt_tokens: tokens, completion_tokens: 0 } };
}

const CLOSE_DATUM = Buffer.from('}');

/**
 * One vector an input, as Ollama answers: any other count is the upstream's error (a hostile one's 21 million empty
 * vectors, 64 MiB, made 1.1 GiB of answer, three bytes becoming 54 each).
 */
function checkCount(vectors: number, inputs: number): void {
  if (vectors !== inputs)
    throw new GraygateError(
      'upstream_protocol_error',
      `the upstream answered ${vectors} embeddings for ${inputs} inputs`,
    );
}

/** OpenAI's base64 encoding_format: the vector as little-endian float32s. */
export function toBase64Float32(vector: readonly number[]): string {
  if (IS_LITTLE_ENDIAN) {
    // A typed array's own layout, in one copy (a writeFloatLE a number was ~15 % of a vector's conversion).
    const floats = Float32Array.from(vector);
    return Buffer.from(floats.buffer, floats.byteOffset, floats.byteLength).toString('base64');
  }
  const bytes = Buffer.allocUnsafe(vector.length * 4);
  vector.forEach((x, i) => bytes.writeFloatLE(x, i * 4));
  return bytes.toString('base64');
}

const IS_LITTLE_ENDIAN = endianness() === 'LE';
