import { openaiErrorBody, openaiErrorEvent, openaiUsage, sse, type FormatFrames, type MockAnswer } from './formats.js';
import { pieces, type MockCall, type ToolFrames } from './tool-frames.js';

// OpenAI's legacy completions (text answers) and Responses API (text, JSON
// mode and function calls) in their wire shapes (SPEC §8, §12), streamed and
// not.
// https://platform.openai.com/docs/api-reference/completions
// https://platform.openai.com/docs/api-reference/responses-streaming

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

function completionChunk(a: MockAnswer, text: string, finish: string | null): string {
  return JSON.stringify({
    id: `cmpl-${a.id}`,
    object: 'text_completion',
    created: a.created,
    model: a.model,
    choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
  });
}

export const completions: FormatFrames = {
  streamContentType: 'text/event-stream; charset=utf-8',
  start: () => '',
  token: (a, text) => sse(a, completionChunk(a, text, null)),
  end(a, completionTokens, finish) {
    let out = sse(a, completionChunk(a, '', finish));
    if (a.includeUsage) {
      const usage = openaiUsage(a, completionTokens);
      out += sse(
        a,
        JSON.stringify({
          id: `cmpl-${a.id}`,
          object: 'text_completion',
          created: a.created,
          model: a.model,
          choices: [],
          usage,
        }),
      );
    }
    return out + sse(a, '[DONE]');
  },
  malformed: (a) => sse(a, '{"id":"broken","choices":[{'),
  longLine: (a, bytes) => sse(a, completionChunk(a, 'x'.repeat(bytes), null)),
  errorBody: openaiErrorBody,
  errorEvent: openaiErrorEvent,
  completion: (a, text, completionTokens, finish) => ({
    id: `cmpl-${a.id}`,
    object: 'text_completion',
    created: a.created,
    model: a.model,
    choices: [{ text, index: 0, logprobs: null, finish_reason: finish }],
    usage: openaiUsage(a, completionTokens),
  }),
  isStream: (body) => body['stream'] === true,
  maxTokens: (body) => num(body['max_tokens']),
};

const itemId = (a: MockAnswer): string => `msg_${a.id}`;

function outputItem(a: MockAnswer, text: string, status: string): Record<string, unknown> {
  return {
    id: itemId(a),
    type: 'message',
    status,
    role: 'assistant',
    content: status === 'in_progress' ? [] : [{ type: 'output_text', text, annotations: [], logprobs: [] }],
  };
}

function responseObject(
  a: MockAnswer,
  status: string,
  output: unknown[],
  completionTokens?: number,
): Record<string, unknown> {
  const usage =
    completionTokens === undefined
      ? null
      : {
          input_tokens: a.promptTokens,
          input_tokens_details: { cached_tokens: 0 },
          output_tokens: completionTokens,
          output_tokens_details: { reasoning_tokens: 0 },
          total_tokens: a.promptTokens + completionTokens,
        };
  return {
    id: `resp_${a.id}`,
    object: 'response',
    created_at: a.created,
    status,
    error: null,
    incomplete_details: status === 'incomplete' ? { reason: 'max_output_tokens' } : null,
    instructions: null,
    max_output_tokens: null,
    model: a.model,
    output,
    parallel_tool_calls: true,
    previous_response_id: null,
    temperature: 1,
    text: { format: { type: 'text' } },
    tool_choice: 'auto',
    tools: [],
    top_p: 1,
    truncation: 'disabled',
    usage,
    metadata: {},
  };
}

/** One Responses API event: `event:` line and the same `type` in the data, numbered. */
function event(a: MockAnswer, type: string, fields: Record<string, unknown>): string {
  const sequence = a.seq ?? 0;
  a.seq = sequence + 1;
  return sse(a, JSON.stringify({ type, sequence_number: sequence, ...fields }), type);
}

/** A function call of a Responses answer: an output item of its own, `call_id` what the next request answers. */
function functionCallItem(a: MockAnswer, call: MockCall, index: number, status: string): Record<string, unknown> {
  return {
    id: `fc_${a.id}_${index}`,
    type: 'function_call',
    status,
    arguments: status === 'in_progress' ? '' : call.args,
    call_id: call.id,
    name: call.name,
  };
}

