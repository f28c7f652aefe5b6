import t from 'tap';
import { modelsFromUpstream, configuredModel } from '../../../worker/models/model-list.js';

// SPEC §12: each format's model list → OpenAI model objects.

t.test('per format', async (t) => {
  t.same(
    modelsFromUpstream(
      'openai',
      {
        object: 'list',
        data: [{ id: 'gpt-x', object: 'model', created: 5, owned_by: 'openai', extra: 1 }, { id: 'bare' }],
      },
      'graygate/v1',
    ),
    [
      { id: 'gpt-x', object: 'model', created: 5, owned_by: 'openai', extra: 1 },
      { id: 'bare', object: 'model', created: 0, owned_by: 'graygate/v1' },
    ],
  );
  t.same(
    modelsFromUpstream(
      'ollama',
      {
        models: [
          { name: 'llama3.2:1b', model: 'llama3.2:1b', modified_at: '2024-05-01T10:00:00.5-07:00' },
          { model: 'qwen3' },
        ],
      },
      'graygate/v2',
    ),
    [
      { id: 'llama3.2:1b', object: 'model', created: 1714582800, owned_by: 'graygate/v2' },
      { id: 'qwen3', object: 'model', created: 0, owned_by: 'graygate/v2' },
    ],
  );
  t.same(
    modelsFromUpstream(
      'anthropic',
      {
        data: [{ type: 'model', id: 'claude-x', display_name: 'Claude X', created_at: '2025-02-19T00:00:00Z' }],
        has_more: false,
      },
      'graygate/v3',
    ),
    [{ id: 'claude-x', object: 'model', created: 1739923200, owned_by: 'graygate/v3' }],
  );
  t.same(configuredModel('m', 'graygate/v1'), { id: 'm', object: 'model', created: 0, owned_by: 'graygate/v1' });
});

t.test('lists of another shape are upstream_protocol_errors', async (t) => {
  for (const [format, value] of [
    ['openai', { models: [] }],
    ['ollama', { data: [] }],
    ['anthropic', null],
    ['openai', { data: [{ id: 3 }] }],
    ['ollama', { models: [{}] }],
  ] as const) {
    t.throws(
      () => modelsFromUpstream(format, value, 'o'),
      { code: 'upstream_protocol_error' },
      `${format} ${JSON.stringify(value)}`,
    );
  }
});
