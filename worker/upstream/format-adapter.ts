import { cutText, GraygateError, type ReportedError } from '../../shared/errors.js';
import { checkJsonLimits, type JsonLimits } from '../request/json-limits.js';
import type { ChatRequest } from '../request/chat-request.js';
import type { ChunkSink, EmbeddingEncoding, EndpointKind, RelayKind, StreamState } from '../types.js';

// The contract every upstream format implements (SPEC §5, issue 3 part 2): a
// pure request converter and an event converter that is deterministic given
// the per-stream state it is handed. Neither does I/O, reads the clock or
// draws random numbers; upstream/pipeline.ts does all that. Below it, the
// helpers the three converters share.

export type UpstreamFormat = 'openai' | 'ollama' | 'anthropic';

export interface BuildOptions {
  /** upstream.model from the config; overrides the client's model when set. */
  model: string | undefined;
  /** The key read from process.env[upstream.apiKeyEnv], if any. Goes into headers only, never into logs. */
  apiKey: string | undefined;
  /**
   * upstream.strictTools "unchecked": a tool's `strict: true` is sent to an upstream that cannot guarantee it, as a
   * plain tool. Default false: a 400 naming it (SPEC §12).
   */
  isStrictUnchecked?: boolean;
  /** upstream.defaultMaxTokens: an anthropic upstream's `max_tokens` when the client sends none (default 4096). */
  defaultMaxTokens?: number;
}

export interface UpstreamRequest {
  /** Default POST; GET and DELETE are sent without a body (a stored response's calls). */
  method?: 'GET' | 'POST' | 'DELETE';
  /**
   * Path appended to the upstream base URL (SPEC §2: openai `/chat/completions`,
   * ollama `/api/chat`, anthropic `/v1/messages`).
   */
  path: string;
  headers: Record<string, string>;
  /** JSON, as bytes: handed to undici as is, no string conversion on the way out (issue 9 part 5). */
  body: Buffer;
  /** The model the upstream is asked for; OpenAI chunks we build carry it. */
  model: string;
}

export interface UpstreamAdapter {
  readonly format: UpstreamFormat;
  /** How the streamed body is framed: SSE events or one JSON document per line. */
  readonly framing: 'sse' | 'ndjson';
  /**
   * OpenAI request → upstream request. Asks for a stream (a non-streamed answer aggregates the same events), but
   * OpenAI's own format, whose non-streamed chat is asked for and checked whole (call/open-call.ts).
   */
  buildRequest(req: ChatRequest, options: BuildOptions): UpstreamRequest;
  /**
   * One upstream event → zero or more OpenAI chunks pushed to `sink`.
   * `type` is the SSE event type (`message` when absent), `''` for NDJSON lines.
   * Throws upstream_protocol_error for malformed data and upstream_status for an error the upstream reports in-stream.
   */
  convertEvent(state: StreamState, type: string, data: string, sink: ChunkSink): void;
  /**
   * The body ended before the format's final event: the chunks that close an answer that is whole all the same
   * (Anthropic's `stop_reason` came, its `message_stop` did not, as an OpenAI stream's finish without `[DONE]`).
   * Throws upstream_protocol_error when it is not; absent: it never is.
   */
  convertEnd?(state: StreamState, sink: ChunkSink): void;
  /** The OpenAI endpoints this format serves (SPEC §12); any other is 400 unsupported_endpoint naming the format. */
  readonly endpoints: ReadonlySet<EndpointKind>;
  /** The upstream call of a relay endpoint this format serves (`endpoints`), from the client's parsed body. */
  buildEndpointRequest?(kind: RelayKind, req: Record<string, unknown>, options: BuildOptions): UpstreamRequest;
  /** The upstream call on a response the upstream stored (OpenAI's Responses API); absent: the format has none. */
  buildStoredResponseRequest?(call: StoredResponseCall, options: BuildOptions): UpstreamRequest;
  /**
   * A whole non-streamed upstream answer → the OpenAI answer's JSON bytes
   * and its usage; absent: the answer is relayed byte for byte.
   */
  convertAnswer?: (kind: RelayKind, body: Buffer, hints: AnswerHints) => ConvertedAnswer;
}

