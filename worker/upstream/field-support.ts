import { GraygateError } from '../../shared/errors.js';

// SPEC §12: what every Chat Completions field becomes on an Ollama or an
// Anthropic upstream. A field a format cannot express is a 400 naming it,
// never silently dropped; a field with no effect on the answer (an end-user
// id, a cache hint) is accepted and not sent, and says so here. An OpenAI
// upstream takes the body as the client sent it. This table is the README's
// "OpenAI API surface per format" table: test/worker/upstream/field-support.test.ts
// holds the two equal, cell by cell.

export type ConvertedFormat = 'ollama' | 'anthropic';

export type Support =
  /** The converter sends it; `cell` says as what (and which values it refuses). */
  | { kind: 'sent'; cell: string }
  /** Accepted only at the values for which it changes nothing (OpenAI's defaults). */
  | { kind: 'only'; accepts: (value: unknown) => boolean; cell: string }
  /** Accepted, never sent: it has no effect on the answer. */
  | { kind: 'unsent'; cell: string }
  /** Refused whenever present (and not null). */
  | { kind: 'refused'; cell: string };

const sent = (cell: string): Support => ({ kind: 'sent', cell });
const unsent = (why: string): Support => ({ kind: 'unsent', cell: `not sent (${why})` });
const REFUSED: Support = { kind: 'refused', cell: '400' };
const only = (cell: string, accepts: (value: unknown) => boolean): Support => ({
  kind: 'only',
  accepts,
  cell: `400 unless ${cell}`,
});

const isZero = (v: unknown): boolean => v === 0;
const isFalse = (v: unknown): boolean => v === false;
const isEmptyObject = (v: unknown): boolean =>
  typeof v === 'object' && v !== null && !Array.isArray(v) && Object.keys(v).length === 0;
const GATEWAY = sent('read by the gateway');

