import { stringifyJsonExact } from '../request/exact-numbers.js';
import { maxTokensOf, stopsOf, type ChatMessage, type ChatRequest } from '../request/chat-request.js';
import { upstreamAuthHeaders } from './auth-headers.js';
import { checkChatFields } from './field-support.js';
import { requireModel, type BuildOptions, type UpstreamRequest } from './format-adapter.js';
import {
  contentParts,
  functionTools,
  jsonSchemaOf,
  invalid,
  ToolArguments,
  parseDataUrl,
  textOnly,
  toolNamesById,
} from './message-parts.js';

// OpenAI chat request → Ollama `/api/chat` (SPEC §2, §12).
// https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion
// Tools go as they are (Ollama takes OpenAI's function-tool shape); tool calls
// in the history carry their arguments as an object; a tool result names its
// call by id and function name; JSON mode is `format`. What Ollama cannot
// express is a 400 (upstream/field-support.ts).

const ROLES: Record<string, string> = {
  system: 'system',
  developer: 'system',
  user: 'user',
  assistant: 'assistant',
  tool: 'tool',
};

/** OpenAI sampling fields → Ollama `options` keys. */
const OPTIONS: ReadonlyArray<[keyof ChatRequest & string, string]> = [
  ['temperature', 'temperature'],
  ['top_p', 'top_p'],
  ['top_k', 'top_k'],
  ['seed', 'seed'],
  ['frequency_penalty', 'frequency_penalty'],
  ['presence_penalty', 'presence_penalty'],
];

export function buildOllamaRequest(req: ChatRequest, options: BuildOptions): UpstreamRequest {
  checkChatFields(req, 'ollama');
  const model = requireModel(req, options);
  const body: Record<string, unknown> = { model, messages: ollamaMessages(req.messages), stream: true };
  const tools = ollamaTools(req, options.isStrictUnchecked === true);
  if (tools !== undefined) body['tools'] = tools;
  const format = ollamaFormat(req);
  if (format !== undefined) body['format'] = format;
  if (req['logprobs'] === true) {
    body['logprobs'] = true;
    if (typeof req['top_logprobs'] === 'number') body['top_logprobs'] = req['top_logprobs'];
  } else if (req['top_logprobs'] !== undefined && req['top_logprobs'] !== null) {
    // OpenAI refuses it too: without logprobs there is nothing to list alternatives of.
    throw invalid('top_logprobs', 'needs logprobs: true');
  }
  const modelOptions: Record<string, unknown> = {};
  for (const [from, to] of OPTIONS) {
    const value = req[from];
    if (value !== undefined && value !== null) modelOptions[to] = value;
  }
  const maxTokens = maxTokensOf(req);
  if (maxTokens !== undefined) modelOptions['num_predict'] = maxTokens;
  const stop = stopsOf(req);
  if (stop !== undefined) modelOptions['stop'] = stop;
  if (Object.keys(modelOptions).length > 0) body['options'] = modelOptions;
  const think = ollamaThink(req['reasoning_effort']);
  if (think !== undefined) body['think'] = think;
  const headers = {
    'content-type': 'application/json',
    accept: 'application/x-ndjson',
    ...upstreamAuthHeaders('ollama', options.apiKey),
  };
  return { path: '/api/chat', headers, body: Buffer.from(stringifyJsonExact(body)), model };
}