/**
 * A call on a stored response (SPEC §12): `GET` or `DELETE /v1/responses/{id}`, `GET …/input_items`, `POST
 * …/cancel`, passed to the upstream as it came.
 */
export interface StoredResponseCall {
  method: 'GET' | 'POST' | 'DELETE';
  /** Below the upstream's base URL, the client's query string kept: `/responses/resp_1/input_items?limit=5`. */
  path: string;
  /** `GET /v1/responses/{id}?stream=true`: the response's events again, as SSE. */
  isStream: boolean;
}

export interface ConvertedAnswer {
  body: Buffer;
  usage: { prompt_tokens: number; completion_tokens: number };
}

/** What converting a whole answer needs to know of the request. */
export interface AnswerHints {
  /** Embeddings: floats or base64 of little-endian float32s. */
  encoding: EmbeddingEncoding;
  /** Embeddings: the inputs asked for, a vector each (an answer of another count is the upstream's error). */
  inputs: number;
}

/** A token count from an upstream usage field; anything but a non-negative integer up to MAX_TOKENS_PER_CALL is 0. */
export function tokenCount(value: unknown): number {
  return Number.isSafeInteger(value) && (value as number) >= 0 && (value as number) <= MAX_TOKENS_PER_CALL
    ? (value as number)
    : 0;
}

/**
 * The most tokens one call is taken to have used (a hundred times the longest context a model has): an upstream's
 * count past it, or one that is negative or fractional, is nonsense, counted 0. 1e300 once in graygate_tokens_total
 * made every later increment vanish in the float (rate() 0 until the worker restarted); clients' usage is integers.
 */
const MAX_TOKENS_PER_CALL = 1_000_000_000;

/**
 * How deep an upstream's JSON may nest (an answer, an event, an error body, a model list). JSON.parse takes any
 * depth, at ~0.4 s per MiB of `[[[…`: a 1 MiB event stalled every stream of the worker for that, a 32 MB answer for
 * 6.8 s (the master killed the worker for missed probes). 128: a Responses API event echoes the request's tools,
 * whose schemas may nest to the request's own 64, a few levels down.
 */
const UPSTREAM_JSON_LIMITS: JsonLimits = { maxDepth: 128, maxMembers: 0xffff_ffff, maxValues: Number.MAX_SAFE_INTEGER };

/**
 * How many members and items an upstream's JSON may hold in all: each is an object for JSON.parse to build, and an
 * answer held whole is parsed at once (an amplification audit: 64 MiB of `{},` in a non-streamed OpenAI answer's
 * `choices`, 21 million objects, held 1.3 GB of the worker's heap and its loop 22 s). A non-streamed chat answer with
 * `top_logprobs: 20` holds ~177 a token (a reviewer), so ~22,000 tokens; an embeddings answer's vectors are not
 * parsed (relayed, or read from the bytes: embedding-vectors.ts); events, error bodies and model lists are too short.
 */
export const MAX_UPSTREAM_JSON_VALUES = 4_000_000;

/**
 * Texts shorter than this are parsed without the scan: at worst ~6 ms, and the hot path's events are far shorter. One
 * nested deeper than a converter can walk (~5 000 levels fit in 10 KB) overflows its JSON.stringify, which the pipeline
 * answers as upstream_protocol_error too (pipeline.ts asConsumerError).
 */
const SCAN_FROM_CHARS = 16 * 1024;

/**
 * upstream_protocol_error when an upstream's JSON text (its bytes, when the caller has them, else its string) nests
 * deeper than UPSTREAM_JSON_LIMITS allows or holds more than MAX_UPSTREAM_JSON_VALUES; one pass over the bytes, only
 * for texts of SCAN_FROM_CHARS or more.
 */
