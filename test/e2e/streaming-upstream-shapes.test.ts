import t, { type Test } from 'tap';
import { isUtf8 } from 'node:buffer';
import { EventEmitter, once } from 'node:events';
import { createServer, request, type IncomingMessage, type ServerResponse } from 'node:http';
import { createServer as createNetServer, type Socket } from 'node:net';
import type { AddressInfo } from 'node:net';
import { startGateway } from '../helpers/gateway.js';
import { drainOrClose } from '../../shared/mock-upstream/mock-stream.js';
import { untilOutput } from '../helpers/output.js';
import { httpRequest, json, type SimpleResponse } from '../helpers/http.js';
import { postStream, type StreamClient } from '../worker/fixtures/sse-client.js';

// An upstream that breaks the rules in ways the mock upstream does not: it keeps its body open after the final event,
// sends events after it, valid JSON of shapes no converter expects, an answer too large to hold, an event longer than
// maxEventBytes in a chunk the fast path could take, and malformed HTTP. Each scenario is named in the user's message.
// Every wait is on an event; the only timer involved is the worker's own bound on a body kept open after its end.

interface ErrorBody {
  error: { message: string; type: string; code: string };
}

const role = (): string =>
  sse({
    id: 'c1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta: { role: 'assistant', content: '' }, finish_reason: null }],
  });
const token = (content: string): string =>
  sse({
    id: 'c1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
  });
const finish = (): string =>
  sse({
    id: 'c1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta: {}, finish_reason: 'stop' }],
  });