function ollamaMessages(messages: ChatMessage[]): Array<Record<string, unknown>> {
  const names = toolNamesById(messages);
  const args = new ToolArguments('ollama');
  return messages.map((m, i) => {
    const path = `messages.${i}`;
    const out: Record<string, unknown> = { role: ROLES[m.role]! };
    if (m.role === 'user') {
      const texts: string[] = [];
      const images: string[] = [];
      for (const part of contentParts(m, path, 'ollama', true)) {
        if (part.kind === 'text') texts.push(part.text);
        else if (part.kind === 'image') images.push(imageData(part.url, part.path));
      }
      out['content'] = texts.join('');
      if (images.length > 0) out['images'] = images;
      return out;
    }
    out['content'] = textOnly(m, path, 'ollama');
    // An answer's `reasoning` pushed back as history: Ollama's `thinking`, as its OpenAI-compatible endpoint has it.
    // The AI SDK's openai-compatible provider sends what it read as reasoning back as `reasoning_content` (vLLM's
    // and DeepSeek's name).
    const reasoning = [m['reasoning'], m['reasoning_content']].find((r) => typeof r === 'string' && r !== '');
    if (m.role === 'assistant' && reasoning !== undefined) out['thinking'] = reasoning;
    if (m.role === 'assistant' && m.tool_calls !== undefined && m.tool_calls !== null && m.tool_calls.length > 0) {
      out['tool_calls'] = m.tool_calls.map((call, j) => {
        const at = `${path}.tool_calls.${j}`;
        if (call.type !== 'function')
          throw invalid(`${at}.type`, `an ollama upstream takes function calls only, not "${call.type}"`);
        return {
          id: call.id,
          function: {
            index: j,
            name: call.function.name,
            arguments: args.parse(call.function.arguments, `${at}.function.arguments`),
          },
        };
      });
    }
    if (m.role === 'tool' && m.tool_call_id !== undefined) {
      out['tool_call_id'] = m.tool_call_id;
      // Ollama matches a result to its call by function name (older versions by name only).
      const name = names.get(m.tool_call_id) ?? m.name ?? undefined;
      if (name !== undefined) out['tool_name'] = name;
    }
    return out;
  });
}

/**
 * `reasoning_effort` → `think`, as Ollama's own OpenAI-compatible endpoint maps it (openai/openai.go): `none` turns
 * thinking off, a level goes as a level (Ollama ≥ 0.11: gpt-oss takes levels, other thinking models take any as on;
 * a model that does not think answers 400 "does not support thinking"). `minimal` is `low` and `xhigh` is `high`:
 * Ollama's `max` for it is newer than most servers.
 */
const THINK_LEVELS: Readonly<Record<string, boolean | string>> = {
  none: false,
  minimal: 'low',
  low: 'low',
  medium: 'medium',
  high: 'high',
  xhigh: 'high',
};

function ollamaThink(effort: unknown): boolean | string | undefined {
  if (effort === undefined || effort === null) return undefined;
  const think = typeof effort === 'string' && Object.hasOwn(THINK_LEVELS, effort) ? THINK_LEVELS[effort] : undefined;
  if (think === undefined)
    throw invalid(
      'reasoning_effort',
      `an ollama upstream takes ${Object.keys(THINK_LEVELS)
        .map((l) => `"${l}"`)
        .join(', ')}`,
    );
  return think;
}

/** Ollama takes images as bare base64 (no data: prefix); it fetches no URLs. */
function imageData(url: string, path: string): string {
  const parsed = parseDataUrl(url);
  if (parsed === undefined)
    throw invalid(path, 'an ollama upstream takes images as base64 data: URLs only (it fetches no URLs)');
  return parsed.data;
}

function ollamaTools(req: ChatRequest, isStrictUnchecked: boolean): unknown[] | undefined {
  const choice = req.tool_choice;
  if (choice !== undefined && choice !== null && choice !== 'auto' && choice !== 'none') {
    throw invalid('tool_choice', 'an ollama upstream cannot force a tool call (only "auto" and "none")');
  }
  if (req.tools === undefined || req.tools === null || req.tools.length === 0) return undefined;
  // Ollama has no strict decoding of tool arguments: `strict: true` is refused unless the operator takes it unchecked.
  const tools = functionTools(req.tools, 'ollama', isStrictUnchecked);
  // "none": the model must not call a tool, so it is shown none.
  if (choice === 'none') return undefined;
  return tools.map((t) => ({
    type: 'function',
    function: {
      name: t.name,
      ...(t.description === undefined ? {} : { description: t.description }),
      parameters: t.parameters ?? { type: 'object', properties: {} },
    },
  }));
}

/** response_format → `format`. Ollama decodes under the schema's grammar, so `strict` is honoured. */
function ollamaFormat(req: ChatRequest): unknown {
  const format = req.response_format;
  if (format === undefined || format === null || format.type === 'text') return undefined;
  if (format.type === 'json_object') return 'json';
  if (format.type === 'json_schema') return jsonSchemaOf(format.json_schema, 'ollama') ?? 'json';
  throw invalid(
    'response_format.type',
    `an ollama upstream takes "text", "json_object" or "json_schema", not "${format.type}"`,
  );
}