export function checkUpstreamJson(text: string | Buffer, subject: string): void {
  if (valuesIn(text, subject) > MAX_UPSTREAM_JSON_VALUES)
    throw tooManyValues('upstream_protocol_error', subject, '', {});
}

/**
 * The same for a chat answer held whole, whose values past the bound are answer_too_large: a stream would not hold
 * them (a reviewer: a compact answer with `top_logprobs: 20` reaches it at ~22,000 tokens).
 */
export function checkWholeAnswerJson(bytes: Buffer, subject: string): void {
  if (valuesIn(bytes, subject) > MAX_UPSTREAM_JSON_VALUES)
    // The same request would make the upstream generate (and bill) the same answer again.
    throw tooManyValues('answer_too_large', subject, '; ask for it with stream: true', { shouldRetry: false });
}

/** The members and items of a text, after its depth is checked (0 for a short one, which is not scanned). */
function valuesIn(text: string | Buffer, subject: string): number {
  if (text.length < SCAN_FROM_CHARS) return 0;
  const scan = { subject, values: 0 };
  try {
    checkJsonLimits(typeof text === 'string' ? Buffer.from(text) : text, UPSTREAM_JSON_LIMITS, scan);
  } catch (err) {
    throw new GraygateError('upstream_protocol_error', (err as Error).message);
  }
  return scan.values;
}

function tooManyValues(
  code: 'upstream_protocol_error' | 'answer_too_large',
  subject: string,
  hint: string,
  options: { shouldRetry?: boolean },
): GraygateError {
  const limit = MAX_UPSTREAM_JSON_VALUES;
  return new GraygateError(
    code,
    `${subject} has more than ${limit} members and items in total (limit ${limit})${hint}`,
    options,
  );
}

/**
 * JSON.parse that turns a syntax error into upstream_protocol_error (SPEC §5: never silently dropped), after
 * checkUpstreamJson; `bytes`: the same text as bytes, when the caller holds them (spares a copy).
 */
export function parseUpstreamJson(data: string, bytes?: Buffer): Record<string, unknown> {
  checkUpstreamJson(bytes ?? data, 'the upstream sent JSON that');
  let value: unknown;
  try {
    value = JSON.parse(data);
  } catch {
    throw new GraygateError(
      'upstream_protocol_error',
      `the upstream sent an event that is not valid JSON: ${preview(data)}`,
    );
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new GraygateError(
      'upstream_protocol_error',
      `the upstream sent an event that is not a JSON object: ${preview(data)}`,
    );
  }
  return value as Record<string, unknown>;
}

/**
 * Whether an answer's or event's `error` member says there is an error: anything but absent, null, false, 0 or "" (a
 * server that always sends the member, `"error": false` on a good answer, answered a 502 before).
 */
export function isError(error: unknown): boolean {
  return error !== undefined && error !== null && error !== false && error !== 0 && error !== '';
}

/**
 * The upstream's error when `text` is a JSON object with an `error` that says there is one (isError: a 200 carrying
 * one, JSON where an event stream was asked for); undefined for anything else, text that is not JSON included.
 */
export function upstreamErrorIn(body: string): GraygateError | undefined {
  // A byte-order mark before it hid a 200's error from the parse: it was relayed to the client as an answer.
  const text = withoutBomText(body);
  let error: unknown;
  try {
    checkUpstreamJson(text, 'the body');
    error = (JSON.parse(text) as { error?: unknown } | null)?.error;
  } catch {
    return undefined;
  }
  return isError(error) ? upstreamStreamError(upstreamErrorMessage(text)) : undefined;
}

/** A whole answer that is no JSON object (an HTML page of a proxy in front of the model), named by its first bytes. */
export function notJsonObject(text: string): GraygateError {
  return new GraygateError(
    'upstream_protocol_error',
    `the upstream answered with a body that is not a JSON object: ${JSON.stringify(cutText(withoutSecrets(text).trimStart(), 40))}`,
  );
}

/** UTF-8's byte-order mark, which some upstreams put before a JSON answer (none is sent on: RFC 8259 §8.1). */
export const UTF8_BOM: Buffer = Buffer.from([0xef, 0xbb, 0xbf]);

