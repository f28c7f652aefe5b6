import t from 'tap';
import OpenAI from 'openai';
import { FORMATS, startFormatGateway } from '../helpers/format-gateway.js';
import { mockText, countPromptTokens } from '../../shared/mock-upstream/index.js';

// Issue 9 part 6, through the real master and worker: an upstream that uses
// every framing its format allows at once (shared/mock-upstream `framing=quirks`:
// SSE with JSON spread over several `data:` lines, comments, `event:` and
// `data:` without their space, id and retry fields, CRLF/CR/LF endings that
// change between events; NDJSON with CRLF, blank lines and no final newline;
// both written 3 bytes at a time so UTF-8 characters arrive split) still gives
// the official openai client exactly the answer's text.

const TOKENS = 19; // the mock's whole vocabulary: 2-, 3- and 4-byte characters included

t.test('every upstream framing quirk at once, per format', async (t) => {
  const { gw } = await startFormatGateway(t);
  const messages = [{ role: 'user' as const, content: `Say hello [mock tokens=${TOKENS} framing=quirks]` }];
  const promptTokens = countPromptTokens(messages.map((m) => m.content));

  for (const format of FORMATS) {
    const client = new OpenAI({
      baseURL: `${gw.url}/v1`,
      apiKey: 'not-used',
      maxRetries: 0,
      defaultHeaders: { 'x-version': format },
    });

    t.test(`${format}: streamed`, async (t) => {
      const stream = await client.chat.completions.create({
        model: 'test-model',
        messages,
        stream: true,
        stream_options: { include_usage: true },
      });
      const parts: string[] = [];
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | null | undefined;
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (choice?.delta.content) parts.push(choice.delta.content);
        if (choice?.finish_reason) finish = choice.finish_reason;
        if (chunk.usage) usage = chunk.usage;
      }
      t.equal(parts.join(''), mockText(TOKENS), 'exact text');
      t.equal(finish, 'stop');
      t.same(usage, { prompt_tokens: promptTokens, completion_tokens: TOKENS, total_tokens: promptTokens + TOKENS });
    });

    t.test(`${format}: aggregated`, async (t) => {
      const completion = await client.chat.completions.create({ model: 'test-model', messages });
      t.equal(completion.choices[0]?.message.content, mockText(TOKENS));
      t.equal(completion.choices[0]?.finish_reason, 'stop');
    });
  }
});
