import { maxTokensOf, messageText, stopsOf, type ChatRequest } from '../request/chat-request.js';
import type { ChunkSink, FinishReason, StreamState } from '../types.js';
import { GraygateError } from '../../shared/errors.js';
import { parseUpstreamJson, requireModel, tokenCount, upstreamStreamError, type BuildOptions, type UpstreamAdapter, type UpstreamRequest } from './format-adapter.js';
import { contentChunk, finishChunk, roleChunk, usageChunk } from './chunk-builders.js';

// Ollama upstream (SPEC §2: `{url}/api/chat`): one JSON object per line
// (NDJSON). Each line carries `message.content`; the last has `done: true`,
// `done_reason` and the token counts (prompt_eval_count, eval_count).
// https://github.com/ollama/ollama/blob/main/docs/api.md#generate-a-chat-completion

const ROLES: Record<string, string> = { system: 'system', developer: 'system', user: 'user', assistant: 'assistant', tool: 'tool' };

export function buildOllamaRequest(req: ChatRequest, options: BuildOptions): UpstreamRequest {
  const model = requireModel(req, options);
  const messages = req.messages.map((m) => ({ role: ROLES[m.role]!, content: messageText(m) }));
  const modelOptions: Record<string, unknown> = {};
  if (req.temperature !== undefined && req.temperature !== null) modelOptions['temperature'] = req.temperature;
  if (req.top_p !== undefined && req.top_p !== null) modelOptions['top_p'] = req.top_p;
  const maxTokens = maxTokensOf(req);
  if (maxTokens !== undefined) modelOptions['num_predict'] = maxTokens;
  const stop = stopsOf(req);
  if (stop !== undefined) modelOptions['stop'] = stop;
  const body: Record<string, unknown> = { model, messages, stream: true };
  if (Object.keys(modelOptions).length > 0) body['options'] = modelOptions;
  // Ollama has no auth of its own, but a proxy in front of it may.
  const headers: Record<string, string> = { 'content-type': 'application/json', accept: 'application/x-ndjson' };
  if (options.apiKey !== undefined) headers['authorization'] = `Bearer ${options.apiKey}`;
  return { path: '/api/chat', headers, body: Buffer.from(JSON.stringify(body)), model };
}

/** Ollama's done_reason → OpenAI finish_reason. "load"/"unload" never come with content; treat them as stop. */
export function mapOllamaDoneReason(reason: unknown): FinishReason {
  return reason === 'length' ? 'length' : 'stop';
}

export function convertOllamaLine(state: StreamState, _type: string, line: string, sink: ChunkSink): void {
  if (line.trim() === '') return; // blank lines between documents are harmless
  const value = parseUpstreamJson(line);
  const error = value['error'];
  if (typeof error === 'string') throw upstreamStreamError(error);
  if (state.isDone) throw new GraygateError('upstream_protocol_error', 'the upstream sent data after its final line');
  if (!state.isRoleSent) sink.chunk(roleChunk(state));
  const message = value['message'] as { content?: unknown } | undefined;
  const content = message?.content;
  if (typeof content === 'string' && content !== '') sink.chunk(contentChunk(state, content));
  if (value['done'] === true) {
    state.isDone = true;
    state.promptTokens = tokenCount(value['prompt_eval_count']);
    state.completionTokens = tokenCount(value['eval_count']);
    sink.chunk(finishChunk(state, mapOllamaDoneReason(value['done_reason'])));
    sink.chunk(usageChunk(state));
  }
}

export const ollamaAdapter: UpstreamAdapter = {
  format: 'ollama',
  framing: 'ndjson',
  buildRequest: buildOllamaRequest,
  convertEvent: convertOllamaLine,
};
