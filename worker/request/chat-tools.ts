import { boolean, checker, isObject, nonEmptyString, nullable, object, string, type Rule } from './checks.js';

// SPEC §12: the shapes of tool calling and JSON mode in a Chat Completions
// request, checked whatever the version's format, so the converters can trust
// them. Only what every format reads is checked: a tool or response format of
// another `type` (OpenAI's `custom` tools, say) passes, and only an OpenAI
// upstream takes it (upstream/field-support.ts refuses it for the others).

const TOOL_CHOICE_WORDS: ReadonlySet<unknown> = new Set(['none', 'auto', 'required']);

/** Problems of the top-level tools, tool_choice, parallel_tool_calls and response_format. */
export function toolProblems(body: Record<string, unknown>, problems: string[]): void {
  const check = checker(problems);
  const tools = body['tools'];
  check(
    'tools',
    tools,
    nullable((v) => (Array.isArray(v) ? undefined : 'must be an array of tools')),
  );
  if (Array.isArray(tools)) tools.forEach((tool: unknown, i) => toolShapeProblems(tool, `tools.${i}`, problems));
  const choice = body['tool_choice'];
  check(
    'tool_choice',
    choice,
    nullable((v) =>
      TOOL_CHOICE_WORDS.has(v) || (isObject(v) && typeof v['type'] === 'string')
        ? undefined
        : 'must be "none", "auto", "required" or an object with a type',
    ),
  );
  if (isObject(choice) && choice['type'] === 'function') {
    check('tool_choice.function', choice['function'], object);
    if (isObject(choice['function']))
      check('tool_choice.function.name', choice['function']['name'] ?? null, nonEmptyString);
  }
  check('parallel_tool_calls', body['parallel_tool_calls'], nullable(boolean));
  const format = body['response_format'];
  check(
    'response_format',
    format,
    nullable((v) => (isObject(v) && typeof v['type'] === 'string' ? undefined : 'must be an object with a type')),
  );
  if (isObject(format) && format['type'] === 'json_schema') {
    const spec = format['json_schema'];
    check('response_format.json_schema', spec ?? null, object);
    if (isObject(spec)) {
      check('response_format.json_schema.name', spec['name'] ?? null, nonEmptyString);
      check('response_format.json_schema.description', spec['description'], string);
      check('response_format.json_schema.schema', spec['schema'], object);
      check('response_format.json_schema.strict', spec['strict'], nullable(boolean));
    }
  }
}

function toolShapeProblems(tool: unknown, path: string, problems: string[]): void {
  const check = checker(problems);
  if (!isObject(tool) || typeof tool['type'] !== 'string') {
    problems.push(`${path}: must be an object with a type`);
    return;
  }
  if (tool['type'] !== 'function') return;
  const fn = tool['function'];
  check(`${path}.function`, fn ?? null, object);
  if (!isObject(fn)) return;
  check(`${path}.function.name`, fn['name'] ?? null, nonEmptyString);
  check(`${path}.function.description`, fn['description'], string);
  check(`${path}.function.parameters`, fn['parameters'], object);
  check(`${path}.function.strict`, fn['strict'], nullable(boolean));
}

/** Problems of one message's tool_calls (assistant) and tool_call_id (tool). */
export function messageToolProblems(message: Record<string, unknown>, path: string, problems: string[]): void {
  const check = checker(problems);
  const calls = message['tool_calls'];
  if (calls !== undefined && calls !== null) {
    if (message['role'] !== 'assistant') problems.push(`${path}.tool_calls: only assistant messages carry tool calls`);
    else if (!Array.isArray(calls)) problems.push(`${path}.tool_calls: must be an array of tool calls`);
    else calls.forEach((call: unknown, i) => callProblems(call, `${path}.tool_calls.${i}`, problems));
  }
  if (message['role'] === 'tool') check(`${path}.tool_call_id`, message['tool_call_id'] ?? null, nonEmptyString);
}

const requiredString: Rule = (v) => (v === null ? 'is required' : string(v));

function callProblems(call: unknown, path: string, problems: string[]): void {
  const check = checker(problems);
  if (!isObject(call) || typeof call['type'] !== 'string') {
    problems.push(`${path}: must be an object with a type`);
    return;
  }
  check(`${path}.id`, call['id'] ?? null, requiredString);
  if (call['type'] !== 'function') return;
  const fn = call['function'];
  check(`${path}.function`, fn ?? null, object);
  if (!isObject(fn)) return;
  check(`${path}.function.name`, fn['name'] ?? null, nonEmptyString);
  check(`${path}.function.arguments`, fn['arguments'] ?? null, requiredString);
}
