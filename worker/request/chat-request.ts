import { isUtf8 } from 'node:buffer';
import { parseJsonExact } from './exact-numbers.js';
import { GraygateError } from '../../shared/errors.js';
import { checkJsonLimits, type JsonLimits } from './json-limits.js';
import { toolProblems, messageToolProblems } from './chat-tools.js';
import {
  boolean,
  checker,
  firstProblemPath,
  integer,
  isObject,
  nonEmptyString,
  nonNegativeInteger,
  nullable,
  number,
  object,
  positiveInteger,
} from './checks.js';

// SPEC §5: the OpenAI Chat Completions request, as far as the gateway needs to
// understand it. Only the fields the gateway reads are checked; the parsed
// object itself is what callers get, unknown fields included, so an OpenAI
// upstream still receives what the client sent (tools, response_format, seed,
// …) and nothing is copied (issue 9 part 5: a schema library's loose objects
// copied every unknown key, 580 ms for 300 000 of them).

/**
 * What a request body may hold (issue 9 part 5), measured with
 * test/worker/fixtures/bench/bodies.ts. Depth 64: JSON Schemas of tools nest
 * a few levels, OpenAI's structured outputs allow 5 or 10. 10 000 members per
 * object or array and 50 000 in all: a 5 000-message history or 128 tools
 * with large schemas fit several times over, while the costliest shape that
 * fits (50 000 keys all different) parses in about 0.2 s, off the event loop
 * (see call/preparer.ts).
 */
export const CHAT_REQUEST_LIMITS: JsonLimits = { maxDepth: 64, maxMembers: 10_000, maxValues: 50_000 };

/** `function`: the result of a legacy `function_call` (OpenAI's deprecated function calling; openai upstreams only). */
export type ChatRole = 'system' | 'developer' | 'user' | 'assistant' | 'tool' | 'function';

/** A content part: `{type:"text", text}` or any other type, which only an OpenAI upstream takes. */
export interface ContentPart {
  type: string;
  [key: string]: unknown;
}

export interface ChatMessage {
  role: ChatRole;
  content?: string | ContentPart[] | null;
  name?: string;
  /** Assistant messages: the calls the model made (SPEC §12). */
  tool_calls?: RequestToolCall[] | null;
  /** Tool messages: which call this is the result of. */
  tool_call_id?: string;
  [key: string]: unknown;
}

/** A tool call sent back in an assistant message; `function` is checked when `type` is "function". */
export interface RequestToolCall {
  id: string;
  type: string;
  function: { name: string; arguments: string };
  [key: string]: unknown;
}

/**
 * A tool the model may call; `function` is checked when `type` is "function"
 * (other types pass through to an OpenAI upstream only).
 */
export interface RequestTool {
  type: string;
  function: { name: string; description?: string; parameters?: Record<string, unknown>; strict?: boolean | null };
  [key: string]: unknown;
}

export type ToolChoice =
  'none' | 'auto' | 'required' | { type: string; function?: { name: string }; [key: string]: unknown };

export interface ResponseFormat {
  type: string;
  json_schema?: { name: string; description?: string; schema?: Record<string, unknown>; strict?: boolean | null };
  [key: string]: unknown;
}

export interface ChatRequest {
  model?: string;
  messages: ChatMessage[];
  stream?: boolean | null;
  stream_options?: { include_usage?: boolean; [key: string]: unknown } | null;
  max_tokens?: number | null;
  max_completion_tokens?: number | null;
  temperature?: number | null;
  top_p?: number | null;
  stop?: string | string[] | null;
  /** Choices per request; only an OpenAI upstream takes more than 1 (upstream/field-support.ts). */
  n?: number | null;
  tools?: RequestTool[] | null;
  tool_choice?: ToolChoice | null;
  parallel_tool_calls?: boolean | null;
  response_format?: ResponseFormat | null;
  [key: string]: unknown;
}

/** Problems listed in one answer; the rest are counted. */
const MAX_PROBLEMS_LISTED = 10;

/**
 * A request body's text: UTF-8 without a byte-order mark (RFC 8259 §8.1), else invalid_request saying so. Bytes that
 * are not UTF-8 (a body in latin1, whatever its Content-Type's charset) were each read as U+FFFD and sent upstream as
 * a prompt the client never wrote; a mark was a parse error quoting an invisible character.
 */
export function requestText(body: Buffer): string {
  // UTF-8's mark, as upstream/format-adapter.ts's withoutBom reads it (which imports this folder: not imported here).
  if (body[0] === 0xef && body[1] === 0xbb && body[2] === 0xbf)
    throw new GraygateError(
      'invalid_request',
      'the request body starts with a byte-order mark (U+FEFF): send JSON without one (RFC 8259 §8.1)',
    );
  if (!isUtf8(body))
    throw new GraygateError(
      'invalid_request',
      'the request body is not valid UTF-8, which JSON must be (RFC 8259 §8.1)',
    );
  return body.toString('utf8');
}

