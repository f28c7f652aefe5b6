// The model lists the mock answers (SPEC §8, §12), in each format's shape:
// OpenAI `GET /v1/models`, Ollama `GET /api/tags`, Anthropic `GET /v1/models`
// (told apart from OpenAI's by its `anthropic-version` header).

/** Unix seconds every listed model was "created" at: 2024-01-01. */
export const MOCK_MODEL_CREATED = 1_704_067_200;

export function openaiModelList(models: readonly string[]): unknown {
  return {
    object: 'list',
    data: models.map((id) => ({ id, object: 'model', created: MOCK_MODEL_CREATED, owned_by: 'mock' })),
  };
}

export function ollamaModelList(models: readonly string[]): unknown {
  const modifiedAt = new Date(MOCK_MODEL_CREATED * 1000).toISOString();
  return {
    models: models.map((name) => ({
      name,
      model: name,
      modified_at: modifiedAt,
      size: 1_000_000,
      digest: 'sha256:0000',
      details: {
        parent_model: '',
        format: 'gguf',
        family: 'mock',
        families: ['mock'],
        parameter_size: '1B',
        quantization_level: 'Q4_0',
      },
    })),
  };
}

export function anthropicModelList(models: readonly string[]): unknown {
  const createdAt = new Date(MOCK_MODEL_CREATED * 1000).toISOString();
  return {
    data: models.map((id) => ({ type: 'model', id, display_name: id, created_at: createdAt })),
    has_more: false,
    first_id: models[0] ?? null,
    last_id: models.at(-1) ?? null,
  };
}
