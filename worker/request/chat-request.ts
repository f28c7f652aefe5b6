import { z } from 'zod';
import { GraygateError } from '../../shared/errors.js';

// SPEC §5: the OpenAI Chat Completions request, as far as the gateway needs to
// understand it. Unknown fields are kept (loose objects) so an OpenAI upstream
// still receives what the client sent (tools, response_format, seed, …).

const textPart = z.looseObject({ type: z.literal('text'), text: z.string() });
const otherPart = z.looseObject({ type: z.string() });

const message = z.looseObject({
  role: z.enum(['system', 'developer', 'user', 'assistant', 'tool'], { error: 'must be one of system, developer, user, assistant, tool' }),
  content: z.union([z.string(), z.array(z.union([textPart, otherPart])), z.null()], { error: 'must be a string, an array of content parts or null' }).optional(),
  name: z.string().optional(),
});

const nullableNumber = z.number({ error: 'must be a number' }).nullable().optional();

export const chatRequestSchema = z.looseObject({
  model: z.string({ error: 'must be a string' }).min(1, 'must not be empty').optional(),
  messages: z.array(message, { error: 'must be an array of messages' }).min(1, 'must contain at least one message'),
  stream: z.boolean({ error: 'must be a boolean' }).nullable().optional(),
  stream_options: z.looseObject({ include_usage: z.boolean({ error: 'must be a boolean' }).optional() }).nullable().optional(),
  max_tokens: z.number().int('must be an integer').min(1, 'must be ≥ 1').nullable().optional(),
  max_completion_tokens: z.number().int('must be an integer').min(1, 'must be ≥ 1').nullable().optional(),
  temperature: nullableNumber,
  top_p: nullableNumber,
  stop: z.union([z.string(), z.array(z.string())], { error: 'must be a string or an array of strings' }).nullable().optional(),
  // One choice per request: the converters build a single choice (index 0).
  n: z.literal(1, { error: 'only n = 1 is supported' }).nullable().optional(),
});

export type ChatRequest = z.output<typeof chatRequestSchema>;
export type ChatMessage = ChatRequest['messages'][number];

/** Parses a request body (raw bytes) into a ChatRequest, or throws invalid_request naming every problem. */
export function parseChatRequest(body: Buffer): ChatRequest {
  let raw: unknown;
  try {
    raw = JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw new GraygateError('invalid_request', `the request body is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof raw !== 'object' || raw === null || Array.isArray(raw)) {
    throw new GraygateError('invalid_request', 'the request body must be a JSON object');
  }
  const result = chatRequestSchema.safeParse(raw);
  if (!result.success) {
    const problems = result.error.issues.map((i) => `${i.path.length === 0 ? '(body)' : i.path.join('.')}: ${i.message}`);
    throw new GraygateError('invalid_request', problems.join('; '));
  }
  return result.data;
}

/** The text of a message: a string as is, text parts joined; non-text parts are refused for upstreams that only take text. */
export function messageText(msg: ChatMessage): string {
  const content = msg.content;
  if (content === undefined || content === null) return '';
  if (typeof content === 'string') return content;
  const parts: string[] = [];
  for (const part of content) {
    if (part.type !== 'text' || typeof part['text'] !== 'string') {
      throw new GraygateError('invalid_request', `content parts of type "${part.type}" are not supported by this version's upstream`);
    }
    parts.push(part['text'] as string);
  }
  return parts.join('');
}

/** max_completion_tokens is the newer name of max_tokens; either may be sent. */
export function maxTokensOf(req: ChatRequest): number | undefined {
  return req.max_completion_tokens ?? req.max_tokens ?? undefined;
}

export function stopsOf(req: ChatRequest): string[] | undefined {
  if (req.stop === undefined || req.stop === null) return undefined;
  return typeof req.stop === 'string' ? [req.stop] : req.stop;
}