/** An upstream's JSON bytes without the byte-order mark some put before them (RFC 8259 §8.1: a reader may skip it). */
export function withoutBom(bytes: Buffer): Buffer {
  return bytes[0] === 0xef && bytes[1] === 0xbb && bytes[2] === 0xbf ? bytes.subarray(UTF8_BOM.length) : bytes;
}

/** The same for a text already decoded (U+FEFF first). */
export function withoutBomText(text: string): string {
  return text.charCodeAt(0) === 0xfeff ? text.slice(1) : text;
}

function preview(data: string): string {
  // Hidden before the cut: a preview ending inside the key would show its start.
  const text = withoutSecrets(data);
  return text.length > 80 ? `${cutText(text, 80)}…` : text;
}

/**
 * The message of an upstream error body, whatever its format: OpenAI and
 * Anthropic `{"error":{"message"}}`, Ollama `{"error":"…"}`, llama.cpp's
 * `{"message"}`, FastAPI's (vLLM, Mistral) `{"detail":"…"}` or
 * `{"detail":[{"loc","msg"}]}`, Mistral's `{"message":{"detail":[…]}}`; else
 * the text itself.
 */
export function upstreamErrorMessage(body: string): string {
  return upstreamErrorOf(body).message;
}

/**
 * An upstream's error body read once: its message (upstreamErrorMessage) and, for an OpenAI-shaped one, its own type,
 * code and param (reportedErrorOf).
 */
export function upstreamErrorOf(raw: string): { message: string; reported: ReportedError | undefined } {
  // Hidden before anything is read out of it (a FastAPI detail is cut at 1,000 characters; a `param` is passed on).
  const body = withoutSecrets(withoutBomText(raw));
  const value = errorJsonOf(body);
  const found = isRecord(value) ? (messageOf(value['error']) ?? messageOf(value)) : undefined;
  // And again once parsed: JSON may escape it (`sk-proj\/…`, `\u0073k-…`), which decodes back to the key.
  const reported = hiddenInReported(reportedErrorOf(value));
  const message = found === undefined ? undefined : withoutSecrets(found);
  if (message !== undefined && message !== '') return { message, reported };
  const text = body.trim();
  return { message: text === '' ? 'the upstream answered with an error status' : preview(text), reported };
}

/** A reported error with the key hidden: a `code` or `type` that held it is graygate's own, a `param` redacted. */
function hiddenInReported(reported: ReportedError | undefined): ReportedError | undefined {
  if (reported === undefined) return undefined;
  const { code, type, param } = reported;
  return {
    code: withoutSecrets(code) === code ? code : 'upstream_status',
    type: withoutSecrets(type) === type ? type : 'upstream_error',
    ...(param === undefined ? {} : { param: param === null ? null : withoutSecrets(param) }),
  };
}

/** The error body as JSON within the bounds every upstream JSON has; undefined when it is not. */
function errorJsonOf(body: string): unknown {
  try {
    checkUpstreamJson(body, 'the error body');
    return JSON.parse(body) as unknown;
  } catch {
    return undefined;
  }
}

/** An upstream's error `type` or `code` the client may be shown: a token, as OpenAI's are. */
const REPORTED_TOKEN = /^[A-Za-z0-9_.:-]{1,64}$/;
/** Longest `param` passed on, characters (OpenAI's name a request field: `messages`, `tools[0].function.name`). */
const MAX_REPORTED_PARAM_CHARS = 256;

/**
 * An OpenAI-shaped error body's own type, code and param (`{"error":{"type","code","param"}}`), when its `code` is a
 * string token, or null beside a `type` token (api.openai.com's many 400s without a code: their type and param are
 * what SDK users branch on; the code is graygate's `upstream_status` then, SPEC §4's shape has one); undefined
 * otherwise (Ollama's and Anthropic's bodies have none, vLLM's and llama.cpp's a number).
 */