function sse(value: unknown): string {
  return `data: ${JSON.stringify(value)}\n\n`;
}
function anthropicEvent(type: string, value: Record<string, unknown>): string {
  return `event: ${type}\ndata: ${JSON.stringify({ type, ...value })}\n\n`;
}
/** OpenAI's rate-limit headers, and one that is not one (not passed on). */
const RATE_LIMITS = {
  'x-ratelimit-limit-requests': '500',
  'x-ratelimit-remaining-tokens': '149984',
  'x-ratelimit-reset-requests': '120ms',
  'openai-organization': 'org-secret',
  'x-ratelimit-oversized': 'x'.repeat(300),
};
const JSON_COMPLETION = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [
    {
      index: 0,
      message: {
        role: 'assistant',
        content: null,
        function_call: { name: 'get_weather', arguments: '{"city":"Paris"}' },
        audio: { id: 'audio_1', data: 'UklGRg==', expires_at: 9, transcript: 'hi' },
      },
      finish_reason: 'function_call',
    },
  ],
  usage: { prompt_tokens: 5, completion_tokens: 7, total_tokens: 12 },
});
const ANTHROPIC_START =
  anthropicEvent('message_start', {
    message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [], usage: { input_tokens: 3 } },
  }) + anthropicEvent('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });

/** Writes `text` in one write, then leaves the response open; the request's close is reported. */
function keepOpen(res: ServerResponse, text: string, held: Set<ServerResponse>): void {
  held.add(res);
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write(text);
}

async function writeMany(
  res: ServerResponse,
  first: string,
  event: string,
  count: number,
  last: string,
): Promise<void> {
  res.writeHead(200, { 'content-type': 'text/event-stream' });
  res.write(first);
  for (let i = 0; i < count && !res.destroyed; i++) {
    if (!res.write(event)) await drainOrClose(res);
  }
  res.end(last);
}

/** A raw TCP upstream on 127.0.0.1 that hands each connection to `onSocket`; its `/v1` URL. Stopped at teardown. */
async function rawUpstream(t: Test, onSocket: (socket: Socket) => void): Promise<string> {
  const sockets = new Set<Socket>();
  const server = createNetServer((socket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
    socket.on('error', () => undefined);
    onSocket(socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.teardown(() => {
    for (const socket of sockets) socket.destroy();
    server.close();
  });
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
}

t.test('upstream shapes', async (t) => {
  const held = new Set<ServerResponse>();
  /** Each request's `stream` field, as the upstream got it. */
  const asked: unknown[] = [];
  let pendingCut: ServerResponse | undefined;
  /** Resolves when the gateway closed the request of a response left open. */
  const closedAfterEnd: Array<() => void> = [];
  const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
        messages?: Array<{ content: string }>;
        input?: string;
        stream?: unknown;
      };
      asked.push(body.stream);
      const said = body.messages?.at(-1)?.content ?? body.input ?? '';
      const scenario = /\[shape ([a-z-]+)\]/.exec(said)?.[1];
      res.on('close', () => {
        if (held.delete(res)) closedAfterEnd.shift()?.();
      });
      switch (scenario) {
        case 'done-open':
          return keepOpen(res, role() + token('a') + token('b') + finish() + 'data: [DONE]\n\n', held);
        case 'after-done':
          res.writeHead(200, { 'content-type': 'text/event-stream', ...RATE_LIMITS });
          return res.end(role() + token('a') + finish() + 'data: [DONE]\n\n' + token('LATE') + 'data: [DONE]\n\n');
        case 'anthropic-stop-open':
          return keepOpen(
            res,
            ANTHROPIC_START +
              anthropicEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'ab' } }) +
              anthropicEvent('content_block_stop', { index: 0 }) +
              anthropicEvent('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 2 } }) +
              anthropicEvent('message_stop', {}),
            held,
          );
        case 'anthropic-orphan-input':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return res.end(
            ANTHROPIC_START +
              anthropicEvent('content_block_delta', {
                index: 3,
                delta: { type: 'input_json_delta', partial_json: '{"city":' },
              }) +
              anthropicEvent('message_stop', {}),
          );
        case 'null-choice':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return res.end(`${sse({ id: 'c1', choices: [null] })}data: [DONE]\n\n`);
        case 'null-delta':
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return res.end(
            sse({ id: 'c1', created: 1, model: 'm', choices: [{ index: 0, delta: null }] }) +
              token('a') +
              finish() +
              'data: [DONE]\n\n',
          );
        case 'long-event':
          // Whole plain events, one longer than the version's maxEventBytes (1024), in one write; no [DONE], which
          // would send the chunk to the decoding path: the body stays open, as a slow model's would.
          return keepOpen(res, role() + token('a') + token('x'.repeat(4000)), held);
        case 'done-then-long':
          // The final event, then (in the same write) a line longer than maxEventBytes: after the answer's end.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return res.end(role() + token('a') + finish() + 'data: [DONE]\n\n' + `data: ${'z'.repeat(3000)}`);
        case 'anthropic-server-tool':
          // A server tool's block (web search) streams its own input: not a tool call of the client's.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return res.end(
            ANTHROPIC_START +
              anthropicEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: 'ab' } }) +
              anthropicEvent('content_block_stop', { index: 0 }) +
              anthropicEvent('content_block_start', {
                index: 1,
                content_block: { type: 'server_tool_use', id: 'srvtoolu_1', name: 'web_search', input: {} },
              }) +
              anthropicEvent('content_block_delta', {
                index: 1,
                delta: { type: 'input_json_delta', partial_json: '{"query":"x"}' },
              }) +
              anthropicEvent('content_block_stop', { index: 1 }) +
              anthropicEvent('content_block_start', { index: 2, content_block: { type: 'text', text: 'c' } }) +
              anthropicEvent('content_block_stop', { index: 2 }) +
              anthropicEvent('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 3 } }) +
              anthropicEvent('message_stop', {}),
          );
        case 'deep-json':
          // A whole answer nested 500 000 deep (1 MB): JSON.parse took ~0.4 s a MiB on the loop (32 MB: 6.8 s).
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end(`{"choices":${'['.repeat(500_000)}${']'.repeat(500_000)}}`);
        case 'deep-event':
          // An event nested 100 000 deep (200 KB, within maxEventBytes) after the first, then a token.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return res.end(
            role() +
              `data: {"choices":[{"index":0,"delta":{"content":"b"}}],"x":${'['.repeat(100_000)}${']'.repeat(100_000)}}\n\n` +
              token('a'),
          );
        case 'anthropic-deep-input':
          // A tool_use block whose input nests 6 000 deep in a 12 KB event (below the depth scan's 16 KiB): the
          // converter's JSON.stringify overflows the stack.
          res.writeHead(200, { 'content-type': 'text/event-stream' });
          return res.end(
            ANTHROPIC_START +
              `event: content_block_start\ndata: {"type":"content_block_start","index":0,"content_block":` +
              `{"type":"tool_use","id":"t","name":"f","input":{"a":${'['.repeat(6000)}${']'.repeat(6000)}}}}\n\n` +
              anthropicEvent('message_stop', {}),
          );
        case 'json-invalid-bytes':
          // A whole answer with bytes that are not UTF-8 in its content (0xFF, then a lone surrogate's WTF-8).
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end(
            Buffer.concat([
              Buffer.from(
                '{"id":"c","object":"chat.completion","created":1,"model":"m",' +
                  '"choices":[{"index":0,"message":{"role":"assistant","content":"x',
              ),
              Buffer.from([0xff, 0xed, 0xa0, 0x80]),
              Buffer.from('y"},"finish_reason":"stop"}]}'),
            ]),
          );
        case 'html-page':
          res.writeHead(200, { 'content-type': 'text/html' });
          return res.end('<html><body>Welcome to the ingress</body></html>');
        case 'json-error':
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end(JSON.stringify({ error: { message: 'the model is overloaded', type: 'server_error' } }));
        case 'json-error-false':
          // A server that always sends the member: `"error": false` on a good answer (a 502 before).
          res.writeHead(200, { 'content-type': 'application/json' });
          return res.end(
            JSON.stringify({
              error: false,
              id: 'c',
              object: 'chat.completion',
              created: 1,
              model: 'm',
              choices: [{ index: 0, message: { role: 'assistant', content: 'fine' }, finish_reason: 'stop' }],
            }),
          );
        case 'json-answer':
          res.writeHead(200, { 'content-type': 'application/json; charset=utf-8' });
          return res.end(JSON.stringify({ id: 'c1', object: 'chat.completion' }));
        case 'huge':
          // 66 MiB of 512 KiB text deltas: more than a non-streamed answer may hold.
          return void writeMany(
            res,
            ANTHROPIC_START,
            anthropicEvent('content_block_delta', {
              index: 0,
              delta: { type: 'text_delta', text: 'y'.repeat(1 << 19) },
            }),
            132,
            anthropicEvent('message_stop', {}),
          );
        case 'quota':
          res.writeHead(429, {
            ...RATE_LIMITS,
            'content-type': 'application/json',
            'x-should-retry': 'false',
            'retry-after-ms': '1500',
          });
          return res.end(
            JSON.stringify({ error: { message: 'You exceeded your current quota', type: 'insufficient_quota' } }),
          );
        case 'late-json':
          // A whole answer takes longer than the version's firstByteMs (300 ms) to be ready, as a long one does.
          return void setTimeout(() => {
            res.writeHead(200, { 'content-type': 'application/json' });
            res.end(JSON_COMPLETION);
          }, 900);
        case 'thinking':
        case 'thinking-json':
          // A reasoning model behind an upstream that sends its head at once, then thinks (2.5 s here) before its
          // first body byte: longer than idleMs (300 ms) and undici's own body timer on the old code (idleMs + 1 s).
          res.writeHead(200, { 'content-type': scenario === 'thinking' ? 'text/event-stream' : 'application/json' });
          res.flushHeaders();
          return void setTimeout(() => {
            res.end(scenario === 'thinking' ? role() + token('ok') + finish() + 'data: [DONE]\n\n' : JSON_COMPLETION);
          }, 2500);
        case 'slow-head':
          // Its head takes 2.5 s (a cold model, a provider's queue): longer than the master's workerHeadersTimeoutMs.
          return void setTimeout(() => {
            const isStream = body.stream === true;
            res.writeHead(200, { 'content-type': isStream ? 'text/event-stream' : 'application/json' });
            res.end(isStream ? role() + token('ok') + finish() + 'data: [DONE]\n\n' : JSON_COMPLETION);
          }, 2500);
        case 'cut-embedding':
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': '100000' });
          res.write('{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1,');
          // Cut once the client has the first bytes (cutEmbedding), so the status is surely out.
          pendingCut = res;
          return;
        case 'cut-json':
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(JSON_COMPLETION.length) });
          res.write(JSON_COMPLETION.slice(0, 40));
          return void res.once('finish', () => undefined).socket?.destroy();
        case 'json-completion':
          // A non-streamed answer with what only the upstream can fill in: relayed as it came.
          res.writeHead(200, { 'content-type': 'application/json', ...RATE_LIMITS });
          return res.end(JSON_COMPLETION);
        default:
          res.writeHead(500).end();
      }
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  t.teardown(() => {
    for (const res of held) res.destroy();
    upstream.closeAllConnections();
    upstream.close();
  });
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

  // An upstream that answers every request with a status line llhttp refuses.
  const badUrl = await rawUpstream(t, (socket) =>
    socket.once('data', () => socket.end('HTTP/1.1 2x0 OK\r\ncontent-type: text/event-stream\r\n\r\n')),
  );

  // idleMs 20 s: the old code's wait for the body's end is bounded, and far beyond the worker's own bound (1 s).
  const timeouts = { idleMs: 20_000 };
  // Log level info: the master's request lines are what the cut-relay test reads.
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: { weight: 1, upstream: { format: 'openai', url, timeouts } },
        claude: { weight: 0, upstream: { format: 'anthropic', url, timeouts } },
        small: { weight: 0, upstream: { format: 'openai', url, timeouts, maxEventBytes: 1024 } },
        bad: { weight: 0, upstream: { format: 'openai', url: badUrl } },
        slow: { weight: 0, upstream: { format: 'openai', url, timeouts: { firstByteMs: 300 } } },
        thinker: { weight: 0, upstream: { format: 'openai', url, timeouts: { firstByteMs: 20_000, idleMs: 300 } } },
      },
    },
    { env: { LOG_LEVEL: 'info' } },
  );
  const chatUrl = (version: string): string => `${gw.url}/v1/chat/completions?version=${version}`;
  const body = (scenario: string, stream: boolean): Record<string, unknown> => ({
    model: 'm',
    stream,
    messages: [{ role: 'user', content: `hi [shape ${scenario}]` }],
  });
  const post = (version: string, scenario: string): ReturnType<typeof httpRequest> =>
    httpRequest(chatUrl(version), { method: 'POST', body: JSON.stringify(body(scenario, false)) });
  /** A streamed chat answer, read to its end. */
  const streamed = async (version: string, scenario: string): Promise<StreamClient> => {
    const s = await postStream(chatUrl(version), body(scenario, true));
    await s.done;
    return s;
  };
  /** A 502 error answer with this code. */
  const isError = (t: Test, res: SimpleResponse, code: string, what = ''): void => {
    t.equal(res.status, 502, what);
    t.equal(json<ErrorBody>(res).error.code, code, what);
  };
  const lastError = (data: string[]): ErrorBody['error'] => (JSON.parse(data.at(-1)!) as ErrorBody).error;
  const text = (res: SimpleResponse): unknown =>
    json<{ choices: Array<{ message: { content: unknown } }> }>(res).choices[0]!.message.content;

  t.test('[DONE] with the body kept open: the answer ends at [DONE], the upstream request is closed', async (t) => {
    const closed = new Promise<void>((resolve) => closedAfterEnd.push(resolve));
    const s = await streamed('v1', 'done-open');
    t.equal(s.text(), 'ab');
    t.equal(s.data.at(-1), '[DONE]', 'the stream ends with [DONE], not an upstream_timeout');
    await closed; // the worker let go of the upstream request it no longer reads
  });

  t.test('Anthropic message_stop with the body kept open: the answer ends there', async (t) => {
    const closed = new Promise<void>((resolve) => closedAfterEnd.push(resolve));
    const s = await streamed('claude', 'anthropic-stop-open');
    t.equal(s.text(), 'ab');
    t.equal(s.data.at(-1), '[DONE]');
    await closed;
    const closedToo = new Promise<void>((resolve) => closedAfterEnd.push(resolve));
    const res = await post('claude', 'anthropic-stop-open');
    t.equal(res.status, 200, 'a non-streamed answer is complete at message_stop');
    t.equal(text(res), 'ab');
    await closedToo;
  });

  t.test('events after [DONE] do not reach the client', async (t) => {
    const s = await streamed('v1', 'after-done');
    t.equal(s.text(), 'a');
    t.notOk(
      s.data.some((d) => d.includes('LATE')),
      'nothing after the final event',
    );
    t.equal(s.data.filter((d) => d === '[DONE]').length, 1);
    t.equal(s.headers['x-ratelimit-remaining-tokens'], '149984', "a stream's head has the rate-limit headers");
  });

  t.test('a choice that is not an object: upstream_protocol_error, not a reset', async (t) => {
    // The bad event is the first, so nothing was sent and the status is still the error's.
    const res = await httpRequest(chatUrl('v1'), {
      method: 'POST',
      body: JSON.stringify(body('null-choice', true)),
    });
    isError(t, res, 'upstream_protocol_error');
  });

  t.test('a null delta is an empty one: the answer goes on', async (t) => {
    const s = await streamed('v1', 'null-delta');
    t.equal(s.text(), 'a');
    t.equal(s.data.at(-1), '[DONE]');
  });

  t.test(
    'Anthropic input for a block never started: upstream_protocol_error, not arguments cut silently',
    async (t) => {
      const res = await post('claude', 'anthropic-orphan-input');
      isError(t, res, 'upstream_protocol_error');
    },
  );

  t.test('what follows the final event in the same read cannot fail the answer', async (t) => {
    const s = await streamed('small', 'done-then-long');
    t.equal(s.text(), 'a');
    t.equal(s.data.at(-1), '[DONE]');
  });

  t.test("an Anthropic server tool's input is not the client's: the answer goes on", async (t) => {
    const res = await post('claude', 'anthropic-server-tool');
    t.equal(res.status, 200);
    t.equal(text(res), 'abc');
    t.notOk(json<{ choices: Array<{ message: { tool_calls?: unknown } }> }>(res).choices[0]!.message.tool_calls);
  });

  t.test('an event longer than maxEventBytes is refused on the fast path too', async (t) => {
    const s = await streamed('small', 'long-event');
    t.notOk(
      s.data.some((d) => d.includes('xxxx')),
      'the long event did not reach the client',
    );
    t.equal(lastError(s.data).code, 'upstream_protocol_error');
    t.match(lastError(s.data).message, /maxEventBytes/);
  });

  t.test(
    "upstream JSON nested deeper than 128 levels is a protocol error, not a stall of the worker's loop",
    async (t) => {
      const whole = await post('v1', 'deep-json');
      isError(t, whole, 'upstream_protocol_error', 'a whole answer');
      t.match(json<ErrorBody>(whole).error.message, /nested more than 128 levels deep/);
      const s = await streamed('v1', 'deep-event');
      t.notOk(
        s.data.some((d) => d.includes('[[[')),
        'the deep event did not reach the client',
      );
      t.equal(lastError(s.data).code, 'upstream_protocol_error', 'an event');
      t.match(lastError(s.data).message, /nested more than 128 levels deep/);
      const converted = await post('claude', 'anthropic-deep-input');
      isError(t, converted, 'upstream_protocol_error', 'a shorter event nested deeper than a converter can walk');
      t.match(json<ErrorBody>(converted).error.message, /nested too deep to convert/);
    },
  );

  t.test('a non-streamed answer of more than 64 MiB: answer_too_large, the worker lives on', async (t) => {
    const res = await post('claude', 'huge');
    isError(t, res, 'answer_too_large');
    t.match(json<ErrorBody>(res).error.message, /stream: true/);
    t.equal(res.headers['x-should-retry'], 'false', "OpenAI's SDKs do not ask for it again");
    const after = await post('claude', 'anthropic-server-tool');
    t.equal(after.status, 200, 'the same worker answers the next request');
  });

  t.test('JSON where a stream was asked for: its error message kept, or a clear protocol error', async (t) => {
    const res = await httpRequest(chatUrl('v1'), { method: 'POST', body: JSON.stringify(body('json-error', true)) });
    isError(t, res, 'upstream_status');
    t.match(json<ErrorBody>(res).error.message, /the model is overloaded/, 'the upstream message is kept');
    const other = await httpRequest(chatUrl('v1'), {
      method: 'POST',
      body: JSON.stringify(body('json-answer', true)),
    });
    isError(t, other, 'upstream_protocol_error');
    t.match(json<ErrorBody>(other).error.message, /not an event stream/);
  });

  t.test("a non-streamed OpenAI answer is asked for as one and relayed as the upstream's JSON", async (t) => {
    asked.length = 0;
    const res = await post('v1', 'json-completion');
    t.equal(res.status, 200);
    t.same(asked, [false], 'the upstream was asked for one answer, not a stream');
    t.equal(res.body, JSON_COMPLETION, 'legacy function_call and audio (wav) as the upstream sent them');
    t.equal(res.headers['x-ratelimit-limit-requests'], '500', 'with the rate-limit headers');
    t.equal(res.headers['x-ratelimit-reset-requests'], '120ms');
    t.equal(res.headers['openai-organization'], undefined);
  });

  t.test("a whole OpenAI answer whose bytes are not UTF-8 goes out decoded, as a stream's would", async (t) => {
    // It went out as it came: strict decoders (Python's json.loads on bytes, serde_json) refused the answer.
    const res = await fetch(chatUrl('v1'), {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify(body('json-invalid-bytes', false)),
    });
    const bytes = Buffer.from(await res.arrayBuffer());
    t.equal(res.status, 200);
    t.ok(isUtf8(bytes), 'valid UTF-8');
    t.match(JSON.parse(bytes.toString('utf8')), { choices: [{ message: { content: /^x\ufffd+y$/ } }] });
  });

  t.test('a relayed answer (embeddings) that is an error object or no JSON object gets a real status', async (t) => {
    // Relayed byte for byte, both went out as 200s: the client and the canary took them for answers.
    const embed = (scenario: string): ReturnType<typeof httpRequest> =>
      httpRequest(`${gw.url}/v1/embeddings?version=v1`, {
        method: 'POST',
        body: JSON.stringify({ model: 'm', input: `[shape ${scenario}]` }),
      });
    const error = await embed('json-error');
    isError(t, error, 'upstream_status', 'a 200 error object');
    t.match(json<ErrorBody>(error).error.message, /the model is overloaded/);
    const page = await embed('html-page');
    isError(t, page, 'upstream_protocol_error', 'an HTML page');
    t.match(json<ErrorBody>(page).error.message, /not a JSON object: "<html>/);
    const answer = await embed('json-answer');
    t.equal(answer.status, 200, 'a JSON object is relayed as it came');
    t.equal(answer.body, JSON.stringify({ id: 'c1', object: 'chat.completion' }));
  });

  t.test('a whole OpenAI answer is checked before its status: errors, non-JSON and cuts get a real one', async (t) => {
    const error = await post('v1', 'json-error');
    isError(t, error, 'upstream_status', 'a 200 error body');
    t.match(json<ErrorBody>(error).error.message, /the model is overloaded/);
    const sse = await post('v1', 'null-delta');
    isError(t, sse, 'upstream_protocol_error', 'an event stream where JSON was asked for');
    t.match(json<ErrorBody>(sse).error.message, /a body that is not a JSON object: "data: /);
    const noError = await post('v1', 'json-error-false');
    t.equal(noError.status, 200, '"error": false is no error');
    t.match(json<{ choices: unknown }>(noError).choices, [{ message: { content: 'fine' } }]);
    const noChoices = await post('v1', 'json-answer');
    isError(t, noChoices, 'upstream_protocol_error', 'JSON without choices');
    const cut = await post('v1', 'cut-json');
    isError(t, cut, 'upstream_reset', 'cut half-way: a real status, not a 200 and a cut connection');
  });

  t.test('a whole answer may take longer than firstByteMs to be ready: its deadline is the total', async (t) => {
    const res = await post('slow', 'late-json');
    t.equal(res.status, 200);
    t.equal(res.body, JSON_COMPLETION);
  });

  t.test('silence before the first body byte has firstByteMs, not idleMs, when the head came at once', async (t) => {
    const [s, res] = await Promise.all([streamed('thinker', 'thinking'), post('thinker', 'thinking-json')]);
    t.equal(s.status, 200);
    t.equal(s.text(), 'ok', 'the stream is whole');
    t.equal(s.data.at(-1), '[DONE]');
    t.equal(res.status, 200, 'a whole answer too (its first byte may take up to totalMs)');
    t.equal(res.body, JSON_COMPLETION);
  });

  t.test("102s keep the master's wait for a head whatever the client's ping period (0: no : ping)", async (t) => {
    // They went at pingIntervalMs: with pings off (or longer than workerHeadersTimeoutMs), 504 worker_timeout.
    // A gateway of its own: the master's wait (1.5 s) under the slow head's 2.5 s, only the worker's 102s keep it.
    const quiet = await startGateway(t, {
      versions: { v1: { weight: 1, upstream: { format: 'openai', url, timeouts, pingIntervalMs: 0 } } },
      limits: { workerHeadersTimeoutMs: 1500 },
    });
    const chat = `${quiet.url}/v1/chat/completions`;
    const [s, res] = await Promise.all([
      postStream(chat, body('slow-head', true)).then(async (stream) => (await stream.done, stream)),
      httpRequest(chat, { method: 'POST', body: JSON.stringify(body('slow-head', false)) }),
    ]);
    t.equal(s.status, 200);
    t.equal(s.text(), 'ok', 'the stream is whole');
    t.equal(res.status, 200, 'and a whole answer');
    t.equal(res.body, JSON_COMPLETION);
  });

  t.test("the upstream's retry hints reach the client: x-should-retry, retry-after-ms as Retry-After", async (t) => {
    const res = await post('v1', 'quota');
    t.equal(res.status, 429);
    t.equal(res.headers['x-should-retry'], 'false');
    t.equal(res.headers['retry-after'], '2');
    t.equal(res.headers['x-ratelimit-remaining-tokens'], '149984', 'rate-limit headers pass on');
    t.equal(res.headers['openai-organization'], undefined, 'no other upstream header does');
    t.equal(res.headers['x-ratelimit-oversized'], undefined, 'nor a value over 256 bytes');
    t.match(json<ErrorBody>(res).error.message, /exceeded your current quota/);
  });

  t.test('a relayed whole answer cut after its status is logged failed (the canary counts it an error)', async (t) => {
    // The upstream cuts the answer once the client has its status and first bytes.
    const cut = await new Promise<string>((resolve) => {
      const req = request(
        `${gw.url}/v1/embeddings?version=v1`,
        { method: 'POST', headers: { 'x-request-id': 'cut-embedding-1' }, agent: false },
        (res) => {
          res.once('data', () => pendingCut?.socket?.destroy());
          res.on('data', () => undefined);
          res.once('end', () => resolve(`answered ${res.statusCode}`));
          res.once('error', () => resolve(`cut after ${res.statusCode}`));
          res.once('aborted', () => resolve(`cut after ${res.statusCode}`));
        },
      );
      req.once('error', (err) => resolve(err.message));
      req.end(JSON.stringify({ model: 'm', input: 'x [shape cut-embedding]' }));
    });
    t.equal(cut, 'cut after 200', 'the client sees the cut');
    const line = await untilOutput(gw, () =>
      gw
        .output()
        .split('\n')
        .find((l) => l.includes('"reqId":"cut-embedding-1"') && l.includes('"msg":"request"')),
    );
    t.match(line, /"status":200/);
    t.match(line, /"streamFailed":true/, 'failed, though its status was 200');
  });

  t.test('malformed upstream HTTP: upstream_protocol_error, not unreachable', async (t) => {
    const res = await post('bad', 'any');
    isError(t, res, 'upstream_protocol_error');
  });
});