/**
 * Parses a request body (raw bytes) into a ChatRequest, or throws invalid_request naming the limit or every problem.
 */
export function parseChatRequest(body: Buffer): ChatRequest {
  checkJsonLimits(body, CHAT_REQUEST_LIMITS);
  const text = requestText(body);
  let raw: unknown;
  try {
    raw = parseJsonExact(text);
  } catch (err) {
    throw new GraygateError('invalid_request', `the request body is not valid JSON: ${(err as Error).message}`);
  }
  if (!isObject(raw)) throw new GraygateError('invalid_request', 'the request body must be a JSON object');
  const problems = chatRequestProblems(raw);
  if (problems.length > 0) {
    const listed = problems.slice(0, MAX_PROBLEMS_LISTED);
    if (problems.length > listed.length) listed.push(`and ${problems.length - listed.length} more`);
    throw new GraygateError('invalid_request', listed.join('; '), firstProblemPath(problems));
  }
  return raw as ChatRequest;
}

const ROLES: ReadonlySet<unknown> = new Set<ChatRole>(['system', 'developer', 'user', 'assistant', 'tool', 'function']);

/** Every `path: message` problem of a parsed body, in field order; empty when it is a valid request. */
function chatRequestProblems(body: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const check = checker(problems);
  check('model', body['model'], nonEmptyString);
  const messages = body['messages'];
  if (!Array.isArray(messages)) problems.push('messages: must be an array of messages');
  else if (messages.length === 0) problems.push('messages: must contain at least one message');
  else messages.forEach((m: unknown, i) => messageProblems(m, `messages.${i}`, problems));
  check('stream', body['stream'], nullable(boolean));
  check('stream_options', body['stream_options'], nullable(object));
  const streamOptions = body['stream_options'];
  if (isObject(streamOptions)) check('stream_options.include_usage', streamOptions['include_usage'], boolean);
  // As OpenAI answers it: there is no stream for the options to apply to.
  if (isObject(streamOptions) && body['stream'] !== true)
    problems.push('stream_options: only allowed when stream is true');
  check('max_tokens', body['max_tokens'], nullable(positiveInteger));
  check('max_completion_tokens', body['max_completion_tokens'], nullable(positiveInteger));
  check('temperature', body['temperature'], nullable(number));
  check('top_p', body['top_p'], nullable(number));
  // Typed here for every format, as OpenAI answers a wrong type: a converter that takes only a value of the right
  // type would otherwise drop a string silently, or send it on to the upstream as it is.
  check('top_k', body['top_k'], nullable(integer)); // vLLM and others take -1 for "off"
  check('seed', body['seed'], nullable(integer));
  check('frequency_penalty', body['frequency_penalty'], nullable(number));
  check('presence_penalty', body['presence_penalty'], nullable(number));
  check('logprobs', body['logprobs'], nullable(boolean));
  check('top_logprobs', body['top_logprobs'], nullable(nonNegativeInteger));
  check(
    'stop',
    body['stop'],
    nullable((v) =>
      typeof v === 'string' || (Array.isArray(v) && v.every((s) => typeof s === 'string'))
        ? undefined
        : 'must be a string or an array of strings',
    ),
  );
  check('n', body['n'], nullable(positiveInteger));
  toolProblems(body, problems);
  return problems;
}

function messageProblems(message: unknown, path: string, problems: string[]): void {
  if (!isObject(message)) {
    problems.push(`${path}: must be an object`);
    return;
  }
  if (!ROLES.has(message['role']))
    problems.push(`${path}.role: must be one of system, developer, user, assistant, tool, function`);
  const content = message['content'];
  if (
    content !== undefined &&
    content !== null &&
    typeof content !== 'string' &&
    !(Array.isArray(content) && content.every(isContentPart))
  ) {
    problems.push(`${path}.content: must be a string, an array of content parts or null`);
  }
  if (message['name'] !== undefined && typeof message['name'] !== 'string')
    problems.push(`${path}.name: must be a string`);
  else if (message['role'] === 'function' && message['name'] === undefined)
    problems.push(`${path}.name: a function message names its function`);
  messageToolProblems(message, path, problems);
}

function isContentPart(value: unknown): boolean {
  return isObject(value) && typeof value['type'] === 'string';
}

/** max_completion_tokens is the newer name of max_tokens; either may be sent. */
export function maxTokensOf(req: ChatRequest): number | undefined {
  return req.max_completion_tokens ?? req.max_tokens ?? undefined;
}

export function stopsOf(req: ChatRequest): string[] | undefined {
  if (req.stop === undefined || req.stop === null) return undefined;
  return typeof req.stop === 'string' ? [req.stop] : req.stop;
}
