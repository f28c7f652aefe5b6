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

t.test('tool-call fragments, several choices, refusals, logprobs and upstream fields', async (t) => {
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
      system_fingerprint: 'fp_1',
      service_tier: 'default',
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
  t.equal(completion['system_fingerprint'], 'fp_1', "the upstream's own fields carry over");
  t.equal(completion['service_tier'], 'default');
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

t.test('an Azure OpenAI stream: the first chunk has no id, model or choices, only prompt_filter_results', async (t) => {
  // The completion is the real answer's (its id, created, model, system_fingerprint), as the upstream's own
  // stream:false answer would be, and keeps the prompt filter results; not the empty first chunk's.
  const agg = new CompletionAggregator();
  const real = { ...base, id: 'chatcmpl-REAL', created: 1720000000, model: 'gpt-4o-2024-08-06' };
  const filters = [{ prompt_index: 0, content_filter_results: {} }];
  const chunks: ChatCompletionChunk[] = [
    {
      choices: [],
      created: 0,
      id: '',
      model: '',
      object: '' as 'chat.completion.chunk',
      prompt_filter_results: filters,
    },
    {
      ...real,
      system_fingerprint: 'fp_abc',
      choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
    },
    { ...real, system_fingerprint: 'fp_abc', choices: [{ index: 0, delta: { content: 'Hi' }, finish_reason: null }] },
    { ...real, system_fingerprint: 'fp_abc', choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
  ];
  for (const c of chunks) agg.chunk(c);
  const completion = agg.toCompletion();
  t.same(
    { ...completion, choices: undefined },
    {
      id: 'chatcmpl-REAL',
      object: 'chat.completion',
      created: 1720000000,
      model: 'gpt-4o-2024-08-06',
      prompt_filter_results: filters,
      system_fingerprint: 'fp_abc',
      choices: undefined,
    },
  );
  t.equal(completion.choices[0]!.message.content, 'Hi');
});

t.test('upstream fields named like Object’s own properties carry over; __proto__ is never set', async (t) => {
  const agg = new CompletionAggregator();
  agg.chunk(
    JSON.parse(
      '{"id":"c1","object":"chat.completion.chunk","created":9,"model":"m","choices":[],' +
        '"constructor":"x","toString":"y","__proto__":{"polluted":true}}',
    ) as ChatCompletionChunk,
  );
  const completion = agg.toCompletion();
  const named = Object.entries(completion).filter(([key]) => key === 'constructor' || key === 'toString');
  t.same(named, [
    ['constructor', 'x'],
    ['toString', 'y'],
  ]);
  t.equal(Object.getPrototypeOf(completion), Object.prototype);
  t.notOk('polluted' in completion);
});

t.test(
  'an upstream field null at first and set later takes the later value; a chunk with no id is not the identity',
  async (t) => {
    const agg = new CompletionAggregator();
    const noId = {
      object: 'chat.completion.chunk',
      created: 0,
      model: '',
      choices: [],
    } as unknown as ChatCompletionChunk;
    agg.chunk({ ...noId, id: '', system_fingerprint: null });
    agg.chunk(noId);
    agg.chunk({
      ...base,
      system_fingerprint: 'fp_1',
      choices: [{ index: 0, delta: { content: 'x' }, finish_reason: null }],
    });
    agg.chunk({ ...base, id: 'c2', system_fingerprint: 'fp_2', choices: [] });
    const completion = agg.toCompletion();
    t.same([completion.id, completion.model, completion['system_fingerprint']], ['c1', 'm', 'fp_1']);
  },
);
