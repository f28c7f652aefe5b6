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
    choices: [
      {
        index: 0,
        message: { role: 'assistant', content: 'Héllo 🚀', refusal: null },
        finish_reason: 'stop',
        logprobs: null,
      },
    ],
    usage: { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
  });
  t.equal(agg.contentChunks, 2);
});

t.test('an answer a content filter stopped before any text has content null, as an empty one has ""', async (t) => {
  // Anthropic's stop_reason "refusal" with no content block is finish_reason content_filter and no text at all.
  const answer = (finish: 'content_filter' | 'length'): unknown => {
    const agg = new CompletionAggregator({ maxHeld: 1 << 20 });
    agg.chunk({ ...base, choices: [{ index: 0, delta: { role: 'assistant' }, finish_reason: null }] });
    agg.chunk({ ...base, choices: [{ index: 0, delta: {}, finish_reason: finish }] });
    return agg.toCompletion().choices[0]!.message.content;
  };
  t.equal(answer('content_filter'), null);
  t.equal(answer('length'), '', 'an empty answer stopped for length: "" as OpenAI sends');
});

t.test('tool-call fragments, several choices, refusals and logprobs', async (t) => {
  const agg = new CompletionAggregator();
  const lp = (token: string): { token: string; logprob: number; bytes: null; top_logprobs: [] } => ({
    token,
    logprob: -1,
    bytes: null,
    top_logprobs: [],
  });
  const chunks: ChatCompletionChunk[] = [
    {
      ...base,
      choices: [{ index: 0, delta: { role: 'assistant', content: null }, finish_reason: null }],
    },
    {
      ...base,
      choices: [
        {
          index: 0,
          delta: { tool_calls: [{ index: 0, id: 'call_a', type: 'function', function: { name: 'f', arguments: '' } }] },
          finish_reason: null,
        },
      ],
    },
    {
      ...base,
      choices: [
        {
          index: 0,
          delta: { tool_calls: [{ index: 1, id: 'call_b', type: 'function', function: { name: 'g', arguments: '' } }] },
          finish_reason: null,
        },
      ],
    },
    {
      ...base,
      choices: [
        { index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '{"x":' } }] }, finish_reason: null },
      ],
    },
    {
      ...base,
      choices: [
        { index: 0, delta: { tool_calls: [{ index: 1, function: { arguments: '{}' } }] }, finish_reason: null },
      ],
    },
    {
      ...base,
      choices: [
        { index: 0, delta: { tool_calls: [{ index: 0, function: { arguments: '1}' } }] }, finish_reason: null },
      ],
    },
    {
      ...base,
      choices: [
        {
          index: 1,
          delta: { role: 'assistant', content: 'B' },
          finish_reason: null,
          logprobs: { content: [lp('B')], refusal: null },
        },
      ],
    },
    {
      ...base,
      choices: [
        {
          index: 1,
          delta: { content: 'ye', reasoning_content: 'th' },
          finish_reason: null,
          logprobs: { content: [lp('ye')], refusal: null },
        },
      ],
    },
    { ...base, choices: [{ index: 1, delta: { reasoning_content: 'ink' }, finish_reason: null }] },
    { ...base, choices: [{ index: 2, delta: { refusal: 'I cannot' }, finish_reason: null }] },
    {
      ...base,
      choices: [
        { index: 0, delta: {}, finish_reason: 'tool_calls' },
        { index: 1, delta: {}, finish_reason: 'stop' },
        { index: 2, delta: {}, finish_reason: 'content_filter' },
      ],
    },
  ];
  for (const c of chunks) agg.chunk(c);
  const completion = agg.toCompletion();
  t.same(completion.choices, [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: null,
        refusal: null,
        tool_calls: [
          { id: 'call_a', type: 'function', function: { name: 'f', arguments: '{"x":1}' } },
          { id: 'call_b', type: 'function', function: { name: 'g', arguments: '{}' } },
        ],
      },
      finish_reason: 'tool_calls',
      logprobs: null,
    },
    {
      index: 1,
      message: { role: 'assistant', content: 'Bye', refusal: null, reasoning_content: 'think' },
      finish_reason: 'stop',
      logprobs: { content: [lp('B'), lp('ye')], refusal: null },
    },
    {
      index: 2,
      message: { role: 'assistant', content: null, refusal: 'I cannot' },
      finish_reason: 'content_filter',
      logprobs: null,
    },
  ]);
});

t.test('no chunks at all: one empty choice', async (t) => {
  t.same(new CompletionAggregator().toCompletion().choices, [
    { index: 0, message: { role: 'assistant', content: '', refusal: null }, finish_reason: null, logprobs: null },
  ]);
});

