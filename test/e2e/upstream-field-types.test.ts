import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';

// SPEC §5, §12: what an upstream sends that no converter can read fails loudly, never quietly dropped. An Ollama line
// whose `message.content` is an array of parts (OpenAI's shape, from a proxy in front of the model), whose `tool_calls`
// is one call rather than a list, or whose `message` is text, and an Anthropic `text_delta` whose text is not text,
// were left out: the client got an empty answer with finish_reason "stop", streamed or not (a hostile-upstream
// probe's finding). Null and absent fields stay no text, and no error.

interface ErrorBody {
  error: { message: string; code: string };
}

const ollamaLine = (message: unknown, done = false): string =>
  JSON.stringify({
    model: 'm',
    created_at: '2025-01-01T00:00:00Z',
    message,
    done,
    ...(done ? { done_reason: 'stop' } : {}),
  }) + '\n';
const anthropicEvent = (type: string, value: Record<string, unknown>): string =>
  `event: ${type}\ndata: ${JSON.stringify({ type, ...value })}\n\n`;

/** Each scenario's whole body: a line or event of the bad shape, between valid ones. */
const OLLAMA: Record<string, string> = {
  'content-parts': ollamaLine({ role: 'assistant', content: [{ type: 'text', text: 'hi' }] }),
  'tool-calls-object': ollamaLine({
    role: 'assistant',
    content: '',
    tool_calls: { function: { name: 'f', arguments: {} } },
  }),
  'message-text': ollamaLine('hi'),
  'content-null': ollamaLine({ role: 'assistant', content: null }) + ollamaLine({ role: 'assistant', content: 'a' }),
};
const ANTHROPIC_START =
  anthropicEvent('message_start', {
    message: { id: 'msg_1', type: 'message', role: 'assistant', model: 'm', content: [], usage: { input_tokens: 3 } },
  }) + anthropicEvent('content_block_start', { index: 0, content_block: { type: 'text', text: '' } });
const ANTHROPIC_END =
  anthropicEvent('content_block_stop', { index: 0 }) +
  anthropicEvent('message_delta', { delta: { stop_reason: 'end_turn' }, usage: { output_tokens: 1 } }) +
  anthropicEvent('message_stop', {});
const ANTHROPIC: Record<string, string> = {
  'text-object': anthropicEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: { a: 'hi' } } }),
  'text-null': anthropicEvent('content_block_delta', { index: 0, delta: { type: 'text_delta', text: null } }),
};

t.test(
  "an upstream's field of a type no converter reads is upstream_protocol_error, not an empty answer",
  async (t) => {
    const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
      const parts: Buffer[] = [];
      req.on('data', (part: Buffer) => parts.push(part));
      req.on('end', () => {
        const { model } = JSON.parse(Buffer.concat(parts).toString()) as { model: string };
        if (req.url === '/api/chat') {
          res.writeHead(200, { 'content-type': 'application/x-ndjson' });
          return res.end(OLLAMA[model]! + ollamaLine({ role: 'assistant', content: '' }, true));
        }
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        res.end(ANTHROPIC_START + ANTHROPIC[model]! + ANTHROPIC_END);
      });
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    t.teardown(() => {
      upstream.closeAllConnections();
      upstream.close();
    });
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const gw = await startGateway(t, {
      versions: {
        ollama: { weight: 1, upstream: { format: 'ollama', url } },
        anthropic: { weight: 0, upstream: { format: 'anthropic', url } },
      },
      routing: { default: 'ollama' },
    });
    const chat = (version: string, model: string, stream: boolean): Record<string, unknown> => ({
      model,
      stream,
      messages: [{ role: 'user', content: 'hi' }],
    });
    const cases: Array<[string, string, string | undefined]> = [
      ['ollama', 'content-parts', 'message.content as an array, not a string'],
      ['ollama', 'tool-calls-object', 'message.tool_calls as an object, not an array'],
      ['ollama', 'message-text', 'message as a string, not an object'],
      ['ollama', 'content-null', undefined],
      ['anthropic', 'text-object', "a text_delta's text as an object, not a string"],
      ['anthropic', 'text-null', undefined],
    ];
    /** The error a streamed answer ended with: its 502's before the first byte, else its last event's. */
    const streamedError = (status: number, body: string): { error: ErrorBody['error']; data: string[] } => {
      if (status !== 200) return { error: (JSON.parse(body) as ErrorBody).error, data: [] };
      const data = body
        .split('\n')
        .filter((line) => line.startsWith('data: '))
        .map((line) => line.slice(6));
      return { error: (JSON.parse(data.at(-1)!) as ErrorBody).error, data };
    };
    for (const [version, model, error] of cases) {
      const url = `${gw.url}/v1/chat/completions?version=${version}`;
      const whole = await httpRequest(url, { method: 'POST', body: JSON.stringify(chat(version, model, false)) });
      const streamed = await httpRequest(url, { method: 'POST', body: JSON.stringify(chat(version, model, true)) });
      if (error === undefined) {
        t.equal(whole.status, 200, `${version} ${model}: a null is no text`);
        t.match(streamed.body, /data: \[DONE\]\n\n$/, `${version} ${model} streamed: a null is no text`);
        continue;
      }
      const said = { code: 'upstream_protocol_error', message: `the upstream sent ${error}` };
      t.equal(whole.status, 502, `${version} ${model}`);
      t.match(json<ErrorBody>(whole).error, said, `${version} ${model}: named`);
      const { error: last, data } = streamedError(streamed.status, streamed.body);
      t.match(last, said, `${version} ${model} streamed`);
      t.notOk(data.includes('[DONE]'), `${version} ${model} streamed: no [DONE]`);
    }
  },
);
