// Wire shapes of the three upstream formats the mock speaks (SPEC §2, §8):
// OpenAI chat.completion(.chunk) over SSE, Ollama /api/chat NDJSON, Anthropic
// /v1/messages SSE. Pure string builders, one object per format.

export type MockFormat = 'openai' | 'ollama' | 'anthropic';

export interface MockAnswer {
  id: string;
  /** Unix seconds. */
  created: number;
  model: string;
  promptTokens: number;
  /** Line ending of this stream. */
  nl: string;
  /** Every legal framing variant at once instead of `nl` (controls.ts `framing=quirks`). */
  quirks?: boolean;
  /** OpenAI only: the client asked for the usage chunk. */
  includeUsage: boolean;
  /** Text sent so far (the Responses API repeats the whole text at the end). */
  sent?: string[];
  /** Responses API: the next event's sequence_number. */
  seq?: number;
}

export interface FormatFrames {
  readonly streamContentType: string;
  start(a: MockAnswer): string;
  token(a: MockAnswer, text: string): string;
  end(a: MockAnswer, completionTokens: number, finish: 'stop' | 'length'): string;
  /** A line that is not valid JSON, framed like a real event. */
  malformed(a: MockAnswer): string;
  /** One framed line of about `bytes` bytes. */
  longLine(a: MockAnswer, bytes: number): string;
  errorBody(status: number, message: string): unknown;
  /** The error event a stream ends with when the upstream fails after its status (fault=error). */
  errorEvent(a: MockAnswer, status: number, message: string): string;
  completion(a: MockAnswer, text: string, completionTokens: number, finish: 'stop' | 'length'): unknown;
  isStream(body: Record<string, unknown>): boolean;
  maxTokens(body: Record<string, unknown>): number | undefined;
}

/** One SSE event in this answer's framing. */
export function sse(a: MockAnswer, data: string, event?: string): string {
  if (a.quirks === true) return quirkySse(data, event);
  return event === undefined ? `data: ${data}${a.nl}${a.nl}` : `event: ${event}${a.nl}data: ${data}${a.nl}${a.nl}`;
}

const QUIRK_NEWLINES = ['\r\n', '\r', '\n'] as const;

/** One event framed every way WHATWG HTML §9.2.6 allows; it decodes to the same type and (JSON-equal) data. */
function quirkySse(data: string, event: string | undefined): string {
  const nl = QUIRK_NEWLINES[data.length % QUIRK_NEWLINES.length]!;
  const lines = [': framed every way the standard allows'];
  // `message` is the type of an event without `event:`, so naming it changes nothing for a format that sends none.
  lines.push(`event:${event ?? 'message'}`);
  lines.push(`id: ${data.length}`, 'retry: 3000');
  spreadJson(data).forEach((line, i) => lines.push(i % 2 === 0 ? `data:${line}` : `data: ${line}`));
  return lines.join(nl) + nl + nl;
}

/** JSON pretty-printed over several lines (its strings stay whole); anything else as one line. */
function spreadJson(data: string): string[] {
  try {
    return JSON.stringify(JSON.parse(data), null, 1).split('\n');
  } catch {
    return [data];
  }
}

/** One NDJSON document; quirks: CRLF endings and blank lines after it, and no newline at all after the last. */
export function ndjson(a: MockAnswer, value: unknown, isLast = false): string {
  if (a.quirks !== true) return JSON.stringify(value) + a.nl;
  return isLast ? JSON.stringify(value) : `${JSON.stringify(value)}\r\n\r\n  \r\n`;
}

function num(value: unknown): number | undefined {
  return typeof value === 'number' && Number.isInteger(value) && value > 0 ? value : undefined;
}

/** OpenAI's error body, for chat and the other endpoints (endpoint-frames.ts). */
function errorTypeOf(status: number): string {
  if (status === 429) return 'rate_limit_exceeded';
  return status >= 500 ? 'server_error' : 'invalid_request_error';
}