/** Top-level request fields, by format. Absent from this table: a 400 naming the field. */
export const CHAT_FIELDS: Readonly<Record<string, Readonly<Record<ConvertedFormat, Support>>>> = {
  model: { ollama: sent('`model` (`upstream.model` wins)'), anthropic: sent('`model` (`upstream.model` wins)') },
  messages: { ollama: sent('`messages` (see below)'), anthropic: sent('`system` + `messages` (see below)') },
  stream: { ollama: GATEWAY, anthropic: GATEWAY },
  stream_options: { ollama: sent('`include_usage` honoured'), anthropic: sent('`include_usage` honoured') },
  max_tokens: {
    ollama: sent('`options.num_predict`'),
    anthropic: sent('`max_tokens` (default `upstream.defaultMaxTokens`, 4096 unset)'),
  },
  max_completion_tokens: {
    ollama: sent('`options.num_predict`'),
    anthropic: sent('`max_tokens` (default `upstream.defaultMaxTokens`, 4096 unset)'),
  },
  temperature: { ollama: sent('`options.temperature`'), anthropic: sent('`temperature` (0–1; above 1 is a 400)') },
  top_p: {
    ollama: sent('`options.top_p`'),
    anthropic: sent(
      '`top_p` (1, its default, not sent; newer Claude models refuse it beside `temperature`: their 400 is passed)',
    ),
  },
  top_k: { ollama: sent('`options.top_k`'), anthropic: sent('`top_k`') },
  stop: { ollama: sent('`options.stop`'), anthropic: sent('`stop_sequences` (empty or whitespace only: 400)') },
  seed: { ollama: sent('`options.seed`'), anthropic: REFUSED },
  frequency_penalty: { ollama: sent('`options.frequency_penalty`'), anthropic: only('0', isZero) },
  presence_penalty: { ollama: sent('`options.presence_penalty`'), anthropic: only('0', isZero) },
  n: { ollama: only('1', (v) => v === 1), anthropic: only('1', (v) => v === 1) },
  logprobs: { ollama: sent('`logprobs` (Ollama ≥ 0.12.11)'), anthropic: only('false', isFalse) },
  top_logprobs: { ollama: sent('`top_logprobs` (with `logprobs: true`, else a 400)'), anthropic: only('0', isZero) },
  logit_bias: { ollama: only('`{}`', isEmptyObject), anthropic: only('`{}`', isEmptyObject) },
  tools: {
    ollama: sent('`tools` (`strict: true` is a 400 unless `upstream.strictTools` is `"unchecked"`)'),
    anthropic: sent('`tools[].input_schema`, `strict`'),
  },
  tool_choice: {
    ollama: sent('`auto`; `none` sends no tools; `required` or a named function is a 400'),
    anthropic: sent('`auto`, `none`, `required` → `any`, a named function → `tool`'),
  },
  parallel_tool_calls: {
    ollama: only('true', (v) => v === true),
    anthropic: sent('`false` → `disable_parallel_tool_use`'),
  },
  response_format: {
    ollama: sent('`json_object` → `format: "json"`, `json_schema` → `format: schema`'),
    anthropic: sent(
      '`json_schema` with `strict` → `output_config.format`, without → a forced tool whose input is the answer, ' +
        "the schema its input's; `json_object` → that tool, its input any object",
    ),
  },
  user: { ollama: unsent('sticky routing key'), anthropic: sent('`metadata.user_id`, its SHA-256 in hex') },
  safety_identifier: { ollama: unsent('an end-user id'), anthropic: sent('`metadata.user_id`, its SHA-256 in hex') },
  prompt_cache_key: { ollama: unsent('a cache hint'), anthropic: unsent('a cache hint') },
  prompt_cache_retention: { ollama: unsent('a cache hint'), anthropic: unsent('a cache hint') },
  service_tier: {
    ollama: only('`auto` or `default`', isDefaultTier),
    anthropic: only('`auto` or `default`', isDefaultTier),
  },
  store: { ollama: only('false', isFalse), anthropic: only('false', isFalse) },
  metadata: { ollama: only('`{}`', isEmptyObject), anthropic: only('`{}`', isEmptyObject) },
  modalities: { ollama: only('`["text"]`', isTextOnly), anthropic: only('`["text"]`', isTextOnly) },
  audio: { ollama: REFUSED, anthropic: REFUSED },
  prediction: { ollama: REFUSED, anthropic: REFUSED },
  reasoning_effort: {
    ollama: sent('`think`: `none` → `false`, `minimal` → `low`, `xhigh` → `high`, others as they are'),
    anthropic: REFUSED,
  },
  verbosity: { ollama: REFUSED, anthropic: REFUSED },
  web_search_options: { ollama: REFUSED, anthropic: REFUSED },
  functions: { ollama: REFUSED, anthropic: REFUSED },
  function_call: { ollama: REFUSED, anthropic: REFUSED },
};

/** Fields of one message, by format (content parts are the converters' business). */
export const MESSAGE_FIELDS: Readonly<Record<string, Readonly<Record<ConvertedFormat, Support>>>> = {
  role: {
    ollama: sent('`role` (`developer` → `system`); `function`: 400'),
    anthropic: sent('`system`/`developer` → `system`; `tool` → a `user` turn; `function`: 400'),
  },
  content: { ollama: sent('`content` + `images`'), anthropic: sent('content blocks') },
  tool_calls: { ollama: sent('`tool_calls` (arguments as an object)'), anthropic: sent('`tool_use` blocks') },
  tool_call_id: { ollama: sent('`tool_call_id` + `tool_name`'), anthropic: sent('`tool_result.tool_use_id`') },
  // LangChain's agents name every answer of theirs (`"name":"model"`) and send it back as history; Ollama's own
  // OpenAI-compatible endpoint ignores it on any message but a tool's.
  name: {
    ollama: sent("tool messages: `tool_name` (LangChain sends it); others: not sent (a participant's name)"),
    anthropic: unsent("tool messages: the id names the call; others: a participant's name"),
  },
  refusal: { ollama: REFUSED, anthropic: REFUSED },
  // OpenAI returns it on every assistant message (`[]` mostly), and clients push that message back as history.
  annotations: { ollama: unsent('output-only'), anthropic: unsent('output-only') },
  // The OpenAI SDK's `chat.completions.parse()` adds the answer's JSON as an object here, and its users push that
  // message back as history; api.openai.com ignores the key, so a 400 would end the conversation's next turn.
  parsed: {
    ollama: unsent("output-only: the OpenAI SDK's `parse()`"),
    anthropic: unsent("output-only: the OpenAI SDK's `parse()`"),
  },
  // graygate's own answers carry it (Ollama's `thinking`), and clients push them back.
  reasoning: { ollama: sent('assistant messages: `thinking`'), anthropic: unsent('output-only') },
  reasoning_content: { ollama: sent('assistant messages: `thinking`'), anthropic: unsent('output-only') },
  audio: { ollama: REFUSED, anthropic: REFUSED },
  function_call: { ollama: REFUSED, anthropic: REFUSED },
};