/**
 * Function calls in the Responses API's shape (tool-frames.ts has the chat formats'): each call an output item, its
 * arguments streamed as `response.function_call_arguments.delta` pieces, then `.done` and the item's whole form.
 */
export const responsesTools: ToolFrames = {
  stream(a, calls, completionTokens) {
    const out = [
      event(a, 'response.created', { response: responseObject(a, 'in_progress', []) }),
      event(a, 'response.in_progress', { response: responseObject(a, 'in_progress', []) }),
    ];
    calls.forEach((call, index) => {
      const itemId = `fc_${a.id}_${index}`;
      out.push(
        event(a, 'response.output_item.added', {
          output_index: index,
          item: functionCallItem(a, call, index, 'in_progress'),
        }),
      );
      for (const piece of pieces(call.args))
        out.push(
          event(a, 'response.function_call_arguments.delta', { item_id: itemId, output_index: index, delta: piece }),
        );
      out.push(
        event(a, 'response.function_call_arguments.done', {
          item_id: itemId,
          output_index: index,
          name: call.name,
          arguments: call.args,
        }),
        event(a, 'response.output_item.done', {
          output_index: index,
          item: functionCallItem(a, call, index, 'completed'),
        }),
      );
    });
    const items = calls.map((call, index) => functionCallItem(a, call, index, 'completed'));
    out.push(event(a, 'response.completed', { response: responseObject(a, 'completed', items, completionTokens) }));
    return out;
  },
  completion: (a, calls, completionTokens) =>
    responseObject(
      a,
      'completed',
      calls.map((call, index) => functionCallItem(a, call, index, 'completed')),
      completionTokens,
    ),
};

export const responses: FormatFrames = {
  streamContentType: 'text/event-stream; charset=utf-8',
  start: (a) =>
    event(a, 'response.created', { response: responseObject(a, 'in_progress', []) }) +
    event(a, 'response.in_progress', { response: responseObject(a, 'in_progress', []) }) +
    event(a, 'response.output_item.added', { output_index: 0, item: outputItem(a, '', 'in_progress') }) +
    event(a, 'response.content_part.added', {
      item_id: itemId(a),
      output_index: 0,
      content_index: 0,
      part: { type: 'output_text', text: '', annotations: [] },
    }),
  token: (a, text) =>
    event(a, 'response.output_text.delta', {
      item_id: itemId(a),
      output_index: 0,
      content_index: 0,
      delta: text,
      logprobs: [],
    }),
  end(a, completionTokens, finish) {
    const text = (a.sent ?? []).join('');
    const status = finish === 'length' ? 'incomplete' : 'completed';
    const part = { type: 'output_text', text, annotations: [], logprobs: [] };
    return (
      event(a, 'response.output_text.done', {
        item_id: itemId(a),
        output_index: 0,
        content_index: 0,
        text,
        logprobs: [],
      }) +
      event(a, 'response.content_part.done', { item_id: itemId(a), output_index: 0, content_index: 0, part }) +
      event(a, 'response.output_item.done', { output_index: 0, item: outputItem(a, text, 'completed') }) +
      event(a, `response.${status}`, {
        response: responseObject(a, status, [outputItem(a, text, 'completed')], completionTokens),
      })
    );
  },
  malformed: (a) => sse(a, '{"type":"response.output_text.delta",', 'response.output_text.delta'),
  longLine: (a, bytes) =>
    event(a, 'response.output_text.delta', {
      item_id: itemId(a),
      output_index: 0,
      content_index: 0,
      delta: 'x'.repeat(bytes),
    }),
  errorBody: openaiErrorBody,
  // The Responses API's own in-stream error: `event: error`, `{type: "error", code, message, param, sequence_number}`.
  errorEvent: (a, status, message) =>
    event(a, 'error', { code: status >= 500 ? 'server_error' : 'invalid_request_error', message, param: null }),
  completion: (a, text, completionTokens, finish) =>
    responseObject(
      a,
      finish === 'length' ? 'incomplete' : 'completed',
      [outputItem(a, text, 'completed')],
      completionTokens,
    ),
  isStream: (body) => body['stream'] === true,
  maxTokens: (body) => num(body['max_output_tokens']),
};
