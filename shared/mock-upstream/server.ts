import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { EventEmitter, once } from 'node:events';
import { BASE_PATHS, CHAT_PATHS, FRAMES, type FormatFrames, type MockAnswer, type MockFormat } from './formats.js';
import { DEFAULT_CONTROLS, readControls, type MockControls } from './controls.js';
import { countPromptTokens, mockToken } from './text.js';

// The mock upstream (SPEC §8): one HTTP server answering the OpenAI, Ollama
// and Anthropic chat endpoints with deterministic text, at a chosen pace, with
// faults on demand. Tests observe each stream through a MockStream handle
// (bytes written, backpressure, when its connection closed).

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

/** One answer in progress. Emits 'blocked' when a write hit backpressure, 'drain' after, 'close' when its connection closed. */
export class MockStream extends EventEmitter<{ blocked: []; drain: []; close: [] }> {
  readonly id: number;
  readonly format: MockFormat;
  readonly controls: MockControls;
  /** Body bytes handed to the socket so far. */
  bytesWritten = 0;
  /** True while a write returned false and 'drain' has not come. */
  isBlocked = false;
  /** The answer was fully written before the connection closed. */
  isComplete = false;
  isClosed = false;
  readonly #res: ServerResponse;
  readonly #socket: Socket;

  constructor(id: number, format: MockFormat, controls: MockControls, res: ServerResponse) {
    super();
    this.id = id;
    this.format = format;
    this.controls = controls;
    this.#res = res;
    this.#socket = res.socket!;
  }

  /** Writes body text; resolves once the socket can take more (or at once). */
  async write(text: string): Promise<void> {
    if (text !== '') await this.#writeBytes(Buffer.from(text, 'utf8'));
  }

  /**
   * Writes body text `pieceBytes` at a time, one write per turn of the event
   * loop, so the client reads it in many network chunks and multi-byte UTF-8
   * characters arrive split (the `framing=quirks` control).
   */
  async writeInPieces(text: string, pieceBytes: number): Promise<void> {
    const buf = Buffer.from(text, 'utf8');
    for (let i = 0; i < buf.length && !this.isClosed; i += pieceBytes) {
      await this.#writeBytes(buf.subarray(i, i + pieceBytes));
      await new Promise((resolve) => setImmediate(resolve));
    }
  }

