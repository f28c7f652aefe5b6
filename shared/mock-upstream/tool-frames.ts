import {
  anthropicMessageStart,
  chunk,
  isoOf,
  ndjson,
  openaiUsage,
  sse,
  usageChunk,
  type MockAnswer,
  type MockFormat,
} from './formats.js';

// Tool-call answers in each format's wire shape (SPEC §8, §12):
//  openai     chunks with `delta.tool_calls`: the first fragment of a call has
//             index, id, type, name and empty arguments, the next ones
//             argument pieces; finish_reason "tool_calls"
//  ollama     one line with every call whole (`message.tool_calls`, arguments
//             as an object, ids and `function.index` as Ollama ≥ 0.12.10
//             sends them), then the `done` line
//  anthropic  a `tool_use` block per call (input_json_delta pieces; a call
//             without arguments one empty piece, as Anthropic streams it),
//             stop_reason "tool_use"

export interface MockCall {
  id: string;
  name: string;
  /** The arguments as JSON text. */
  args: string;
}

export interface ToolFrames {
  /** A streamed answer's events, one string per write (argument pieces apart, so the writer can pace them). */
  stream(a: MockAnswer, calls: MockCall[], completionTokens: number): string[];
  /** The non-streamed answer. */
  completion(a: MockAnswer, calls: MockCall[], completionTokens: number): unknown;
}

/** Argument text in pieces of a few characters (whole code points), as models stream them. */
export function pieces(text: string, size = 6): string[] {
  const chars = Array.from(text);
  const out: string[] = [];
  for (let i = 0; i < chars.length; i += size) out.push(chars.slice(i, i + size).join(''));
  return out;
}

const openai: ToolFrames = {
  stream(a, calls, completionTokens) {
    const out = [sse(a, chunk(a, { role: 'assistant', content: null }, null))];
    calls.forEach((call, index) => {
      out.push(
        sse(
          a,
          chunk(
            a,
            { tool_calls: [{ index, id: call.id, type: 'function', function: { name: call.name, arguments: '' } }] },
            null,
          ),
        ),
      );
      for (const piece of pieces(call.args))
        out.push(sse(a, chunk(a, { tool_calls: [{ index, function: { arguments: piece } }] }, null)));
    });
    out.push(sse(a, chunk(a, {}, 'tool_calls')));
    if (a.includeUsage) out.push(sse(a, usageChunk(a, completionTokens)));
    out.push(sse(a, '[DONE]'));
    return out;
  },
  completion: (a, calls, completionTokens) => ({
    id: a.id,
    object: 'chat.completion',
    created: a.created,
    model: a.model,
    choices: [
      {
        index: 0,
        message: {
          role: 'assistant',
          content: null,
          refusal: null,
          tool_calls: calls.map((c) => ({ id: c.id, type: 'function', function: { name: c.name, arguments: c.args } })),
        },
        finish_reason: 'tool_calls',
        logprobs: null,
      },
    ],
    usage: openaiUsage(a, completionTokens),
  }),
};

const ollamaMessage = (calls: MockCall[]): Record<string, unknown> => ({
  role: 'assistant',
  content: '',
  tool_calls: calls.map((c, index) => ({
    id: c.id,
    function: { index, name: c.name, arguments: JSON.parse(c.args) as unknown },
  })),
});

const ollama: ToolFrames = {
  stream: (a, calls, completionTokens) => [
    ndjson(a, { model: a.model, created_at: isoOf(a), message: ollamaMessage(calls), done: false }),
    ndjson(
      a,
      {
        model: a.model,
        created_at: isoOf(a),
        message: { role: 'assistant', content: '' },
        done: true,
        done_reason: 'stop',
        prompt_eval_count: a.promptTokens,
        eval_count: completionTokens,
      },
      true,
    ),
  ],
  completion: (a, calls, completionTokens) => ({
    model: a.model,
    created_at: isoOf(a),
    message: ollamaMessage(calls),
    done: true,
    done_reason: 'stop',
    prompt_eval_count: a.promptTokens,
    eval_count: completionTokens,
  }),
};

const anthropic: ToolFrames = {
  stream(a, calls, completionTokens) {
    const event = (value: Record<string, unknown>): string => sse(a, JSON.stringify(value), value['type'] as string);
    const out = [anthropicMessageStart(a)];
    calls.forEach((call, index) => {
      out.push(
        event({
          type: 'content_block_start',
          index,
          content_block: { type: 'tool_use', id: call.id, name: call.name, input: {} },
        }),
      );
      for (const piece of call.args === '{}' ? [''] : pieces(call.args))
        out.push(
          event({ type: 'content_block_delta', index, delta: { type: 'input_json_delta', partial_json: piece } }),
        );
      out.push(event({ type: 'content_block_stop', index }));
    });
    out.push(
      event({
        type: 'message_delta',
        delta: { stop_reason: 'tool_use', stop_sequence: null },
        usage: { output_tokens: completionTokens },
      }),
    );
    out.push(event({ type: 'message_stop' }));
    return out;
  },
  completion: (a, calls, completionTokens) => ({
    id: a.id,
    type: 'message',
    role: 'assistant',
    model: a.model,
    content: calls.map((c) => ({ type: 'tool_use', id: c.id, name: c.name, input: JSON.parse(c.args) as unknown })),
    stop_reason: 'tool_use',
    stop_sequence: null,
    usage: { input_tokens: a.promptTokens, output_tokens: completionTokens },
  }),
};

export const TOOL_FRAMES: Record<MockFormat, ToolFrames> = { openai, ollama, anthropic };

/** Call ids as each format spells them. */
export function mockCallId(format: MockFormat, streamId: number, index: number): string {
  return `${format === 'anthropic' ? 'toolu' : 'call'}_mock${streamId}_${index}`;
}
