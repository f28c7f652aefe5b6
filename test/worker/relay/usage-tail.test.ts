import t from 'tap';
import { UsageTail, findUsage, usageOf } from '../../../worker/relay/usage-tail.js';
import { watchShift } from '../../helpers/array-shift.js';

// SPEC §9, §12: the usage of a relayed JSON answer, read from its last bytes.

t.test('findUsage: the last usage object, whatever surrounds it', async (t) => {
  const cases: Array<[string, string, Record<string, unknown> | undefined]> = [
    [
      'chat',
      '{"id":"x","choices":[],"usage":{"prompt_tokens":1,"completion_tokens":2,"total_tokens":3}}',
      { prompt_tokens: 1, completion_tokens: 2, total_tokens: 3 },
    ],
    [
      'spaces and newlines',
      '{"usage" :\n {"prompt_tokens": 4, "details": {"cached_tokens": 0}}\n}',
      { prompt_tokens: 4, details: { cached_tokens: 0 } },
    ],
    [
      'responses, keys after usage',
      '{"output":[],"usage":{"input_tokens":5,"output_tokens":6},"user":null,"metadata":{"k":"}"}}',
      { input_tokens: 5, output_tokens: 6 },
    ],
    [
      'a usage word inside a string is not a key',
      '{"text":"say \\"usage\\": {1}","usage":{"prompt_tokens":7}}',
      { prompt_tokens: 7 },
    ],
    ['a brace inside a string value', '{"usage":{"note":"}{","prompt_tokens":8}}', { note: '}{', prompt_tokens: 8 }],
    ['no usage', '{"id":"x"}', undefined],
    ['usage null', '{"usage":null}', undefined],
    ['cut off', '{"usage":{"prompt_tokens":9', undefined],
  ];
  for (const [name, text, expected] of cases) t.same(findUsage(text), expected, name);
});

t.test('usageOf: OpenAI and Responses names', async (t) => {
  t.same(usageOf({ prompt_tokens: 1, completion_tokens: 2 }), { prompt_tokens: 1, completion_tokens: 2 });
  t.same(usageOf({ input_tokens: 3, output_tokens: 4 }), { prompt_tokens: 3, completion_tokens: 4 });
  t.same(usageOf({ prompt_tokens: 5, total_tokens: 5 }), { prompt_tokens: 5, completion_tokens: 0 }, 'embeddings');
  t.equal(usageOf(undefined), undefined);
});

t.test('UsageTail keeps only the end of a long answer', async (t) => {
  const tail = new UsageTail(64);
  tail.push(Buffer.from('{"data":[' + '1,'.repeat(10_000)));
  tail.push(Buffer.from('2],"usage":{"prompt_tokens":11,"total_tokens":11}}'));
  t.same(tail.usage(), { prompt_tokens: 11, completion_tokens: 0 });
  const split = new UsageTail(64);
  for (const c of '{"usage":{"input_tokens":1,"output_tokens":2}}') split.push(Buffer.from(c));
  t.same(split.usage(), { prompt_tokens: 1, completion_tokens: 2 }, 'one byte at a time');
});

t.test('UsageTail keeps the same last bytes, whatever the chunks, without shifting through them', async (t) => {
  // A probe: 16,384 one-byte chunks were held, and each new one shifted them all (~7 µs a chunk); now each byte is
  // copied into one buffer. Counted as the length of the arrays shift() was called on (not timed), and checked
  // against the answer's last bytes for chunks of every size, across the buffer's moves.
  const shifts = watchShift(t);
  const tail = new UsageTail();
  const answer = `{"data":[${'1,'.repeat(20_000)}2],"usage":{"prompt_tokens":11,"total_tokens":11}}`;
  for (const c of answer) tail.push(Buffer.from(c));
  const longest = shifts.stop();
  t.same(tail.usage(), { prompt_tokens: 11, completion_tokens: 0 });
  t.equal(longest, 0, 'no shift()');
  const body = Buffer.from(`{"data":[${'3,'.repeat(5_000)}4],"usage":{"prompt_tokens":12,"completion_tokens":1}}`);
  for (const sizes of [[1], [7, 1, 30], [63, 64, 65], [100, 1000], [20_000]]) {
    const cut = new UsageTail(64);
    for (let at = 0, i = 0; at < body.length; i++) {
      const size = sizes[i % sizes.length]!;
      cut.push(body.subarray(at, at + size));
      at += size;
    }
    t.same(cut.usage(), { prompt_tokens: 12, completion_tokens: 1 }, `chunks of ${sizes.join(', ')} bytes`);
  }
});