function reportedErrorOf(value: unknown): ReportedError | undefined {
  const error = isRecord(value) ? value['error'] : undefined;
  if (!isRecord(error)) return undefined;
  const { code, type, param } = error;
  const isTyped = typeof type === 'string' && REPORTED_TOKEN.test(type);
  const isCoded = typeof code === 'string' && REPORTED_TOKEN.test(code);
  if (!isCoded && !(code === null && isTyped)) return undefined;
  return {
    code: isCoded ? code : 'upstream_status',
    type: isTyped ? type : 'upstream_error',
    ...(param === null || (typeof param === 'string' && param.length <= MAX_REPORTED_PARAM_CHARS) ? { param } : {}),
  };
}

/** Longest message read out of FastAPI's validation details, characters. */
const MAX_DETAIL_CHARS = 1000;

function messageOf(value: unknown): string | undefined {
  if (typeof value === 'string') return value;
  if (!isRecord(value)) return undefined;
  const message = value['message'];
  if (typeof message === 'string') return message;
  const detail = isRecord(message) ? message['detail'] : value['detail'];
  if (typeof detail === 'string') return detail;
  if (!Array.isArray(detail)) return undefined;
  const parts: string[] = [];
  for (const item of detail) {
    if (!isRecord(item) || typeof item['msg'] !== 'string') continue;
    const loc = Array.isArray(item['loc']) ? item['loc'].join('.') : '';
    parts.push(loc === '' ? item['msg'] : `${loc}: ${item['msg']}`);
  }
  const joined = parts.join('; ');
  return joined.length > MAX_DETAIL_CHARS ? `${cutText(joined, MAX_DETAIL_CHARS)}…` : joined;
}

export function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/**
 * A field a converter reads, of a type it cannot convert (`message.content` an array of parts, a number): the
 * upstream's malformed answer, not an empty one. Null and absent are no text, and no error.
 */
export function wrongFieldType(field: string, expected: string, value: unknown): GraygateError {
  const type = Array.isArray(value) ? 'an array' : typeof value === 'object' ? 'an object' : `a ${typeof value}`;
  return new GraygateError('upstream_protocol_error', `the upstream sent ${field} as ${type}, not ${expected}`);
}

/** An error the upstream reported inside a 2xx stream. */
export function upstreamStreamError(message: string, status = 502): GraygateError {
  return new GraygateError('upstream_status', `the upstream reported an error: ${withoutSecrets(message)}`, {
    status,
  });
}

/**
 * What an upstream's text must not carry on to clients or the log (SPEC §9): the worker's own upstream key. An
 * upstream may echo it in an error ("Incorrect API key provided: Bearer sk-…"; api.openai.com masks it, other
 * servers and proxies may not), and that text becomes the error every client of the version reads.
 */
const secrets: string[] = [];

/** Hides `secret` in every upstream text this process passes on (the worker's upstream key, read at start). */
export function hideInUpstreamText(secret: string | undefined): void {
  // Shorter than 8 characters: not a key to find in text, and hiding it would garble every message holding it.
  // Also as HTTP carries it, trimmed: a key with a space at the end of its variable is echoed without it.
  for (const value of secret === undefined ? [] : [secret, secret.trim()])
    if (value.length >= 8 && !secrets.includes(value)) secrets.push(value);
}

/** `text` with the worker's upstream key (hideInUpstreamText) as `[redacted]`. */
export function withoutSecrets(text: string): string {
  let out = text;
  for (const secret of secrets) if (out.includes(secret)) out = out.split(secret).join('[redacted]');
  return out;
}

/** A model name an upstream reports, fit to go into the client's chunks: printable, bounded. */
export function isModelName(value: unknown): value is string {
  return typeof value === 'string' && /^[\x21-\x7e]{1,256}$/.test(value);
}

export function requireModel(req: { model?: unknown }, options: BuildOptions): string {
  const model = options.model ?? req.model;
  if (typeof model !== 'string') throw new GraygateError('invalid_request', 'model: is required', { param: 'model' });
  return model;
}
