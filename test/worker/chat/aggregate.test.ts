import t from 'tap';
import { CompletionAggregator } from '../../../worker/chat/aggregate.js';
import type { ChatCompletionChunk } from '../../../worker/types.js';

const base = { id: 'c1', object: 'chat.completion.chunk' as const, created: 9, model: 'm' };

t.test('chunks aggregate into one chat.completion', async (t) => {
  const agg = new CompletionAggregator();
  const chunks: ChatCompletionChunk[] = [
    { ...base, choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }] },
    { ...base, choices: [{ index: 0, delta: { content: 'Hé' }, finish_reason: null }] },
    { ...base, choices: [{ index: 0, delta: { content: 'llo 🚀' }, finish_reason: null }] },
    { ...base, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
    { ...base, choices: [], usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 } },
  ];
  for (const c of chunks) agg.chunk(c);
  t.equal(agg.flush(), true, 'never pushes back');
  t.same(agg.toCompletion(), {
    id: 'c1',
    object: 'chat.completion',
    created: 9,
    model: 'm',
    choices: [{ index: 0, message: { role: 'assistant', content: 'Héllo 🚀', refusal: null }, finish_reason: 'stop', logprobs: null }],
    usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
  });
  t.equal(agg.contentChunks, 2);
});
