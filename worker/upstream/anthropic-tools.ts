import type { ChatRequest } from '../request/chat-request.js';
import type { AnthropicMessage } from './anthropic-messages.js';
import { functionTools, invalid, jsonSchemaOf } from './message-parts.js';

// Tool calling and JSON mode on an Anthropic upstream (SPEC §12).
// https://docs.anthropic.com/en/docs/agents-and-tools/tool-use/implement-tool-use
//   tools          → `tools` with `input_schema` (and `strict`, which Anthropic honours)
//   tool_choice    → auto → auto, none → none, required → any, named → tool
//   parallel_tool_calls: false → `disable_parallel_tool_use: true`
//   response_format json_schema, strict → `output_config.format` (structured
//                    outputs: the answer is text that follows the schema)
//   response_format json_schema, not strict, of an object → the answer tool
//                    below with that schema as its input's (best effort, as
//                    OpenAI's non-strict: any keyword, any Claude model)
//   response_format json_object → Anthropic has no schema-less JSON mode, so
//                    a tool whose input is any JSON object is forced, and its
//                    input is re-emitted as the answer's content (anthropic.ts)

/** The tool that carries a json_object answer; reserved: a client tool of this name is refused. */
export const JSON_ANSWER_TOOL = 'respond_with_json';

const JSON_ANSWER_TOOL_SPEC = {
  name: JSON_ANSWER_TOOL,
  description: 'Give your whole answer as the input of this tool: one JSON object.',
  input_schema: { type: 'object', additionalProperties: true },
};

/** The fields of the Anthropic body that tools and JSON mode set; absent ones are left out. */
export interface AnthropicToolFields {
  tools?: Array<Record<string, unknown>>;
  tool_choice?: Record<string, unknown>;
  output_config?: Record<string, unknown>;
}

export function anthropicToolFields(req: ChatRequest): AnthropicToolFields {
  const out: AnthropicToolFields = {};
  const tools = functionTools(req.tools ?? [], 'anthropic', true).map((t, i) => {
    if (t.name === JSON_ANSWER_TOOL)
      throw invalid(
        `tools.${i}.function.name`,
        `"${JSON_ANSWER_TOOL}" is reserved by graygate on an anthropic upstream (it carries JSON-mode answers)`,
      );
    const tool: Record<string, unknown> = { name: t.name, input_schema: inputSchema(t.parameters) };
    if (t.description !== undefined) tool['description'] = t.description;
    if (t.strict) tool['strict'] = true;
    return tool;
  });
  const noParallel = req.parallel_tool_calls === false ? { disable_parallel_tool_use: true } : {};
  let choice = toolChoice(req, tools.length > 0);
  const format = req.response_format;
  if (format !== undefined && format !== null && format.type !== 'text') {
    const schema = format.type === 'json_schema' ? jsonSchemaOf(format.json_schema, 'anthropic') : undefined;
    // Structured outputs hold the answer to the schema, and take only part of JSON Schema (no numeric or string bounds,
    // `additionalProperties: false` on every object: others are a 400) on the Claude 4.5 family and later: what strict
    // asks for. A schema not strict, which OpenAI takes whole and follows as best it can, is the answer tool's
    // input's, as a tool's input_schema takes any (an object's: a tool's input is one).
    const isStrict = format.type === 'json_schema' && format.json_schema?.strict === true;
    if (schema !== undefined && (isStrict || !isObjectSchema(schema))) {
      out.output_config = { format: { type: 'json_schema', schema } };
    } else if (format.type === 'json_object' || format.type === 'json_schema') {
      // The answer tool joins the choice unless the client forces a tool call anyway (then no JSON answer can come).
      if (choice === undefined || choice['type'] === 'auto' || choice['type'] === 'none') {
        const isOnlyAnswer = choice === undefined || choice['type'] === 'none' || tools.length === 0;
        tools.push(
          schema === undefined
            ? JSON_ANSWER_TOOL_SPEC
            : { ...JSON_ANSWER_TOOL_SPEC, input_schema: inputSchema(schema) },
        );
        choice = isOnlyAnswer
          ? { type: 'tool', name: JSON_ANSWER_TOOL, disable_parallel_tool_use: true }
          : { type: 'any' };
      }
    } else {
      throw invalid(
        'response_format.type',
        `an anthropic upstream takes "text", "json_object" or "json_schema", not "${format.type}"`,
      );
    }
  }
  if (tools.length > 0) out.tools = tools;
  if (choice !== undefined) out.tool_choice = choice['type'] === 'none' ? choice : { ...choice, ...noParallel };
  return out;
}

