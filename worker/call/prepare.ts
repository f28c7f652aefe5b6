import { GraygateError, ERROR_CATALOGUE, type ErrorCode } from '../../shared/errors.js';
import { parseChatRequest } from '../request/chat-request.js';
import { parseEndpointRequest } from '../request/endpoint-request.js';
import type { EmbeddingEncoding, EndpointKind } from '../types.js';
import type { BuildOptions, UpstreamAdapter, UpstreamFormat, UpstreamRequest } from '../upstream/format-adapter.js';

// Request body → upstream call, as one pure step (issue 9 part 5): parse,
// validate, convert, for every endpoint (SPEC §12). What comes out is the upstream body as bytes and the two
// flags the handler reads; the parsed request is not kept, so a 10 MB prompt
// is held once (as the upstream body) while its answer streams. Runs on the
// event loop for small bodies and on a helper thread for large ones
// (call/preparer.ts); the messages between the two are declared here.

export interface PreparedCall {
  request: UpstreamRequest;
  /** `stream: true`: answer with SSE. */
  isStream: boolean;
  /** `stream_options.include_usage`: send the usage chunk. */
  includeUsage: boolean;
  /** Embeddings: how the client wants its vectors. */
  encoding: EmbeddingEncoding;
  /**
   * The choices asked for (chat and legacy completions: `n`, × the prompts of a completion), each to finish; for
   * embeddings the inputs, one vector each.
   */
  choices: number;
}

export function prepareCall(
  kind: EndpointKind,
  body: Buffer,
  adapter: Pick<UpstreamAdapter, 'format' | 'endpoints' | 'buildRequest' | 'buildEndpointRequest'>,
  build: BuildOptions,
): PreparedCall {
  if (kind === 'chat') {
    const chat = parseChatRequest(body);
    return {
      request: adapter.buildRequest(chat, build),
      isStream: chat.stream === true,
      includeUsage: chat.stream_options?.include_usage === true,
      encoding: 'float',
      choices: chat.n ?? 1,
    };
  }
  if (!adapter.endpoints.has(kind) || adapter.buildEndpointRequest === undefined)
    throw unsupportedEndpoint(kind, adapter.format);
  const req = parseEndpointRequest(kind, body);
  return {
    request: adapter.buildEndpointRequest(kind, req.body, build),
    isStream: req.isStream,
    includeUsage: req.includeUsage,
    encoding: req.encoding,
    choices:
      kind === 'completions' ? completionChoices(req.body) : kind === 'embeddings' ? inputCount(req.body['input']) : 1,
  };
}

/**
 * The texts an embeddings request's input holds (validated: a string, or an array of strings or token arrays). An
 * empty string is none: Ollama answers it with no vector (a reviewer: it was a 200 `data: []`, then a 502).
 */
export function inputCount(input: unknown): number {
  if (input === '') return 0;
  return Array.isArray(input) && !input.every((item) => typeof item === 'number') ? input.length : 1;
}

/**
 * The choices a legacy completion streams: `n` for each prompt (`prompt` a string or token array is one; an array of
 * strings or of token arrays, one each). What cannot be read counts as one.
 */
function completionChoices(body: Record<string, unknown>): number {
  const n = body['n'];
  const perPrompt = typeof n === 'number' && Number.isInteger(n) && n > 0 ? n : 1;
  const prompt = body['prompt'];
  const prompts =
    Array.isArray(prompt) && prompt.length > 0 && (typeof prompt[0] === 'string' || Array.isArray(prompt[0]))
      ? prompt.length
      : 1;
  return perPrompt * prompts;
}

/** SPEC §12: an endpoint the version's format does not serve, naming the format. */
export function unsupportedEndpoint(kind: EndpointKind, format: UpstreamFormat): GraygateError {
  return unsupportedCall(`POST ${ENDPOINT_PATHS[kind]}`, format);
}

/** The same for any call (`GET /v1/responses/resp_1`). */
export function unsupportedCall(call: string, format: UpstreamFormat): GraygateError {
  return new GraygateError(
    'unsupported_endpoint',
    `${call} is not supported by this version's upstream format (${format})`,
  );
}

/** The worker path of each endpoint. */
const ENDPOINT_PATHS: Readonly<Record<EndpointKind, string>> = {
  chat: '/v1/chat/completions',
  embeddings: '/v1/embeddings',
  completions: '/v1/completions',
  responses: '/v1/responses',
};

/** What the helper thread is started with. */
export interface PrepareThreadData {
  format: UpstreamFormat;
  build: BuildOptions;
}

/** Main → thread: one body; its memory is moved, not copied, when it owns its ArrayBuffer. */
export interface PrepareJob {
  id: number;
  kind: EndpointKind;
  body: Uint8Array;
}

/** Thread → main. Errors travel as data (STYLE §19). */
export type PrepareReply =
  | {
      id: number;
      ok: true;
      path: string;
      headers: Record<string, string>;
      body: Uint8Array;
      model: string;
      isStream: boolean;
      includeUsage: boolean;
      encoding: EmbeddingEncoding;
      choices: number;
    }
  | { id: number; ok: false; code: string; message: string; param?: string };

/** Buffer → the view to post and the memory to move with it (none when the Buffer is a slice of Node's shared pool). */
export function toTransferable(buf: Buffer): { bytes: Uint8Array; transfer: ArrayBuffer[] } {
  const bytes = new Uint8Array(buf.buffer, buf.byteOffset, buf.byteLength);
  const owns = buf.byteOffset === 0 && buf.byteLength === buf.buffer.byteLength && buf.buffer instanceof ArrayBuffer;
  return { bytes, transfer: owns ? [buf.buffer] : [] };
}

export function fromTransferred(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A failure of the thread's job as a catalogued error, the code kept (STYLE §7), and the field it names (the body's
 * `param`): dropped, a body over the inline limit got a 400 without it where a smaller one had it.
 */
export function toJobError(reply: { code: string; message: string; param?: string }): GraygateError {
  const code = Object.hasOwn(ERROR_CATALOGUE, reply.code) ? (reply.code as ErrorCode) : 'internal_error';
  return new GraygateError(code, reply.message, reply.param === undefined ? {} : { param: reply.param });
}
