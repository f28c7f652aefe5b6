import { createHash } from 'node:crypto';
import { stringifyJsonExact } from '../request/exact-numbers.js';
import { maxTokensOf, stopsOf, type ChatRequest } from '../request/chat-request.js';
import { GraygateError } from '../../shared/errors.js';
import { upstreamAuthHeaders } from './auth-headers.js';
import { checkChatFields } from './field-support.js';
import { requireModel, type BuildOptions, type UpstreamRequest } from './format-adapter.js';
import { invalid } from './message-parts.js';
import { anthropicMessages } from './anthropic-messages.js';
import { anthropicToolFields, historyToolFields } from './anthropic-tools.js';

// OpenAI chat request → Anthropic `/v1/messages` (SPEC §2, §12). What Anthropic
// cannot express is a 400 naming the field (upstream/field-support.ts).

/**
 * Anthropic requires max_tokens; OpenAI clients usually omit it. 4096 fits every current Claude model; a version whose
 * model writes longer answers sets upstream.defaultMaxTokens.
 */
export const DEFAULT_ANTHROPIC_MAX_TOKENS = 4096;

/** Anthropic's temperature range is 0–1 (OpenAI's 0–2): a higher one is refused, not scaled. */
const MAX_TEMPERATURE = 1;

export function buildAnthropicRequest(req: ChatRequest, options: BuildOptions): UpstreamRequest {
  checkChatFields(req, 'anthropic');
  const model = requireModel(req, options);
  const { system, messages } = anthropicMessages(req.messages);
  if (messages.length === 0)
    throw new GraygateError(
      'invalid_request',
      'messages: an anthropic upstream needs at least one user or assistant message',
      { param: 'messages' },
    );
  const body: Record<string, unknown> = {
    model,
    max_tokens: maxTokensOf(req) ?? options.defaultMaxTokens ?? DEFAULT_ANTHROPIC_MAX_TOKENS,
    messages,
    stream: true,
  };
  if (system.length > 0) body['system'] = system.join('\n\n');
  if (req.temperature !== undefined && req.temperature !== null) {
    if (req.temperature > MAX_TEMPERATURE)
      throw invalid('temperature', `an anthropic upstream takes 0 to ${MAX_TEMPERATURE}`);
    body['temperature'] = req.temperature;
  }
  // 1 is no nucleus cut, Anthropic's default: not sent, as newer models refuse top_p beside temperature (LlamaIndex
  // sends `top_p: 1` with every call).
  if (req.top_p !== undefined && req.top_p !== null && req.top_p !== 1) body['top_p'] = req.top_p;
  if (typeof req['top_k'] === 'number') body['top_k'] = req['top_k'];
  const stop = stopsOf(req);
  if (stop !== undefined) body['stop_sequences'] = checkStops(stop, typeof req.stop === 'string');
  const userId = req['safety_identifier'] ?? req['user'];
  if (typeof userId === 'string') body['metadata'] = { user_id: opaqueUserId(userId) };
  const tools = anthropicToolFields(req);
  Object.assign(body, tools.tools === undefined ? { ...tools, ...historyToolFields(messages) } : tools);
  const headers = {
    'content-type': 'application/json',
    accept: 'text/event-stream',
    ...upstreamAuthHeaders('anthropic', options.apiKey),
  };
  return { path: '/v1/messages', headers, body: Buffer.from(withoutLoneSurrogates(stringifyJsonExact(body))), model };
}

/**
 * Anthropic refuses an empty or whitespace-only stop sequence ("each stop sequence must contain non-whitespace"), which
 * OpenAI takes (`stop: "\n"` is common): a 400 naming the entry, not the upstream's naming `stop_sequences`.
 */
function checkStops(stop: string[], single: boolean): string[] {
  stop.forEach((s, i) => {
    if (s.trim() === '')
      throw invalid(
        single ? 'stop' : `stop.${i}`,
        'an anthropic upstream takes only stop sequences with non-whitespace text',
      );
  });
  return stop;
}

/**
 * OpenAI's `user` is any string (often an email address); Anthropic's `metadata.user_id` must be an opaque id of at
 * most 256 characters and refuses one that looks like an email address. Its SHA-256, in hex: one user, one id.
 */
function opaqueUserId(user: string): string {
  return createHash('sha256').update(user).digest('hex');
}

/**
 * The escape JSON.stringify writes for a UTF-16 surrogate without its other half, after an even run of backslashes
 * (kept: `\\` pairs), none before the run. One replacement string, no callback: a callback for each `\\` pair took a
 * 16 MiB body of backslashes 1.3 s (a reviewer).
 */
const LONE_SURROGATE_ESCAPE = /(?<!\\)((?:\\\\)*)\\ud[89a-f][0-9a-f]{2}/g;

/**
 * The request's JSON with each lone surrogate as U+FFFD, as Ollama's Go decoder reads one: Anthropic refuses the
 * whole body for one (400 "no low surrogate in string"), which a client cutting text inside an emoji sends, and the
 * same request succeeded on a version of another format. A well-formed pair is written as its character, so every
 * `\ud8xx`–`\udfxx` escape JSON.stringify writes is a lone one; an escaped backslash before `ud800` is text.
 */
export function withoutLoneSurrogates(json: string): string {
  if (!json.includes('\\ud')) return json;
  return json.replace(LONE_SURROGATE_ESCAPE, '$1\\ufffd');
}
