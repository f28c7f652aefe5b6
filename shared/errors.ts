// The whole error catalogue (STYLE §6). Every error a client, an operator or the
// CLI can see has a stable `code` here; callers branch on `code`, never on
// `instanceof` or message text (STYLE §7). README "Errors" is kept in sync with
// this table by test/shared/errors.test.ts.

export type ErrorType =
  'invalid_request_error' | 'authentication_error' | 'overloaded_error' | 'gateway_error' | 'upstream_error';

interface CatalogueEntry {
  readonly status: number;
  readonly type: ErrorType;
  readonly message: string;
}

export const ERROR_CATALOGUE = {
  // SPEC §4, master
  queue_full: { status: 503, type: 'overloaded_error', message: 'the version is at capacity and its queue is full' },
  queue_timeout: { status: 503, type: 'overloaded_error', message: 'waited too long for a free worker' },
  no_ready_worker: { status: 503, type: 'overloaded_error', message: 'the version has no ready worker' },
  shutting_down: { status: 503, type: 'overloaded_error', message: 'the gateway is shutting down' },
  too_many_connections: {
    status: 503,
    type: 'overloaded_error',
    message: 'the gateway holds as many client connections as it may (limits.maxClientConnections)',
  },
  worker_error: { status: 502, type: 'gateway_error', message: 'the worker failed before answering' },
  body_too_large: { status: 413, type: 'invalid_request_error', message: 'request body is too large' },
  invalid_request: { status: 400, type: 'invalid_request_error', message: 'invalid request' },
  unknown_version: { status: 404, type: 'invalid_request_error', message: 'unknown version' },
  not_found: { status: 404, type: 'invalid_request_error', message: 'no such route' },
  method_not_allowed: { status: 405, type: 'invalid_request_error', message: 'method not allowed' },
  internal_error: { status: 500, type: 'gateway_error', message: 'internal error' },
  // SPEC §4a, the client ↔ master ↔ worker hop (turn 2)
  body_timeout: { status: 408, type: 'invalid_request_error', message: 'the request body was not received in time' },
  body_budget: {
    status: 503,
    type: 'overloaded_error',
    message: 'the gateway holds too many request bodies right now',
  },
  worker_timeout: { status: 504, type: 'gateway_error', message: 'the worker did not answer in time' },
  // Never sent (the answer's status is out by then): the access log's `error` of a response cut for it.
  send_timeout: { status: 408, type: 'invalid_request_error', message: 'the client read nothing in time' },
  headers_too_large: { status: 431, type: 'invalid_request_error', message: 'request header fields are too large' },
  url_too_long: { status: 414, type: 'invalid_request_error', message: 'the request URL is too long' },
  // SPEC §12, the OpenAI surface across formats (turn 2)
  unsupported_endpoint: {
    status: 400,
    type: 'invalid_request_error',
    message: "this endpoint is not supported by the version's upstream format",
  },
  // A non-streamed answer is held whole to be sent as one JSON document: past its bound, the client must stream.
  answer_too_large: { status: 502, type: 'gateway_error', message: 'the answer is too large to be sent whole' },
  // What all of a worker's answers held whole may take at once (limits.maxBufferedAnswerBytes).
  answer_budget: {
    status: 503,
    type: 'overloaded_error',
    message: 'the worker holds too many non-streamed answers right now',
  },
  // SPEC §6, admin
  unauthorized: { status: 401, type: 'authentication_error', message: 'missing or wrong bearer token' },
  forbidden: { status: 403, type: 'invalid_request_error', message: 'this admin call is not allowed from here' },
  invalid_config: { status: 400, type: 'invalid_request_error', message: 'invalid configuration' },
  deploy_failed: { status: 500, type: 'gateway_error', message: 'the new build did not become ready' },
  deploy_in_progress: {
    status: 409,
    type: 'invalid_request_error',
    message: 'a deploy of this version is already running',
  },
  no_previous_build: { status: 409, type: 'invalid_request_error', message: 'this version has no previous build' },
  version_exists: { status: 409, type: 'invalid_request_error', message: 'a version with this name exists' },
  // SPEC §11, canary (turn 2)
  canary_in_progress: {
    status: 409,
    type: 'invalid_request_error',
    message: 'a canary of this version is already running',
  },
  // SPEC §4/§5, upstream
  upstream_unreachable: { status: 502, type: 'upstream_error', message: 'could not connect to the upstream' },
  upstream_timeout: { status: 504, type: 'upstream_error', message: 'the upstream did not answer in time' },
  upstream_protocol_error: { status: 502, type: 'upstream_error', message: 'the upstream sent a malformed response' },
  upstream_reset: { status: 502, type: 'upstream_error', message: 'the upstream closed the connection' },
  upstream_status: { status: 502, type: 'upstream_error', message: 'the upstream answered with an error status' },
} as const satisfies Record<string, CatalogueEntry>;