  async #writeBytes(buf: Buffer): Promise<void> {
    if (this.isClosed) return;
    this.bytesWritten += buf.length;
    if (this.#res.write(buf)) return;
    this.isBlocked = true;
    this.emit('blocked');
    await Promise.race([once(this.#res, 'drain'), once(this.#res, 'close')]);
    this.isBlocked = false;
    if (!this.isClosed) this.emit('drain');
  }

  /** Sends a TCP RST at once (the `reset` fault, also callable by tests at a moment they choose). */
  reset(): void {
    if (!this.isClosed) this.#socket.resetAndDestroy();
  }

  /** Ends the connection with a FIN without finishing the body (the `close` fault). */
  cut(): void {
    if (!this.isClosed) this.#socket.destroy();
  }
}

export async function startMockUpstream(options: MockUpstreamOptions = {}): Promise<MockUpstream> {
  const defaults: MockControls = { ...DEFAULT_CONTROLS, ...options.defaults };
  const maxBodyBytes = options.maxBodyBytes ?? 10 * 1024 * 1024;
  const events = new EventEmitter<{ stream: [MockStream] }>();
  const stats: MockUpstreamStats = { opened: 0, closed: 0, aborted: 0 };
  const open = new Set<MockStream>();
  let nextId = 1;

  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?', 1)[0]!;
    const format = (Object.keys(CHAT_PATHS) as MockFormat[]).find((f) => CHAT_PATHS[f] === path);
    if (req.method === 'GET' && (path === '/v1/models' || path === '/api/tags')) {
      return json(res, 200, path === '/v1/models' ? { object: 'list', data: [{ id: 'graygate-mock', object: 'model', created: 0, owned_by: 'mock' }] } : { models: [{ name: 'graygate-mock' }] });
    }
    if (format === undefined || req.method !== 'POST') return json(res, 404, { error: { message: `no route for ${req.method} ${path}`, type: 'invalid_request_error' } });
    readJson(req, maxBodyBytes).then(
      (body) => {
        const frames = FRAMES[format];
        if (body === undefined) return json(res, 400, frames.errorBody(400, 'the request body is not a JSON object'));
        const texts = messageTexts(body, format);
        const controls = readControls(req.headers, texts.at(-1) ?? '', defaults);
        const stream = new MockStream(nextId++, format, controls, res);
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
        const answer: MockAnswer = {
          id: `mock-${stream.id}`,
          created: 1_700_000_000 + stream.id,
          model: typeof body['model'] === 'string' ? body['model'] : 'graygate-mock',
          promptTokens: countPromptTokens(texts),
          nl: controls.newline,
          quirks: controls.framing === 'quirks',
          includeUsage: (body['stream_options'] as { include_usage?: unknown } | undefined)?.include_usage === true,
        };
        return answerChat(res, stream, frames, answer, frames.maxTokens(body), frames.isStream(body));
      },
      () => json(res, 400, { error: { message: 'could not read the request body', type: 'invalid_request_error' } }),
    ).catch((err: unknown) => res.destroy(err as Error));
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

const QUIRKS_PIECE_BYTES = 3;

async function answerChat(res: ServerResponse, stream: MockStream, frames: FormatFrames, a: MockAnswer, maxTokens: number | undefined, isStream: boolean): Promise<void> {
  const c = stream.controls;
  if (c.fault === 'status') return json(res, c.status, frames.errorBody(c.status, `mock upstream error ${c.status}`));
  const tokens = maxTokens !== undefined && maxTokens < c.tokens ? maxTokens : c.tokens;
  const finish = tokens < c.tokens ? 'length' : c.finish;
  if (!isStream) {
    await pause(stream, c.firstByteMs + c.intervalMs * tokens);
    if (await fault(stream, frames, a, Math.min(c.after, c.tokens), false)) return;
    const parts: string[] = [];
    for (let i = 0; i < tokens; i++) parts.push(mockToken(i, c.tokenSize));
    return json(res, 200, frames.completion(a, parts.join(''), tokens, finish));
  }
  res.writeHead(200, { 'content-type': frames.streamContentType, 'cache-control': 'no-cache' });
  res.flushHeaders();
  // 3-byte pieces split every multi-byte character of the vocabulary somewhere.
  const write = (text: string): Promise<void> => (c.framing === 'quirks' ? stream.writeInPieces(text, QUIRKS_PIECE_BYTES) : stream.write(text));
  await pause(stream, c.firstByteMs);
  await write(frames.start(a));
  for (let i = 0; i < tokens; i++) {
    if (await fault(stream, frames, a, i, true)) return;
    await pause(stream, c.intervalMs);
    await write(frames.token(a, mockToken(i, c.tokenSize)));
    if (stream.isClosed) return;
  }
  if (await fault(stream, frames, a, tokens, true)) return;
  await write(frames.end(a, tokens, finish));
  res.end();
}

/** Applies the stream's fault when `sent` tokens went out. True: the answer is over (or stalls forever). */
async function fault(stream: MockStream, frames: FormatFrames, a: MockAnswer, sent: number, isStream: boolean): Promise<boolean> {
  const c = stream.controls;
  if (c.fault === 'none' || sent !== Math.min(c.after, c.tokens) || stream.isClosed) return stream.isClosed;
  switch (c.fault) {
    case 'stall':
      return true; // the connection stays open until the client gives up
    case 'reset':
      stream.reset();
      return true;
    case 'close':
      stream.cut();
      return true;
    case 'malformed':
      if (!isStream) return false;
      await stream.write(frames.malformed(a));
      return false;
    case 'long-line':
      if (!isStream) return false;
      await stream.write(frames.longLine(a, c.lineBytes));
      return false;
    default:
      return false;
  }
}

function pause(stream: MockStream, ms: number): Promise<void> {
  if (ms <= 0 || stream.isClosed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      stream.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stream.once('close', done);
  });
}

function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
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
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? (value as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** Every message text of the request, system prompt first (Anthropic keeps it outside `messages`). */
function messageTexts(body: Record<string, unknown>, format: MockFormat): string[] {
  const texts: string[] = [];
  if (format === 'anthropic' && typeof body['system'] === 'string') texts.push(body['system']);
  const messages = Array.isArray(body['messages']) ? (body['messages'] as Array<{ content?: unknown }>) : [];
  for (const m of messages) {
    if (typeof m.content === 'string') texts.push(m.content);
    else if (Array.isArray(m.content)) {
      texts.push((m.content as Array<{ text?: unknown }>).map((p) => (typeof p.text === 'string' ? p.text : '')).join(''));
    }
  }
  return texts;
}