t.test(
  'an upstream that closes idle connections (uvicorn, llama.cpp): a request never goes on a closing one',
  async (t) => {
    // As uvicorn (vLLM) does after 5 s, with no Keep-Alive hint: a connection idle past STALE_MS is the server's to
    // close, and a request that reaches it then is reset (it met the server's close). The worker's pool lets idle
    // connections go after upstream.timeouts.keepAliveMs, below that: the next request opens a new one. With undici
    // kept 30 s (the old code), it went on the stale one and its client got 502 upstream_reset (4 in 42 with a real
    // close).
    const STALE_MS = 3000;
    const events = new EventEmitter();
    const url = await rawUpstream(t, (socket) => {
      let isStale = false;
      let timer: NodeJS.Timeout | undefined;
      const answered = (): void => {
        timer = setTimeout(() => {
          isStale = true;
          events.emit('stale');
        }, STALE_MS);
      };
      socket.on('close', () => {
        clearTimeout(timer);
        // A connection that carried an answer: one the worker had open, then idle.
        if (timer !== undefined) events.emit('closed');
      });
      let head = '';
      socket.on('data', (chunk: Buffer) => {
        if (isStale) return void socket.resetAndDestroy();
        head += chunk.toString('latin1');
        const end = head.indexOf('\r\n\r\n');
        const length = Number(/content-length: *(\d+)/i.exec(head)?.[1] ?? 0);
        if (end === -1 || head.length < end + 4 + length) return;
        head = '';
        const answer = `${role()}${token('ok')}data: [DONE]\n\n`;
        socket.write(`HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ncontent-length: ${answer.length}\r\n\r\n`);
        socket.write(answer);
        answered();
      });
    });
    const gw = await startGateway(t, {
      versions: { v1: { weight: 1, upstream: { format: 'openai', url, timeouts: { keepAliveMs: 300 } } } },
    });
    const chat = { model: 'm', stream: true, messages: [{ role: 'user', content: 'hi' }] };
    // The first of: the worker let its idle connection go, or the server's idle limit passed with it still open.
    // Listened for before the request: the worker's 300 ms can pass before this process has read the answer's end
    // (a loaded box), and a 'closed' emitted before the listener was lost, leaving 'stale' 3 s later.
    const what = new Promise<string>((resolve) => {
      events.once('closed', () => resolve('closed'));
      events.once('stale', () => resolve('stale'));
    });
    const first = await postStream(`${gw.url}/v1/chat/completions`, chat);
    await first.done;
    t.equal(first.text(), 'ok');
    t.equal(await what, 'closed', 'the worker closed its idle connection before the server would have');
    const second = await postStream(`${gw.url}/v1/chat/completions`, chat);
    await second.done;
    t.equal(second.status, 200);
    t.equal(second.text(), 'ok', 'the next request went on a new connection');
  },
);
