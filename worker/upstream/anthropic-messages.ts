import type { ChatMessage } from '../request/chat-request.js';
import { contentParts, invalid, ToolArguments, parseDataUrl, textOnly, type Part } from './message-parts.js';

// OpenAI messages → Anthropic Messages (SPEC §12): system and developer
// messages become the top-level `system`; an assistant's tool calls become
// `tool_use` blocks; tool messages become `tool_result` blocks of a user
// turn (consecutive results, and a user message after them, share one turn,
// as Anthropic wants every result of a turn in the next user message); images
// become image blocks. https://docs.anthropic.com/en/api/messages

export type AnthropicBlock = Record<string, unknown> & { type: string };

export interface AnthropicMessage {
  role: 'user' | 'assistant';
  content: string | AnthropicBlock[];
}

/** The image types Anthropic takes. */
const IMAGE_TYPES: ReadonlySet<string> = new Set(['image/jpeg', 'image/png', 'image/gif', 'image/webp']);

/** Labels clients put on those types that Anthropic refuses by name (`data:image/jpg;base64,…` is common). */
const IMAGE_TYPE_ALIASES: ReadonlyMap<string, string> = new Map([
  ['image/jpg', 'image/jpeg'],
  ['image/pjpeg', 'image/jpeg'],
  ['image/x-png', 'image/png'],
]);

const PNG_SIGNATURE = Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);

export function anthropicMessages(messages: ChatMessage[]): { system: string[]; messages: AnthropicMessage[] } {
  const system: string[] = [];
  const out: AnthropicMessage[] = [];
  // The user turn tool results went into, while more may join it.
  let resultTurn: AnthropicMessage | undefined;
  const args = new ToolArguments('anthropic');
  messages.forEach((m, i) => {
    const path = `messages.${i}`;
    if (m.role === 'system' || m.role === 'developer') {
      const text = textOnly(m, path, 'anthropic');
      if (!isBlank(text)) system.push(text);
      return;
    }
    if (m.role === 'tool') {
      const block: AnthropicBlock = { type: 'tool_result', tool_use_id: m.tool_call_id! };
      // A tool that printed nothing: `content` is optional on a result, and Anthropic refuses an empty one.
      const result = textOnly(m, path, 'anthropic');
      if (!isBlank(result)) block['content'] = result;
      if (resultTurn === undefined) out.push((resultTurn = { role: 'user', content: [] }));
      (resultTurn.content as AnthropicBlock[]).push(block);
      return;
    }
    // Anthropic refuses empty or whitespace-only text blocks, an empty system and turns with no content, which OpenAI
    // takes (and graygate itself
    // answers an empty end_turn or a refusal with `content: ""`, which clients push back as history): an empty
    // part is left out, and a turn left with nothing is not sent. It says nothing, and Anthropic joins the
    // turns of one role on either side of it.
    if (m.role === 'user') {
      const blocks = joinTexts(contentParts(m, path, 'anthropic', true, true))
        .map(userBlock)
        .filter(isNotEmptyText);
      if (resultTurn !== undefined) {
        (resultTurn.content as AnthropicBlock[]).push(...blocks);
        resultTurn = undefined;
        return;
      }
      if (blocks.length > 0) out.push({ role: 'user', content: simplify(blocks) });
      return;
    }
    const blocks = assistantBlocks(m, path, args);
    if (blocks.length === 0) return;
    resultTurn = undefined;
    out.push({ role: 'assistant', content: simplify(blocks) });
  });
  // An empty last user message (system messages aside), left out, would end the conversation on the assistant's
  // turn, which Anthropic continues (a prefill): refused instead.
  const last = messages.findLastIndex((m) => m.role !== 'system' && m.role !== 'developer');
  if (messages[last]?.role === 'user' && out.at(-1)?.role === 'assistant')
    throw invalid(`messages.${last}.content`, 'an anthropic upstream takes no empty last user message');
  endPrefill(out.at(-1));
  return { system, messages: out };
}

/**
 * A conversation that ends on an assistant turn is Anthropic's prefill: the answer continues that text. Anthropic
 * refuses one that ends in whitespace ("final assistant content cannot end with trailing whitespace").
 */
function endPrefill(last: AnthropicMessage | undefined): void {
  if (last?.role !== 'assistant') return;
  if (typeof last.content === 'string') {
    last.content = last.content.trimEnd();
    return;
  }
  const block = last.content.at(-1);
  if (block?.type === 'text') block['text'] = (block['text'] as string).trimEnd();
}

