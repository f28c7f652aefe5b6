import { parseJsonExact } from '../request/exact-numbers.js';
import { checkJsonLimits, type JsonLimits } from '../request/json-limits.js';
import { GraygateError } from '../../shared/errors.js';
import {
  CHAT_REQUEST_LIMITS,
  type ChatMessage,
  type ContentPart,
  type RequestTool,
  type ResponseFormat,
} from '../request/chat-request.js';
import { unconvertible, type ConvertedFormat } from './field-support.js';

// Pieces of an OpenAI chat request that the Ollama and Anthropic converters
// read the same way (SPEC §12): content parts, tool-call arguments, image
// data URLs. Every refusal is a 400 whose message starts with the path of the
// field, `messages.3.content.1.image_url.url: …`, like the other checks.

export function invalid(path: string, message: string): GraygateError {
  return new GraygateError('invalid_request', `${path}: ${message}`, { param: path });
}

const TEXT_PART_KEYS: ReadonlySet<string> = new Set(['type', 'text']);
const IMAGE_PART_KEYS: ReadonlySet<string> = new Set(['type', 'image_url']);
const IMAGE_URL_KEYS: ReadonlySet<string> = new Set(['url', 'detail']);
const FILE_PART_KEYS: ReadonlySet<string> = new Set(['type', 'file']);
const FILE_KEYS: ReadonlySet<string> = new Set(['file_data', 'filename']);
const TOOL_KEYS: ReadonlySet<string> = new Set(['type', 'function']);
const FUNCTION_KEYS: ReadonlySet<string> = new Set(['name', 'description', 'parameters', 'strict']);
const JSON_SCHEMA_KEYS: ReadonlySet<string> = new Set(['name', 'description', 'schema', 'strict']);

/**
 * The keys of a nested object the converters read (a content part, a tool, a JSON schema format); any other is a 400
 * naming it, as an unknown top-level field is (field-support.ts): never silently dropped. `null` counts
 * as absent.
 */
function checkKeys(value: object, allowed: ReadonlySet<string>, path: string, format: ConvertedFormat): void {
  for (const [key, v] of Object.entries(value)) {
    if (!allowed.has(key) && v !== null && v !== undefined)
      throw new GraygateError('invalid_request', unconvertible(`${path}.${key}`, format), { param: `${path}.${key}` });
  }
}

/** A content part, or a whole message's content given as a string. */
export type Part =
  | { kind: 'text'; text: string }
  | { kind: 'image'; url: string; path: string }
  | { kind: 'file'; data: string; filename: string | undefined; path: string };

/**
 * The parts of a message's content: text always; images only where `allowImages` (user messages), files (`file`
 * parts whose `file_data` is a base64 `data:` URL) only where `allowFiles` too. Any other part type is refused, naming
 * the part.
 */
export function contentParts(
  msg: ChatMessage,
  path: string,
  format: ConvertedFormat,
  allowImages: boolean,
  allowFiles = false,
): Part[] {
  const content = msg.content;
  if (content === undefined || content === null) return [];
  if (typeof content === 'string') return [{ kind: 'text', text: content }];
  return content.map((part: ContentPart, i) => {
    const at = `${path}.content.${i}`;
    if (part.type === 'text' && typeof part['text'] === 'string') {
      checkKeys(part, TEXT_PART_KEYS, at, format);
      return { kind: 'text', text: part['text'] };
    }
    if (part.type === 'image_url' && allowImages) {
      checkKeys(part, IMAGE_PART_KEYS, at, format);
      const image = part['image_url'];
      if (typeof image === 'object' && image !== null) checkKeys(image, IMAGE_URL_KEYS, `${at}.image_url`, format);
      const url = (image as { url?: unknown } | undefined)?.url;
      if (typeof url !== 'string') throw invalid(`${at}.image_url.url`, 'must be a string');
      return { kind: 'image', url, path: `${at}.image_url.url` };
    }
    if (part.type === 'file' && allowImages && allowFiles) return filePart(part, at, format);
    throw invalid(
      at,
      `content parts of type "${part.type}" are not supported in ${msg.role} messages by an ${format} upstream`,
    );
  });
}

/**
 * A `file` part as the OpenAI SDK sends a PDF: `{file: {file_data: "data:application/pdf;base64,…", filename}}`. A
 * `file_id` names a file uploaded to OpenAI, which no other upstream can read: refused, naming it.
 */
function filePart(part: ContentPart, at: string, format: ConvertedFormat): Part {
  const file = part['file'];
  if (typeof file !== 'object' || file === null || Array.isArray(file))
    throw invalid(`${at}.file`, 'must be an object');
  const fields = file as { file_data?: unknown; filename?: unknown; file_id?: unknown };
  if (fields.file_id !== undefined && fields.file_id !== null) {
    throw invalid(
      `${at}.file.file_id`,
      `names a file stored at OpenAI, which an ${format} upstream cannot read: send the file itself as file_data`,
    );
  }
  checkKeys(part, FILE_PART_KEYS, at, format);
  checkKeys(file, FILE_KEYS, `${at}.file`, format);
  if (typeof fields.file_data !== 'string') throw invalid(`${at}.file.file_data`, 'must be a string');
  if (fields.filename !== undefined && fields.filename !== null && typeof fields.filename !== 'string')
    throw invalid(`${at}.file.filename`, 'must be a string');
  return {
    kind: 'file',
    data: fields.file_data,
    filename: typeof fields.filename === 'string' ? fields.filename : undefined,
    path: `${at}.file.file_data`,
  };
}

