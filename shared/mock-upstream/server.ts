import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { createServer } from '../node-http.js';
import type { AddressInfo } from 'node:net';
import { EventEmitter, once } from 'node:events';
import { BASE_PATHS, CHAT_PATHS, FRAMES, type FormatFrames, type MockAnswer, type MockFormat } from './formats.js';
import { completions, responses, responsesTools } from './endpoint-frames.js';
import { DEFAULT_CONTROLS, readControls, type MockControls } from './controls.js';
import { countPromptTokens, mockText } from './text.js';
import { MockStream } from './mock-stream.js';
import { answerJson, answerText, answerTools, json } from './answer.js';
import { forcedTool, jsonMode, messageTexts, promptTexts, requestTools } from './request-reading.js';
import { mockCallId, pieces, TOOL_FRAMES, type MockCall } from './tool-frames.js';
import { sampleFromSchema } from './schema-sample.js';
import { ollamaEmbed, openaiEmbeddings, embeddingInputs } from './embeddings.js';
import { anthropicModelList, ollamaModelList, openaiModelList } from './models.js';

// The mock upstream (SPEC §8, §12): one HTTP server answering the OpenAI,
// Ollama and Anthropic chat endpoints with deterministic text or tool calls
// (JSON mode included), at a chosen pace, with faults on demand; and OpenAI's
// legacy completions, Responses API and embeddings, Ollama's embeddings, and
// each format's model list. Tests observe each answer through a MockStream
// handle (what was asked, bytes written, backpressure, when its connection
// closed).

export { MockStream };

export interface MockUpstreamOptions {
  /** Default 127.0.0.1. */
  host?: string;
  /** Default 0 (a free port). */
  port?: number;
  /** Which format `baseUrl` points at; all three are always served. Default openai. */
  format?: MockFormat;
  /** Per-request defaults, overridden by x-mock-* headers or a [mock …] directive. */
  defaults?: Partial<MockControls>;
  /** Largest request body read, bytes. Default 10 MiB. */
  maxBodyBytes?: number;
  /** Model ids the model lists name. Default `["graygate-mock"]`. */
  models?: readonly string[];
  /**
   * Every Nth answer (chat, completions, responses, embeddings; counted across
   * them, deterministic: the 4th, 8th, … with 4) is refused at once with the
   * format's error body and status 500, whatever its request asked: an
   * upstream with a 1/N error rate for a whole version (issue 13's 25 %-error
   * canary). Default 0: never.
   */
  failEvery?: number;
}

export interface MockUpstreamStats {
  /** Streams (and non-streaming answers) started. */
  opened: number;
  /** Of those, closed by now. */
  closed: number;
  /** Closed before the answer was complete: the client went away or a fault cut it. */
  aborted: number;
}

export interface MockUpstream {
  /** http://127.0.0.1:port (the origin). */
  url: string;
  /** The base URL an SDK of `format` takes (SPEC §2): openai `${url}/v1`, else `url`. */
  baseUrl: string;
  port: number;
  /** Emits 'stream' (MockStream) when an answer starts. */
  events: EventEmitter<{ stream: [MockStream] }>;
  stats: MockUpstreamStats;
  /** Answers still open. */
  readonly open: ReadonlySet<MockStream>;
  /** Stops listening and ends every connection, stalled streams included. Idempotent. */
  close(): Promise<void>;
}

export async function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const defaults: MockControls = { ...DEFAULT_CONTROLS, ...options.defaults };
  const maxBodyBytes = options.maxBodyBytes ?? 10 * 1024 * 1024;
  const events = new EventEmitter<{ stream: [MockStream] }>();
  const stats: MockUpstreamStats = { opened: 0, closed: 0, aborted: 0 };
  const open = new Set<MockStream>();
  let nextId = 1;
  const failEvery = options.failEvery ?? 0;
  let answered = 0;
  const models = options.models ?? ['graygate-mock'];
  const track = (stream: MockStream, res: ServerResponse): void => {
    stats.opened++;
    open.add(stream);
    res.once('close', () => {
      stream.isClosed = true;
      stream.isComplete = res.writableFinished;
      open.delete(stream);
      stats.closed++;
      if (!stream.isComplete) stats.aborted++;
      stream.emit('close');
    });
    events.emit('stream', stream);
  };

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    if (req.method === 'GET' && path === '/v1/models') {
      return json(
        res,
        200,
        req.headers['anthropic-version'] === undefined ? openaiModelList(models) : anthropicModelList(models),
      );
    }
    if (req.method === 'GET' && path === '/api/tags') return json(res, 200, ollamaModelList(models));
    const route = ROUTES[path];
    if (route === undefined || req.method !== 'POST')
      return json(res, 404, {
        error: { message: `no route for ${req.method} ${path}`, type: 'invalid_request_error' },
      });
    readJson(req, maxBodyBytes)
      .then(
        (body) => {
          const frames = route.frames;
          if (body === undefined) return json(res, 400, frames.errorBody(400, 'the request body is not a JSON object'));
          const texts = textsOf(route, body);
          let controls = readControls(req.headers, texts.at(-1) ?? '', defaults);
          if (failEvery > 0 && ++answered % failEvery === 0) controls = { ...controls, fault: 'status', status: 500 };
          const stream = new MockStream({ id: nextId++, format: route.format, controls, path, body }, res);
          track(stream, res);
          const answer: MockAnswer = {
            id: `mock-${stream.id}`,
            created: 1_700_000_000 + stream.id,
            model: typeof body['model'] === 'string' ? body['model'] : 'graygate-mock',
            promptTokens: countPromptTokens(texts),
            nl: controls.newline,
            quirks: controls.framing === 'quirks',
            includeUsage: (body['stream_options'] as { include_usage?: unknown } | undefined)?.include_usage === true,
          };
          return answerRequest(res, stream, route, body, answer);
        },
        () => json(res, 400, { error: { message: 'could not read the request body', type: 'invalid_request_error' } }),
      )
      .catch((err: unknown) => res.destroy(err as Error));
  });

  server.listen(options.port ?? 0, options.host ?? '127.0.0.1');
  await once(server, 'listening');
  const { port, address } = server.address() as AddressInfo;
  const host = address.includes(':') ? `[${address}]` : address;
  const url = `http://${host}:${port}`;
  let closing: Promise<void> | undefined;
  return {
    url,
    baseUrl: url + BASE_PATHS[options.format ?? 'openai'],
    port,
    events,
    stats,
    open,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}