export function openaiErrorBody(status: number, message: string): unknown {
  return {
    // api.openai.com's types: a 5xx is server_error, a 429 its rate limit, any other 4xx invalid_request_error.
    error: { message, type: errorTypeOf(status), param: null, code: null },
  };
}

/** OpenAI's in-stream error event (fault=error), for every OpenAI-shaped endpoint. */
export function openaiErrorEvent(a: MockAnswer, status: number, message: string): string {
  return sse(a, JSON.stringify(openaiErrorBody(status, message)));
}

const openai: FormatFrames = {
  streamContentType: 'text/event-stream; charset=utf-8',
  start: (a) => sse(a, chunk(a, { role: 'assistant', content: '' }, null)),
  token: (a, text) => sse(a, chunk(a, { content: text }, null)),
  end(a, completionTokens, finish) {
    let out = sse(a, chunk(a, {}, finish));
    if (a.includeUsage) out += sse(a, usageChunk(a, completionTokens));
    return out + sse(a, '[DONE]');
  },
  malformed: (a) => sse(a, '{"id":"broken","choices":[{'),
  longLine: (a, bytes) =>
    sse(
      a,
      JSON.stringify({
        id: a.id,
        object: 'chat.completion.chunk',
        created: a.created,
        model: a.model,
        padding: 'x'.repeat(bytes),
        choices: [],
      }),
    ),
  errorBody: openaiErrorBody,
  errorEvent: openaiErrorEvent,
  completion: (a, text, completionTokens, finish) => ({
    id: a.id,
    object: 'chat.completion',
    created: a.created,
    model: a.model,
    choices: [
      { index: 0, message: { role: 'assistant', content: text, refusal: null }, finish_reason: finish, logprobs: null },
    ],
    usage: openaiUsage(a, completionTokens),
  }),
  isStream: (body) => body['stream'] === true,
  maxTokens: (body) => num(body['max_completion_tokens']) ?? num(body['max_tokens']),
};

/** OpenAI's `usage` object, of every endpoint's answer and of the last stream chunk. */
export function openaiUsage(a: MockAnswer, completionTokens: number): Record<string, number> {
  return {
    prompt_tokens: a.promptTokens,
    completion_tokens: completionTokens,
    total_tokens: a.promptTokens + completionTokens,
  };
}

/** The chat.completion.chunk with no choices and the usage (`stream_options.include_usage`), its JSON. */
export function usageChunk(a: MockAnswer, completionTokens: number): string {
  return JSON.stringify({
    id: a.id,
    object: 'chat.completion.chunk',
    created: a.created,
    model: a.model,
    choices: [],
    usage: openaiUsage(a, completionTokens),
  });
}

/** An OpenAI chat.completion.chunk's JSON. */
export function chunk(a: MockAnswer, delta: Record<string, unknown>, finish: string | null): string {
  return JSON.stringify({
    id: a.id,
    object: 'chat.completion.chunk',
    created: a.created,
    model: a.model,
    choices: [{ index: 0, delta, finish_reason: finish }],
  });
}

const ollama: FormatFrames = {
  streamContentType: 'application/x-ndjson',
  start: () => '',
  token: (a, text) =>
    ndjson(a, { model: a.model, created_at: isoOf(a), message: { role: 'assistant', content: text }, done: false }),
  end: (a, completionTokens, finish) =>
    ndjson(
      a,
      {
        model: a.model,
        created_at: isoOf(a),
        message: { role: 'assistant', content: '' },
        done: true,
        done_reason: finish,
        total_duration: 0,
        prompt_eval_count: a.promptTokens,
        eval_count: completionTokens,
      },
      true,
    ),
  malformed: (a) => `{"model":"${a.model}","message":{${a.nl}`,
  longLine: (a, bytes) =>
    JSON.stringify({
      model: a.model,
      created_at: isoOf(a),
      message: { role: 'assistant', content: 'x'.repeat(bytes) },
      done: false,
    }) + a.nl,
  errorBody: (_status, message) => ({ error: message }),
  errorEvent: (a, _status, message) => JSON.stringify({ error: message }) + a.nl,
  completion: (a, text, completionTokens, finish) => ({
    model: a.model,
    created_at: isoOf(a),
    message: { role: 'assistant', content: text },
    done: true,
    done_reason: finish,
    prompt_eval_count: a.promptTokens,
    eval_count: completionTokens,
  }),
  // Ollama streams unless told not to.
  isStream: (body) => body['stream'] !== false,
  maxTokens: (body) => num((body['options'] as Record<string, unknown> | undefined)?.['num_predict']),
};