export type ErrorCode = keyof typeof ERROR_CATALOGUE;

/**
 * What an upstream said of its own 4xx/429 in OpenAI's shape (`{"error":{"type","code","param"}}` with a string
 * `code`): the client's body carries these in place of graygate's type and code, as api.openai.com's would (an
 * application tests `code === 'context_length_exceeded'`; the OpenAI SDK carries `type`, `code` and `param`).
 */
export interface ReportedError {
  type: string;
  code: string;
  /** Absent when the upstream sent none. */
  param?: string | null;
}

export interface GraygateErrorOptions {
  cause?: unknown;
  /** The upstream's own type, code and param, for the client's body (SPEC §5: 4xx/429 passed through). */
  reported?: ReportedError;
  /** Overrides the catalogue status; used for upstream 4xx/429 passed through with their meaning. */
  status?: number;
  /** Seconds; sent as `Retry-After` (SPEC §4: queue_full and queue_timeout). */
  retryAfterS?: number;
  /**
   * Sent as `x-should-retry`, which OpenAI's SDKs obey over their own rule (retry 408, 409, 429 and 5xx): false for
   * an error a retry would only repeat, or the upstream's own hint passed on.
   */
  shouldRetry?: boolean;
  /**
   * The request field the error is about, as its path (`tools.0.function.strict`): the body's `param`, which
   * OpenAI's SDKs read as `err.param` (api.openai.com names the field there, not only in the message).
   */
  param?: string;
}

export class GraygateError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  readonly type: ErrorType;
  readonly retryAfterS: number | undefined;
  readonly shouldRetry: boolean | undefined;
  readonly reported: ReportedError | undefined;
  readonly param: string | undefined;

  constructor(code: ErrorCode, message?: string, options: GraygateErrorOptions = {}) {
    const entry: CatalogueEntry = ERROR_CATALOGUE[code];
    super(message ?? entry.message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'GraygateError';
    this.code = code;
    this.status = options.status ?? entry.status;
    this.type = entry.type;
    this.retryAfterS = options.retryAfterS;
    this.shouldRetry = options.shouldRetry;
    this.reported = options.reported;
    this.param = options.param;
  }
}

/**
 * What a request still in flight at the shutdown deadline reads (`shutting_down`): its 503, or its stream's final
 * event, written by the master or, for an answer it writes to the client itself, by the worker told to (IPC `cut`).
 */
export const DEADLINE_CUT_MESSAGE = 'graygate is shutting down: its deadline cut this request';
/**
 * What a request still in flight at its worker's own drain deadline reads (`shutting_down`): an old build's at
 * limits.drainTimeoutMs, a worker's that drains on its own (a SIGTERM its master did not take, its master gone).
 */
export const DRAIN_CUT_MESSAGE = 'the worker answering this request stopped: its drain deadline cut this request';

/**
 * Longest message in an error answer, UTF-16 units. Messages name what a client or an upstream sent (a field's name,
 * an origin, an upstream's own message), which a client can make megabytes long: past this, cut with `…`, so no answer
 * echoes its input whole (a 9 MiB key name came back as a 9 MiB 400). The error itself keeps it whole: the log line of
 * a refused admin call or config file lists every problem.
 */
export const MAX_ERROR_MESSAGE_CHARS = 8192;

function boundedMessage(message: string): string {
  return message.length <= MAX_ERROR_MESSAGE_CHARS ? message : `${cutText(message, MAX_ERROR_MESSAGE_CHARS - 1)}…`;
}

/**
 * The first `length` UTF-16 units of `text`, one fewer when the cut would leave half a surrogate pair (an emoji):
 * a lone surrogate, escaped in the client's JSON, is refused by strict parsers (serde_json).
 */
export function cutText(text: string, length: number): string {
  const last = text.charCodeAt(length - 1);
  return text.slice(0, last >= 0xd800 && last <= 0xdbff ? length - 1 : length);
}

export function isGraygateError(err: unknown): err is GraygateError {
  // Branch on the stable code, not instanceof (STYLE §7): errors also cross IPC as data.
  return (
    typeof err === 'object' &&
    err !== null &&
    typeof (err as { code?: unknown }).code === 'string' &&
    Object.hasOwn(ERROR_CATALOGUE, (err as { code: string }).code) &&
    typeof (err as { status?: unknown }).status === 'number'
  );
}

export interface ErrorBody {
  /** graygate's type and code, or an upstream's own (ReportedError), with its `param`. */
  error: { message: string; type: string; code: string; param?: string | null };
}