t.test('what the answer holds is bounded: text, then log probabilities, counted as they come', async (t) => {
  const agg = new CompletionAggregator({ maxHeld: 1400 });
  const token = (text: string): ChatCompletionChunk => ({
    ...base,
    choices: [{ index: 0, delta: { content: text }, finish_reason: null }],
  });
  agg.chunk(token('x'.repeat(150))); // 800 for the choice, 32 + 150 for its text
  const entry = { token: 'y', logprob: -1, bytes: [121], top_logprobs: [] };
  agg.chunk({ ...base, choices: [{ index: 0, delta: {}, logprobs: { content: [entry] }, finish_reason: null }] });
  t.throws(
    () =>
      agg.chunk({
        ...base,
        choices: [{ index: 0, delta: {}, logprobs: { content: [{ ...entry, bytes: [1, 2] }] }, finish_reason: null }],
      }),
    { code: 'answer_too_large', shouldRetry: false },
    'one log probability is 224 + its token + 8 a byte: 982 + 233 + 241 is over 1,400',
  );
});

t.test(
  "a tool call's id and name count, and each new call and choice: a hostile upstream's many are bounded",
  async (t) => {
    const call = (index: number, name: string): ChatCompletionChunk => ({
      ...base,
      choices: [
        {
          index: 0,
          delta: { tool_calls: [{ index, id: `call_${index}`, type: 'function', function: { name, arguments: '' } }] },
          finish_reason: null,
        },
      ],
    });
    const agg = new CompletionAggregator({ maxHeld: 64 * 1024 });
    agg.chunk(call(0, 'f'));
    t.throws(() => agg.chunk(call(1, 'n'.repeat(64 * 1024))), { code: 'answer_too_large' }, 'a name past the bound');
    const many = new CompletionAggregator({ maxHeld: 64 * 1024 });
    t.throws(
      () => {
        for (let i = 0; i < 1000; i++) many.chunk(call(i, 'f'));
      },
      { code: 'answer_too_large' },
      'a thousand empty calls',
    );
    const choices = new CompletionAggregator({ maxHeld: 64 * 1024 });
    t.throws(
      () => {
        for (let i = 0; i < 2000; i++)
          choices.chunk({ ...base, choices: [{ index: i, delta: {}, finish_reason: null }] });
      },
      { code: 'answer_too_large' },
      'two thousand empty choices',
    );
  },
);

t.test(
  'each fragment, call and choice counts what it holds in memory, not a fixed 64 (a hostile answer held 5-12×)',
  async (t) => {
    // Under a 64 KiB bound each of these is refused; counted as before (its string's length, 64 a call or a
    // choice) each held 3 to 12 times what it was counted as (node dist/scripts/bench/aggregate-memory.js).
    const delta = (index: number, d: ChatCompletionChunk['choices'][number]['delta']): ChatCompletionChunk => ({
      ...base,
      choices: [{ index, delta: d, finish_reason: null }],
    });
    const shapes: Array<[string, number, (i: number) => ChatCompletionChunk]> = [
      ['2,000 text fragments of 3 characters', 2000, (i) => delta(0, { content: String(100 + (i % 900)) })],
      ['1,200 reasoning fragments of 3 characters', 1200, (i) => delta(0, { reasoning: String(100 + (i % 900)) })],
      [
        '2,000 argument fragments of 3 characters',
        2000,
        () => delta(0, { tool_calls: [{ index: 0, function: { arguments: '{"a' } }] }),
      ],
      [
        '140 tool calls',
        140,
        (i) =>
          delta(0, {
            tool_calls: [{ index: i, id: `c${i}`, type: 'function', function: { name: 'f', arguments: '' } }],
          }),
      ],
      ['90 choices', 90, (i) => delta(i, { content: 'a' })],
    ];
    for (const [name, count, chunk] of shapes) {
      const agg = new CompletionAggregator({ maxHeld: 64 * 1024 });
      t.throws(
        () => {
          for (let i = 0; i < count; i++) agg.chunk(chunk(i));
        },
        { code: 'answer_too_large' },
        name,
      );
    }
  },
);

t.test('a chunk with 250,000 log probabilities is taken, not a stack overflow', async (t) => {
  const entry = { token: 'y', logprob: -1, bytes: null, top_logprobs: [] };
  const content = Array.from({ length: 250_000 }, () => entry);
  const agg = new CompletionAggregator({ maxHeld: 64 * 1024 * 1024 });
  agg.chunk({ ...base, choices: [{ index: 0, delta: {}, logprobs: { content }, finish_reason: null }] });
  t.equal(agg.toCompletion().choices[0]!.logprobs!.content!.length, 250_000);
});