/**
 * A function's `parameters` as Anthropic's `input_schema`, which must say `type: "object"` (a 400 "input_schema.type:
 * Field required" otherwise). OpenAI takes a schema without it, `{}` included, as an object of those properties (the
 * Vercel AI SDK and hand-written tools send `parameters: {}` for a tool without arguments), and no parameters at all as
 * none.
 */
function inputSchema(parameters: Record<string, unknown> | undefined): Record<string, unknown> {
  if (parameters === undefined) return { type: 'object', properties: {} };
  return parameters['type'] === undefined ? { type: 'object', ...parameters } : parameters;
}

/** What a tool's input_schema refuses at its root (and a schema not strict with one goes as structured outputs). */
const ROOT_COMBINATORS = ['anyOf', 'oneOf', 'allOf'] as const;

/**
 * Whether a schema not strict can be the answer tool's input: of an object, as OpenAI reads it (`type: "object"`, or no
 * type and `properties`, as `inputSchema` sends a tool's), without `anyOf`, `oneOf` or `allOf` at its root, which a
 * tool's input_schema refuses (400 "input_schema does not support oneOf, allOf, or anyOf at the top level"). Another
 * (an array, a `$ref` at its root, a union) goes as structured outputs, as every json_schema did before.
 */
function isObjectSchema(schema: Record<string, unknown>): boolean {
  if (ROOT_COMBINATORS.some((key) => schema[key] !== undefined)) return false;
  return schema['type'] === 'object' || (schema['type'] === undefined && schema['properties'] !== undefined);
}

/**
 * The tools a request that defines none must still send when its history holds tool calls: Anthropic refuses it
 * otherwise (400 "Requests which include tool_use or tool_result blocks must define tools"), which OpenAI takes (a
 * last call without tools, to have the model sum up its tools' results: AutoGen's reflect_on_tool_use, a summarizer).
 * The history's tools, each taking any object, and `tool_choice: none`: the model can call none of them, as on OpenAI.
 */
export function historyToolFields(messages: AnthropicMessage[]): AnthropicToolFields {
  const names = new Set<string>();
  for (const m of messages) {
    if (typeof m.content === 'string') continue;
    for (const block of m.content) if (block.type === 'tool_use') names.add(block['name'] as string);
  }
  if (names.size === 0) return {};
  return {
    tools: [...names].map((name) => ({ name, input_schema: { type: 'object' } })),
    tool_choice: { type: 'none' },
  };
}

function toolChoice(req: ChatRequest, hasTools: boolean): Record<string, unknown> | undefined {
  const choice = req.tool_choice;
  if (choice === undefined || choice === null) return hasTools ? { type: 'auto' } : undefined;
  if (choice === 'auto' || choice === 'none') return hasTools ? { type: choice } : undefined;
  if (!hasTools) throw invalid('tool_choice', 'forcing a tool call needs tools');
  if (choice === 'required') return { type: 'any' };
  if (choice.type === 'function' && choice.function !== undefined) return { type: 'tool', name: choice.function.name };
  throw invalid(
    'tool_choice.type',
    `an anthropic upstream takes "none", "auto", "required" or a function, not "${choice.type}"`,
  );
}