export interface ErrorResponse {
  /** graygate's own code, whatever the body says (an upstream's, ReportedError): what it counts and logs. */
  code: ErrorCode;
  status: number;
  headers: Record<string, string>;
  body: ErrorBody;
}

/**
 * A field's path as api.openai.com writes it in `param`: an array's index in brackets, `messages.[0].content` for
 * graygate's `messages.0.content` (openai/openai-python#1571 quotes `'param': 'messages.[2].content'`), so a client
 * that reads `err.param` finds the same path behind graygate as without it.
 *
 * Only as much as the answer shows (boundedMessage) is converted: the path may end in a client's key, as long as a
 * body, and one regular expression over all of it took a 10 MiB key of `.1.1.1…` through ~5 M replacements (a
 * review's probe: ~5 s of the worker's loop, ~25 s on a busy box, and a heap past 256 MiB, for one 400). Past
 * MAX_ERROR_MESSAGE_CHARS the segments are not looked at; what was converted is then longer than the bound, so the cut
 * and its `…` still come.
 */
function openAiParam(path: string): string {
  let converted = '';
  let start = 0;
  while (converted.length <= MAX_ERROR_MESSAGE_CHARS) {
    const dot = path.indexOf('.', start);
    const end = dot === -1 ? path.length : dot;
    // A segment longer than an index can be is a client's key, and only its start can show.
    const segment = path.slice(start, Math.min(end, start + MAX_ERROR_MESSAGE_CHARS + 1));
    converted += end - start <= MAX_INDEX_DIGITS && INDEX.test(segment) ? `[${segment}]` : segment;
    if (dot === -1) break;
    converted += '.';
    start = dot + 1;
  }
  return converted;
}

/** A path's segment that is an array's index (`0`, `12`): digits only; `k2` is a key. */
const INDEX = /^\d+$/;

/** The most digits an index has (an array's length is below 2^32); a longer run of them is a client's key. */
const MAX_INDEX_DIGITS = 10;

/** The single error handler (STYLE §8): any error → a status and an OpenAI-shaped body. */
export function toErrorResponse(err: unknown): ErrorResponse {
  const e = isGraygateError(err) ? err : new GraygateError('internal_error');
  const headers: Record<string, string> = {};
  if (e.retryAfterS !== undefined) headers['retry-after'] = String(e.retryAfterS);
  if (e.shouldRetry !== undefined) headers['x-should-retry'] = String(e.shouldRetry);
  const reported = e.reported;
  const base = { code: e.code, status: e.status, headers };
  const message = boundedMessage(e.message);
  if (reported === undefined) {
    // Bounded as the message is: a path names a client's key, which may be megabytes long.
    const param = e.param === undefined ? {} : { param: boundedMessage(openAiParam(e.param)) };
    return { ...base, body: { error: { message, type: e.type, code: e.code, ...param } } };
  }
  const { type, code, param } = reported;
  return { ...base, body: { error: { message, type, code, ...(param === undefined ? {} : { param }) } } };
}

/**
 * The last event of a stream that failed after its status was sent (SPEC §4–§5,
 * STYLE §9): the same error body as a JSON answer, as one SSE event. No
 * `[DONE]` follows it. Used by the worker (upstream failures) and the master
 * (a worker that died mid-stream).
 */
export function toSseErrorEvent(err: unknown): string {
  return `data: ${JSON.stringify(toErrorResponse(err).body)}\n\n`;
}

/**
 * The same for a Responses API stream (`/v1/responses`): the API's own error event, `event: error` with
 * `{type: "error", code, message, param, sequence_number}`, numbered after the last event sent, which its clients
 * read as an event of the stream (the AI SDK validates every event's type; OpenAI's SDKs yield it).
 */
export function toResponsesErrorEvent(err: unknown, sequenceNumber: number): string {
  const { error } = toErrorResponse(err).body;
  const body = { type: 'error', code: error.code, message: error.message, param: error.param ?? null };
  return `event: error\ndata: ${JSON.stringify({ ...body, sequence_number: sequenceNumber })}\n\n`;
}

/** An error as JSON-safe data, for IPC (STYLE §19). */
export interface SerializedError {
  code: string;
  message: string;
  stack?: string;
}

export function serializeError(err: unknown): SerializedError {
  if (err instanceof Error) {
    const raw = (err as Error & { code?: unknown }).code;
    const code = typeof raw === 'string' ? raw : 'internal_error';
    return { code, message: err.message, ...(err.stack === undefined ? {} : { stack: err.stack }) };
  }
  return { code: 'internal_error', message: String(err) };
}