function isDefaultTier(v: unknown): boolean {
  return v === 'auto' || v === 'default';
}

function isTextOnly(v: unknown): boolean {
  return Array.isArray(v) && v.every((m) => m === 'text');
}

/** Listed in one answer; the rest are counted (as chat-request.ts does). */
const MAX_LISTED = 10;

/**
 * Throws one 400 invalid_request naming every field of the request (and of its
 * messages) that `format` cannot take. null counts as absent, as OpenAI has it.
 */
export function checkChatFields(req: Record<string, unknown>, format: ConvertedFormat): void {
  const problems: string[] = [];
  const paths: string[] = [];
  fieldProblems(req, '', CHAT_FIELDS, format, problems, paths);
  const messages = req['messages'];
  if (Array.isArray(messages)) {
    messages.forEach((m: Record<string, unknown>, i) => {
      // As `functions` and `function_call` are (CHAT_FIELDS): `tools` and `tool` messages are what converts.
      if (m['role'] === 'function') {
        problems.push(`messages.${i}.role: "function" is not supported by an ${format} upstream (use tools)`);
        paths.push(`messages.${i}.role`);
      }
      fieldProblems(m, `messages.${i}.`, MESSAGE_FIELDS, format, problems, paths);
    });
  }
  if (problems.length > 0) throw problemsError(problems, paths[0]);
}

/**
 * One 400 invalid_request listing the first problems, and how many more: a body of 10,000 keys is not echoed whole.
 * `param`: the first problem's field path, the body's `param` (OpenAI names one field there).
 */
export function problemsError(problems: string[], param?: string): GraygateError {
  const listed = problems.slice(0, MAX_LISTED);
  if (problems.length > listed.length) listed.push(`and ${problems.length - listed.length} more`);
  return new GraygateError('invalid_request', listed.join('; '), param === undefined ? {} : { param });
}

/** What a key no table of this file (or of message-parts.ts) names gets: a 400 naming its path. */
export function unconvertible(path: string, format: ConvertedFormat): string {
  return `${path}: is not a field graygate can convert for an ${format} upstream`;
}

function fieldProblems(
  value: Record<string, unknown>,
  prefix: string,
  table: typeof CHAT_FIELDS,
  format: ConvertedFormat,
  problems: string[],
  paths: string[],
): void {
  for (const [key, v] of Object.entries(value)) {
    if (v === null || v === undefined) continue;
    const rule = table[key]?.[format];
    const path = `${prefix}${key}`;
    const count = problems.length;
    if (rule === undefined) problems.push(unconvertible(path, format));
    else if (rule.kind === 'refused') problems.push(`${path}: is not supported by an ${format} upstream`);
    else if (rule.kind === 'only' && !rule.accepts(v))
      problems.push(`${path}: an ${format} upstream cannot express it (${rule.cell})`);
    if (problems.length > count) paths.push(path);
  }
}