/** What each path answers: its format (whose error bodies and tool shapes it uses) and dialect. */
interface Route {
  format: MockFormat;
  kind: 'chat' | 'completions' | 'responses' | 'embeddings';
  frames: FormatFrames;
}

const ROUTES: Record<string, Route> = {
  [CHAT_PATHS.openai]: { format: 'openai', kind: 'chat', frames: FRAMES.openai },
  [CHAT_PATHS.ollama]: { format: 'ollama', kind: 'chat', frames: FRAMES.ollama },
  [CHAT_PATHS.anthropic]: { format: 'anthropic', kind: 'chat', frames: FRAMES.anthropic },
  '/v1/completions': { format: 'openai', kind: 'completions', frames: completions },
  '/v1/responses': { format: 'openai', kind: 'responses', frames: responses },
  '/v1/embeddings': { format: 'openai', kind: 'embeddings', frames: FRAMES.openai },
  '/api/embed': { format: 'ollama', kind: 'embeddings', frames: FRAMES.ollama },
};

function textsOf(route: Route, body: Record<string, unknown>): string[] {
  switch (route.kind) {
    case 'chat':
      return messageTexts(body, route.format);
    case 'embeddings':
      return embeddingInputs(body['input']);
    default:
      return promptTexts(body, route.kind);
  }
}

async function answerRequest(
  res: ServerResponse,
  stream: MockStream,
  route: Route,
  body: Record<string, unknown>,
  a: MockAnswer,
): Promise<void> {
  const { frames, format } = route;
  const isStream = frames.isStream(body);
  if (route.kind === 'embeddings')
    return answerJson(res, stream, frames, a, () =>
      format === 'ollama' ? ollamaEmbed(body, a.model) : openaiEmbeddings(body, a.model),
    );
  if (route.kind === 'completions')
    return answerText(res, stream, frames, a, { maxTokens: frames.maxTokens(body), isStream });
  const dialect = route.kind;
  const tools = requestTools(body, format, dialect);
  const forced = forcedTool(body, format, tools, dialect);
  const names = stream.controls.tools.length > 0 ? stream.controls.tools : forced === undefined ? [] : [forced];
  if (names.length > 0) {
    const calls: MockCall[] = [];
    for (const [i, name] of names.entries()) {
      const spec = tools.find((t) => t.name === name);
      // A real model never calls a tool it was not offered: a request that lost its tools on the way is a test failure.
      if (spec === undefined)
        return json(
          res,
          400,
          frames.errorBody(
            400,
            `tool "${name}" is not among the request's tools (${tools.map((t) => t.name).join(', ') || 'none'})`,
          ),
        );
      calls.push({
        id: mockCallId(format, stream.id, i),
        name,
        args: stream.controls.args ?? JSON.stringify(toolArguments(spec.schema, stream.controls.tokens)),
      });
    }
    const toolFrames = dialect === 'responses' ? responsesTools : TOOL_FRAMES[format];
    return answerTools(res, stream, { text: frames, tools: toolFrames }, a, calls, isStream);
  }
  const mode = jsonMode(body, format, dialect);
  if (mode === undefined) return answerText(res, stream, frames, a, { maxTokens: frames.maxTokens(body), isStream });
  const value = mode.kind === 'object' ? { answer: mockText(stream.controls.tokens) } : sampleFromSchema(mode.schema);
  return answerText(res, stream, frames, a, { maxTokens: undefined, isStream, pieces: pieces(JSON.stringify(value)) });
}

/**
 * A call's arguments made from its schema; a schema that allows
 * any object (a JSON-answer tool) gets the JSON-mode answer.
 */
function toolArguments(schema: unknown, tokens: number): unknown {
  const hasProperties =
    typeof schema === 'object' && schema !== null && (schema as { properties?: unknown }).properties !== undefined;
  if (!hasProperties) return { answer: mockText(tokens) };
  const sample = sampleFromSchema(schema);
  return typeof sample === 'object' && sample !== null ? sample : {};
}

async function readJson(req: IncomingMessage, maxBytes: number): Promise<Record<string, unknown> | undefined> {
  const parts: Buffer[] = [];
  let bytes = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    bytes += chunk.length;
    if (bytes > maxBytes) throw new Error('request body too large');
    parts.push(chunk);
  }
  try {
    const value = JSON.parse(Buffer.concat(parts).toString('utf8')) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value)
      ? (value as Record<string, unknown>)
      : undefined;
  } catch {
    return undefined;
  }
}