/** The text parts of a message joined (for roles that take text only). */
export function textOnly(msg: ChatMessage, path: string, format: ConvertedFormat): string {
  return contentParts(msg, path, format, false)
    .map((p) => (p.kind === 'text' ? p.text : ''))
    .join('');
}

const MEDIA_TYPE = /^[a-z]+\/[a-z0-9.+-]+$/i;

/**
 * `data:image/png;base64,AAAA` → its media type and base64 payload; undefined for any other URL. Read with
 * indexOf, not one regular expression: parameters (`;name=x`) may repeat, and a pattern for that backtracked past its
 * stack on 8 M `;` (a 500 for a 400). A media type that is not `type/subtype` is no data URL.
 */
export function parseDataUrl(url: string): { mediaType: string | undefined; data: string } | undefined {
  if (url.slice(0, 5).toLowerCase() !== 'data:') return undefined;
  const comma = url.indexOf(',', 5);
  if (comma === -1) return undefined;
  const header = url.slice(5, comma);
  if (!header.toLowerCase().endsWith(';base64')) return undefined;
  const mediaType = header.slice(0, header.indexOf(';'));
  if (mediaType !== '' && !MEDIA_TYPE.test(mediaType)) return undefined;
  return { mediaType: mediaType === '' ? undefined : mediaType.toLowerCase(), data: url.slice(comma + 1) };
}

/**
 * What the tool calls' arguments of one request may hold: each as much as a request body (CHAT_REQUEST_LIMITS), all
 * together four bodies' worth of members and items (numbers in an agent's arguments add up; keys, each a new hidden
 * class, cost ~0.2 s per 50 000 to parse, on the worker's helper thread).
 */
const ARGUMENTS_LIMITS: JsonLimits = { ...CHAT_REQUEST_LIMITS, maxValues: 4 * CHAT_REQUEST_LIMITS.maxValues };

/**
 * Tool calls' `arguments` (JSON texts, as OpenAI sends them) as the objects
 * Ollama and Anthropic take. An empty text is `{}` (some clients send that for
 * a call without parameters); anything but a JSON object is refused. Each text
 * is held to ARGUMENTS_LIMITS before it is parsed: to the body's own check
 * they were strings, so 20 KB nested 10 000 deep overflowed JSON.stringify's
 * stack (a 500) and 10 MB cost seconds.
 */
export class ToolArguments {
  readonly #format: ConvertedFormat;
  #values = 0;

  constructor(format: ConvertedFormat) {
    this.#format = format;
  }

  parse(text: string, path: string): Record<string, unknown> {
    if (text.trim() === '') return {};
    const scan = {
      subject: `${path}:`,
      values: this.#values,
      totalSubject: "the JSON of the request's tool-call arguments",
    };
    checkJsonLimits(Buffer.from(text), ARGUMENTS_LIMITS, scan);
    this.#values = scan.values;
    let value: unknown;
    try {
      value = parseJsonExact(text);
    } catch {
      throw invalid(path, `must be a JSON object for an ${this.#format} upstream (it is not valid JSON)`);
    }
    if (typeof value !== 'object' || value === null || Array.isArray(value))
      throw invalid(path, `must be a JSON object for an ${this.#format} upstream`);
    return value as Record<string, unknown>;
  }
}

/** Function tools only, with their path; `strict: true` refused where the format cannot guarantee it. */
export function functionTools(
  tools: RequestTool[],
  format: ConvertedFormat,
  isStrictHonoured: boolean,
): Array<{
  name: string;
  description: string | undefined;
  parameters: Record<string, unknown> | undefined;
  strict: boolean;
}> {
  return tools.map((tool, i) => {
    if (tool.type !== 'function')
      throw invalid(`tools.${i}.type`, `an ${format} upstream takes function tools only, not "${tool.type}"`);
    checkKeys(tool, TOOL_KEYS, `tools.${i}`, format);
    const fn = tool.function;
    checkKeys(fn, FUNCTION_KEYS, `tools.${i}.function`, format);
    const strict = fn.strict === true;
    if (strict && !isStrictHonoured)
      throw invalid(
        `tools.${i}.function.strict`,
        `an ${format} upstream cannot guarantee that tool arguments follow the schema; send strict: false ` +
          '(or set the version\'s upstream.strictTools to "unchecked")',
      );
    return { name: fn.name, description: fn.description, parameters: fn.parameters, strict };
  });
}

/** Tool-call id → function name over a conversation's assistant messages (a tool result names the call by id only). */
export function toolNamesById(messages: ChatMessage[]): Map<string, string> {
  const names = new Map<string, string>();
  for (const m of messages) {
    for (const call of m.tool_calls ?? []) {
      if (call.type === 'function') names.set(call.id, call.function.name);
    }
  }
  return names;
}

/**
 * The schema of `response_format: {type: "json_schema"}`, undefined without one. Its `description` (what the answer
 * is, for the model) has no field of its own on either format: it becomes the schema's, unless the schema has one.
 */
export function jsonSchemaOf(
  jsonSchema: ResponseFormat['json_schema'],
  format: ConvertedFormat,
): Record<string, unknown> | undefined {
  if (jsonSchema === undefined || jsonSchema === null) return undefined;
  checkKeys(jsonSchema, JSON_SCHEMA_KEYS, 'response_format.json_schema', format);
  const { schema, description } = jsonSchema;
  if (schema === undefined || schema === null) return undefined;
  if (typeof description !== 'string' || description === '' || schema['description'] !== undefined) return schema;
  return { ...schema, description };
}