export function isoOf(a: MockAnswer): string {
  return new Date(a.created * 1000).toISOString();
}

const STOP_REASONS = { stop: 'end_turn', length: 'max_tokens' } as const;

/** Anthropic's first event of a message, text or tool use (tool-frames.ts). */
export function anthropicMessageStart(a: MockAnswer): string {
  return sse(
    a,
    JSON.stringify({
      type: 'message_start',
      message: {
        id: a.id,
        type: 'message',
        role: 'assistant',
        content: [],
        model: a.model,
        stop_reason: null,
        stop_sequence: null,
        usage: { input_tokens: a.promptTokens, output_tokens: 1 },
      },
    }),
    'message_start',
  );
}

function anthropicErrorBody(status: number, message: string): unknown {
  return {
    type: 'error',
    error: {
      type:
        status === 429
          ? 'rate_limit_error'
          : status === 529
            ? 'overloaded_error'
            : status < 500
              ? 'invalid_request_error'
              : 'api_error',
      message,
    },
  };
}

const anthropic: FormatFrames = {
  streamContentType: 'text/event-stream; charset=utf-8',
  start: (a) =>
    anthropicMessageStart(a) +
    sse(
      a,
      JSON.stringify({ type: 'content_block_start', index: 0, content_block: { type: 'text', text: '' } }),
      'content_block_start',
    ) +
    sse(a, JSON.stringify({ type: 'ping' }), 'ping'),
  token: (a, text) =>
    sse(
      a,
      JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text } }),
      'content_block_delta',
    ),
  end: (a, completionTokens, finish) =>
    sse(a, JSON.stringify({ type: 'content_block_stop', index: 0 }), 'content_block_stop') +
    sse(
      a,
      JSON.stringify({
        type: 'message_delta',
        delta: { stop_reason: STOP_REASONS[finish], stop_sequence: null },
        usage: { output_tokens: completionTokens },
      }),
      'message_delta',
    ) +
    sse(a, JSON.stringify({ type: 'message_stop' }), 'message_stop'),
  malformed: (a) => sse(a, '{"type":"content_block_delta",', 'content_block_delta'),
  longLine: (a, bytes) =>
    sse(
      a,
      JSON.stringify({ type: 'content_block_delta', index: 0, delta: { type: 'text_delta', text: 'x'.repeat(bytes) } }),
      'content_block_delta',
    ),
  errorBody: anthropicErrorBody,
  errorEvent: (a, status, message) => sse(a, JSON.stringify(anthropicErrorBody(status, message)), 'error'),
  completion: (a, text, completionTokens, finish) => ({
    id: a.id,
    type: 'message',
    role: 'assistant',
    model: a.model,
    content: [{ type: 'text', text }],
    stop_reason: STOP_REASONS[finish],
    stop_sequence: null,
    usage: { input_tokens: a.promptTokens, output_tokens: completionTokens },
  }),
  isStream: (body) => body['stream'] === true,
  maxTokens: (body) => num(body['max_tokens']),
};

export const FRAMES: Record<MockFormat, FormatFrames> = { openai, ollama, anthropic };

/** Request path of each format's chat endpoint (SPEC §2), and the base URL suffix each SDK takes. */
export const CHAT_PATHS: Record<MockFormat, string> = {
  openai: '/v1/chat/completions',
  ollama: '/api/chat',
  anthropic: '/v1/messages',
};
export const BASE_PATHS: Record<MockFormat, string> = { openai: '/v1', ollama: '', anthropic: '' };
