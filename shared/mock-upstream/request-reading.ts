import type { MockFormat } from './formats.js';

// What the mock reads from a request body, in each format's own shape (SPEC
// §8, §12): the message texts (the last one may hold a [mock …] directive),
// the tools offered and the one forced, and the JSON mode asked for.

export interface ToolSpec {
  name: string;
  /** The tool's JSON Schema (OpenAI/Ollama `parameters`, Anthropic `input_schema`). */
  schema: unknown;
}

/**
 * Every message text of a chat request, system prompt first (Anthropic
 * keeps it outside `messages`); tool results included.
 */
export function messageTexts(body: Record<string, unknown>, format: MockFormat): string[] {
  const texts: string[] = [];
  if (format === 'anthropic') texts.push(textOf(body['system']));
  const messages = Array.isArray(body['messages']) ? (body['messages'] as Array<{ content?: unknown }>) : [];
  for (const m of messages) texts.push(textOf(m.content));
  return texts.filter((t) => t !== '');
}

/** A string, or the text of content parts/blocks (`text`, and a tool result's `content`). */
function textOf(content: unknown): string {
  if (typeof content === 'string') return content;
  if (!Array.isArray(content)) return '';
  return content
    .map((p: { text?: unknown; content?: unknown } | null) =>
      typeof p?.text === 'string' ? p.text : p?.content !== undefined ? textOf(p.content) : '',
    )
    .join('');
}

/** The texts of a legacy completions `prompt` or a Responses API `input` (with `instructions` first). */
export function promptTexts(body: Record<string, unknown>, dialect: 'completions' | 'responses'): string[] {
  if (dialect === 'completions') {
    const prompt = body['prompt'];
    return (Array.isArray(prompt) ? prompt : [prompt]).filter((p): p is string => typeof p === 'string');
  }
  const texts = [textOf(body['instructions'])];
  const input = body['input'];
  if (typeof input === 'string') texts.push(input);
  else if (Array.isArray(input))
    for (const item of input as Array<{ content?: unknown; output?: unknown }>)
      texts.push(textOf(item.content ?? item.output));
  return texts.filter((t) => t !== '');
}

/** Which OpenAI request shape a body is in: Chat Completions, or the Responses API (tools and JSON mode differ). */
export type Dialect = 'chat' | 'responses';

export function requestTools(body: Record<string, unknown>, format: MockFormat, dialect: Dialect = 'chat'): ToolSpec[] {
  const tools = Array.isArray(body['tools']) ? (body['tools'] as Array<Record<string, unknown>>) : [];
  return tools.flatMap((tool) => {
    if (format === 'anthropic')
      return typeof tool['name'] === 'string' ? [{ name: tool['name'], schema: tool['input_schema'] }] : [];
    // The Responses API's function tools are flat: `{type: "function", name, parameters}`.
    if (dialect === 'responses')
      return tool['type'] === 'function' && typeof tool['name'] === 'string'
        ? [{ name: tool['name'], schema: tool['parameters'] }]
        : [];
    const fn = tool['function'] as { name?: unknown; parameters?: unknown } | undefined;
    return typeof fn?.name === 'string' ? [{ name: fn.name, schema: fn.parameters }] : [];
  });
}

/**
 * The tool the request forces (OpenAI `required` or a named function,
 * Anthropic `any` or `tool`): the first tool for `required`/`any`.
 */
export function forcedTool(
  body: Record<string, unknown>,
  format: MockFormat,
  tools: ToolSpec[],
  dialect: Dialect = 'chat',
): string | undefined {
  const choice = body['tool_choice'] as
    { type?: unknown; name?: unknown; function?: { name?: unknown } } | string | undefined;
  if (format === 'openai') {
    if (choice === 'required') return tools[0]?.name;
    // The Responses API names a forced function flat: `{type: "function", name}`.
    if (dialect === 'responses')
      return typeof choice === 'object' && choice?.type === 'function' && typeof choice.name === 'string'
        ? choice.name
        : undefined;
    if (
      typeof choice === 'object' &&
      choice !== null &&
      choice.type === 'function' &&
      typeof choice.function?.name === 'string'
    )
      return choice.function.name;
  }
  if (format === 'anthropic' && typeof choice === 'object' && choice !== null) {
    if (choice.type === 'any') return tools[0]?.name;
    if (choice.type === 'tool' && typeof choice.name === 'string') return choice.name;
  }
  return undefined;
}

/** JSON mode asked for: any JSON object, or one following a schema. */
export type JsonMode = { kind: 'object' } | { kind: 'schema'; schema: unknown };

export function jsonMode(
  body: Record<string, unknown>,
  format: MockFormat,
  dialect: Dialect = 'chat',
): JsonMode | undefined {
  if (dialect === 'responses') {
    // The Responses API asks in `text.format`, its schema beside the type: `{type: "json_schema", name, schema}`.
    const f = (body['text'] as { format?: { type?: unknown; schema?: unknown } } | undefined)?.format;
    if (f?.type === 'json_object') return { kind: 'object' };
    if (f?.type === 'json_schema')
      return f.schema === undefined ? { kind: 'object' } : { kind: 'schema', schema: f.schema };
    return undefined;
  }
  if (format === 'openai') {
    const rf = body['response_format'] as { type?: unknown; json_schema?: { schema?: unknown } } | undefined;
    if (rf?.type === 'json_object') return { kind: 'object' };
    if (rf?.type === 'json_schema')
      return rf.json_schema?.schema === undefined
        ? { kind: 'object' }
        : { kind: 'schema', schema: rf.json_schema.schema };
    return undefined;
  }
  if (format === 'ollama') {
    const f = body['format'];
    if (f === 'json') return { kind: 'object' };
    return typeof f === 'object' && f !== null ? { kind: 'schema', schema: f } : undefined;
  }
  const f = (body['output_config'] as { format?: { type?: unknown; schema?: unknown } } | undefined)?.format;
  return f?.type === 'json_schema' ? { kind: 'schema', schema: f.schema } : undefined;
}
