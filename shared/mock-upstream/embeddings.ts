import { countPromptTokens } from './text.js';

// Embeddings in OpenAI's (`/v1/embeddings`) and Ollama's (`/api/embed`) shapes
// (SPEC §8, §12). Each vector depends only on its text and dimension count,
// has unit length, and holds float32 values exactly, so a test can compute
// the expected vector and compare base64 and float answers exactly.

const DEFAULT_EMBEDDING_DIMENSIONS = 8;

/** The mock's embedding of `text`: a unit vector of float32 values. */
export function mockEmbedding(text: string, dimensions = DEFAULT_EMBEDDING_DIMENSIONS): number[] {
  let hash = 0x811c9dc5; // FNV-1a over the UTF-8 bytes
  for (const byte of Buffer.from(text, 'utf8')) hash = Math.imul(hash ^ byte, 0x01000193) >>> 0;
  const raw = Array.from({ length: dimensions }, (_, i) => Math.sin(hash / 1000 + i * 1.7));
  const norm = Math.hypot(...raw) || 1;
  return raw.map((x) => Math.fround(x / norm));
}

/** An embeddings request's inputs as texts (token arrays as their JSON, so they embed too). */
export function embeddingInputs(input: unknown): string[] {
  if (typeof input === 'string') return [input];
  if (!Array.isArray(input)) return [];
  if (input.every((x) => typeof x === 'number')) return [JSON.stringify(input)];
  return input.map((x) => (typeof x === 'string' ? x : JSON.stringify(x)));
}

function dimensionsOf(body: Record<string, unknown>): number {
  const d = body['dimensions'];
  return typeof d === 'number' && Number.isInteger(d) && d > 0 && d <= 4096 ? d : DEFAULT_EMBEDDING_DIMENSIONS;
}

export function openaiEmbeddings(body: Record<string, unknown>, model: string): unknown {
  const inputs = embeddingInputs(body['input']);
  const dimensions = dimensionsOf(body);
  const isBase64 = body['encoding_format'] === 'base64';
  const tokens = countPromptTokens(inputs);
  return {
    object: 'list',
    data: inputs.map((text, index) => {
      const vector = mockEmbedding(text, dimensions);
      return {
        object: 'embedding',
        index,
        embedding: isBase64 ? Buffer.from(new Float32Array(vector).buffer).toString('base64') : vector,
      };
    }),
    model,
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

export function ollamaEmbed(body: Record<string, unknown>, model: string): unknown {
  const inputs = embeddingInputs(body['input']);
  const dimensions = dimensionsOf(body);
  return {
    model,
    embeddings: inputs.map((text) => mockEmbedding(text, dimensions)),
    total_duration: 1000,
    load_duration: 100,
    prompt_eval_count: countPromptTokens(inputs),
  };
}