/** Adjacent text parts as one (OpenAI concatenates them; Anthropic would see separate blocks). */
function joinTexts(parts: Part[]): Part[] {
  const out: Part[] = [];
  for (const part of parts) {
    const last = out.at(-1);
    if (part.kind === 'text' && last?.kind === 'text')
      out[out.length - 1] = { kind: 'text', text: last.text + part.text };
    else out.push(part);
  }
  return out;
}

function userBlock(part: Part): AnthropicBlock {
  if (part.kind === 'text') return { type: 'text', text: part.text };
  if (part.kind === 'file') return documentBlock(part);
  const data = parseDataUrl(part.url);
  if (data !== undefined) {
    const mediaType = imageTypeOf(data.data) ?? aliasOf(data.mediaType);
    if (mediaType === undefined || !IMAGE_TYPES.has(mediaType)) {
      throw invalid(part.path, `an anthropic upstream takes images of type ${[...IMAGE_TYPES].join(', ')}`);
    }
    return { type: 'image', source: { type: 'base64', media_type: mediaType, data: data.data } };
  }
  if (!/^https?:\/\//i.test(part.url)) throw invalid(part.path, 'must be an http(s) URL or a base64 data: URL');
  return { type: 'image', source: { type: 'url', url: part.url } };
}

/**
 * A PDF `file` part as Anthropic's document block (LiteLLM converts it so too); its file name is the document's
 * title. Anthropic reads PDFs from base64 data; a file of another type is refused, naming it.
 */
function documentBlock(part: Extract<Part, { kind: 'file' }>): AnthropicBlock {
  const data = parseDataUrl(part.data);
  if (data === undefined) throw invalid(part.path, 'must be a base64 data: URL (data:application/pdf;base64,…)');
  const isPdf =
    data.mediaType === 'application/pdf' ||
    Buffer.from(data.data.slice(0, 8), 'base64').toString('latin1').startsWith('%PDF-');
  if (!isPdf)
    throw invalid(
      part.path,
      `an anthropic upstream takes files of type application/pdf, not ${data.mediaType ?? 'unlabelled data'}`,
    );
  const block: AnthropicBlock = {
    type: 'document',
    source: { type: 'base64', media_type: 'application/pdf', data: data.data },
  };
  if (part.filename !== undefined && part.filename !== '') block['title'] = part.filename;
  return block;
}

function aliasOf(mediaType: string | undefined): string | undefined {
  return mediaType === undefined ? undefined : (IMAGE_TYPE_ALIASES.get(mediaType) ?? mediaType);
}

/**
 * The type of a base64 image by its first bytes, when it is one Anthropic takes; undefined for any other. OpenAI reads
 * an image by its bytes, whatever its data: URL says; Anthropic refuses one whose media_type is not what its bytes
 * are ("Image does not match the provided media type"), which a client's wrong label (a PNG sent as image/jpeg) was.
 */
function imageTypeOf(base64: string): string | undefined {
  const head = Buffer.from(base64.slice(0, 16), 'base64');
  if (head[0] === 0xff && head[1] === 0xd8 && head[2] === 0xff) return 'image/jpeg';
  if (head.subarray(0, 8).equals(PNG_SIGNATURE)) return 'image/png';
  const text = head.toString('latin1');
  if (text.startsWith('GIF87a') || text.startsWith('GIF89a')) return 'image/gif';
  if (text.startsWith('RIFF') && text.slice(8, 12) === 'WEBP') return 'image/webp';
  return undefined;
}

function assistantBlocks(m: ChatMessage, path: string, args: ToolArguments): AnthropicBlock[] {
  const text = textOnly(m, path, 'anthropic');
  const blocks: AnthropicBlock[] = isBlank(text) ? [] : [{ type: 'text', text }];
  (m.tool_calls ?? []).forEach((call, j) => {
    const at = `${path}.tool_calls.${j}`;
    if (call.type !== 'function')
      throw invalid(`${at}.type`, `an anthropic upstream takes function calls only, not "${call.type}"`);
    blocks.push({
      type: 'tool_use',
      id: call.id,
      name: call.function.name,
      input: args.parse(call.function.arguments, `${at}.function.arguments`),
    });
  });
  return blocks;
}

function isNotEmptyText(block: AnthropicBlock): boolean {
  return block.type !== 'text' || !isBlank(block['text'] as string);
}

/** Empty or whitespace only: Anthropic refuses such a text block ("must contain non-whitespace text"). */
function isBlank(text: string): boolean {
  return text.trim() === '';
}

/** A turn that is one text block goes as a plain string, as it always did; anything else as blocks. */
function simplify(blocks: AnthropicBlock[]): string | AnthropicBlock[] {
  if (blocks.length === 1 && blocks[0]!.type === 'text') return blocks[0]!['text'] as string;
  return blocks;
}
