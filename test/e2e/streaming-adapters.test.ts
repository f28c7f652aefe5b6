import t from 'tap';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import OpenAI from 'openai';
import { FORMATS, startFormatGateway } from '../helpers/format-gateway.js';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json } from '../helpers/http.js';
import { mockText, countPromptTokens } from '../../shared/mock-upstream/index.js';
import { postStream, chatBody } from '../worker/fixtures/sse-client.js';

// Issue 3: each adapter, streaming and not, gives exactly the expected text,
// finish_reason and usage through the real master and worker processes, with
// the official openai client as one of the clients.

t.test('adapters through the gateway', async (t) => {
  const { gw } = await startFormatGateway(t);

  for (const format of FORMATS) {
    const client = new OpenAI({
      baseURL: `${gw.url}/v1`,
      apiKey: 'not-used',
      maxRetries: 0,
      defaultHeaders: { 'x-version': format },
    });
    const messages = [
      { role: 'system' as const, content: 'Answer briefly.' },
      { role: 'user' as const, content: 'Say hello [mock tokens=23]' },
    ];
    const promptTokens = countPromptTokens(messages.map((m) => m.content));

    t.test(`${format}: openai client, streaming with usage`, async (t) => {
      const stream = await client.chat.completions.create({
        model: 'test-model',
        messages,
        stream: true,
        stream_options: { include_usage: true },
      });
      const parts: string[] = [];
      let finish: string | null = null;
      let usage: OpenAI.CompletionUsage | null | undefined;
      let roleChunks = 0;
      for await (const chunk of stream) {
        const choice = chunk.choices[0];
        if (choice?.delta.role === 'assistant') roleChunks++;
        if (choice?.delta.content) parts.push(choice.delta.content);
        if (choice?.finish_reason) finish = choice.finish_reason;
        if (chunk.usage) usage = chunk.usage;
      }
      t.equal(parts.join(''), mockText(23), 'exact text, multi-byte characters intact');
      t.equal(roleChunks, 1, 'one role chunk');
      t.equal(finish, 'stop');
      t.same(usage, { prompt_tokens: promptTokens, completion_tokens: 23, total_tokens: promptTokens + 23 });
    });

    t.test(`${format}: an upstream error event before any content, and after`, async (t) => {
      // Anthropic opens every stream with message_start: its role chunk used to go out at once and commit a
      // 200, so a streamed rate limit reached the SDK as an in-stream error it never retries. (Ollama's error
      // line has no kind, so its status is a 502; an OpenAI upstream's own role chunk is relayed as it comes.)
      for (const [status, expected] of [
        [429, 429],
        [529, 502],
      ] as const) {
        for (const stream of format === 'anthropic' ? [false, true] : []) {
          const err = await client.chat.completions
            .create({
              model: 'test-model',
              messages: [{ role: 'user', content: `[mock fault=error status=${status} after=0]` }],
              stream,
            })
            .then(async (answer) => {
              if (stream) for await (const chunk of answer as AsyncIterable<unknown>) void chunk;
              return undefined;
            })
            .catch((e: unknown) => e);
          t.type(err, OpenAI.APIError, `${status}, stream ${stream}: an error`);
          t.equal((err as InstanceType<typeof OpenAI.APIError>).status, expected, `${status}, stream ${stream}`);
        }
      }
      // After content went out the status is sent: the stream ends with the error event, no [DONE].
      const late = await postStream(
        `${gw.url}/v1/chat/completions?version=${format}`,
        chatBody('[mock tokens=5 fault=error status=429 after=2]'),
      );
      await late.done;
      t.equal(late.status, 200);
      t.equal(late.text(), mockText(2), 'the content before the error');
      t.match(late.data.at(-1), /^\{"error":/, 'then the error event, last');
      t.notOk(late.data.includes('[DONE]'));
    });

    t.test(`${format}: openai client, non-streaming, cut by max_tokens`, async (t) => {
      const completion = await client.chat.completions.create({ model: 'test-model', messages, max_tokens: 7 });
      t.equal(completion.object, 'chat.completion');
      t.equal(completion.choices[0]?.message.content, mockText(7));
      t.equal(completion.choices[0]?.message.role, 'assistant');
      t.equal(completion.choices[0]?.finish_reason, 'length');
      t.same(completion.usage, { prompt_tokens: promptTokens, completion_tokens: 7, total_tokens: promptTokens + 7 });
    });

    t.test(`${format}: raw SSE, no usage asked, CRLF upstream framing`, async (t) => {
      const s = await postStream(
        `${gw.url}/v1/chat/completions?version=${format}`,
        chatBody('[mock tokens=5 newline=crlf]'),
      );
      const { isComplete } = await s.done;
      t.ok(isComplete);
      t.equal(s.status, 200);
      t.match(s.headers['content-type'], /^text\/event-stream/);
      t.equal(s.headers['x-graygate-version'], format);
      t.equal(s.data.at(-1), '[DONE]', 'ends with [DONE]');
      t.equal(s.text(), mockText(5));
      const chunks = s.data
        .slice(0, -1)
        .map((d) => JSON.parse(d) as { object: string; choices: unknown[]; usage?: unknown });
      t.ok(
        chunks.every((c) => c.object === 'chat.completion.chunk' && c.choices.length === 1),
        'no usage chunk unless asked',
      );
    });
  }

  t.test('GET /v1/models', async (t) => {
    const res = await httpRequest(`${gw.url}/v1/models?version=ollama`);
    t.equal(res.status, 200);
    t.equal(json<{ data: Array<{ owned_by: string }> }>(res).data[0]?.owned_by, 'graygate/ollama');
  });

  t.test('bad requests get the OpenAI error shape', async (t) => {
    const cases: Array<[string, number, string]> = [
      ['{"model":', 400, 'invalid_request'],
      ['{"model":"m"}', 400, 'invalid_request'],
      ['{"model":"m","messages":[{"role":"user","content":1}]}', 400, 'invalid_request'],
    ];
    for (const [body, status, code] of cases) {
      const res = await httpRequest(`${gw.url}/v1/chat/completions`, {
        method: 'POST',
        body,
        headers: { 'content-type': 'application/json' },
      });
      t.equal(res.status, status, body);
      t.equal(json<{ error: { code: string; type: string } }>(res).error.code, code);
    }
    const get = await httpRequest(`${gw.url}/v1/chat/completions`);
    t.equal(get.status, 405);
  });
});

t.test('"url": "mock:" runs the embedded mock in the worker', async (t) => {
  const gw = await startGateway(t, {
    versions: { v1: { weight: 1, upstream: { format: 'anthropic', url: 'mock:' } } },
  });
  const client = new OpenAI({ baseURL: `${gw.url}/v1`, apiKey: 'not-used', maxRetries: 0 });
  const completion = await client.chat.completions.create({
    model: 'claude-mock',
    messages: [{ role: 'user', content: 'hi [mock tokens=4]' }],
  });
  t.equal(completion.choices[0]?.message.content, mockText(4));
});

t.test(
  'an upstream that sends only what the client never sees (thinking, pings) still keeps the client informed',
  async (t) => {
    // A reasoning model on Anthropic streams thinking deltas, and Anthropic `ping` events, for a long time before its
    // first text: upstream bytes that produce nothing for the client. The worker's `: ping` restarted on upstream
    // bytes, so it never came, and the master's timers cut the stream (504 before its status, once the role chunk
    // waits for the first content). It restarts on what the client was sent now.
    const events = [
      ['message_start', { type: 'message_start', message: { usage: { input_tokens: 3, output_tokens: 1 } } }],
      [
        'content_block_start',
        { type: 'content_block_start', index: 0, content_block: { type: 'thinking', thinking: '' } },
      ],
    ] as const;
    const upstream = createServer((req, res) => {
      req.resume();
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      const send = (type: string, data: unknown): boolean =>
        res.write(`event: ${type}\ndata: ${JSON.stringify(data)}\n\n`);
      for (const [type, data] of events) send(type, data);
      let n = 0;
      // 3 s of thinking, 10 events a second: more than the master's 2 s timeouts, with a ping every 250 ms of silence
      // (a worker stalled 1.75 s would be needed to miss them).
      const timer = setInterval(() => {
        if (++n < 30) {
          send('content_block_delta', {
            type: 'content_block_delta',
            index: 0,
            delta: { type: 'thinking_delta', thinking: 'hm' },
          });
          send('ping', { type: 'ping' });
          return;
        }
        clearInterval(timer);
        send('content_block_stop', { type: 'content_block_stop', index: 0 });
        send('content_block_start', {
          type: 'content_block_start',
          index: 1,
          content_block: { type: 'text', text: '' },
        });
        send('content_block_delta', {
          type: 'content_block_delta',
          index: 1,
          delta: { type: 'text_delta', text: 'Done.' },
        });
        send('content_block_stop', { type: 'content_block_stop', index: 1 });
        send('message_delta', {
          type: 'message_delta',
          delta: { stop_reason: 'end_turn' },
          usage: { output_tokens: 9 },
        });
        send('message_stop', { type: 'message_stop' });
        res.end();
      }, 100);
      res.on('close', () => clearInterval(timer));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t.teardown(() => upstream.close());
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
    const gw = await startGateway(t, {
      versions: { v1: { weight: 1, upstream: { format: 'anthropic', url, pingIntervalMs: 250 } } },
      limits: { workerHeadersTimeoutMs: 2000, workerIdleTimeoutMs: 2000 },
    });
    const s = await postStream(`${gw.url}/v1/chat/completions`, chatBody(''));
    const { isComplete } = await s.done;
    t.equal(s.status, 200);
    t.ok(isComplete, 'the stream ended normally');
    t.equal(s.text(), 'Done.');
    t.ok(s.comments.length >= 2, `the client got pings while the model thought (${s.comments.length})`);
    t.equal(s.data.at(-1), '[DONE]');
  },
);

t.test(
  "a stream whose upstream takes longer than workerHeadersTimeoutMs to answer: the worker's 102s keep it",
  async (t) => {
    // A model being loaded or a queue holds the upstream's head (Ollama, OpenAI under load) up to firstByteMs; the
    // master's workerHeadersTimeoutMs (30 s) was the stream's real first-byte limit, a whole answer's not.
    const upstream = createServer((req, res) => {
      req.resume();
      const timer = setTimeout(() => {
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        const chunk = { id: 'c', object: 'chat.completion.chunk', created: 1, model: 'm' };
        const events = [
          { ...chunk, choices: [{ index: 0, delta: { role: 'assistant', content: 'Loaded.' }, finish_reason: null }] },
          { ...chunk, choices: [{ index: 0, delta: {}, finish_reason: 'stop' }] },
        ];
        res.end(`${events.map((e) => `data: ${JSON.stringify(e)}\n\n`).join('')}data: [DONE]\n\n`);
      }, 2500);
      res.on('close', () => clearTimeout(timer));
    });
    await new Promise<void>((resolve) => upstream.listen(0, '127.0.0.1', resolve));
    t.teardown(() => upstream.close());
    const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}/v1`;
    const gw = await startGateway(t, {
      versions: { v1: { weight: 1, upstream: { format: 'openai', url, pingIntervalMs: 100 } } },
      limits: { workerHeadersTimeoutMs: 1000 },
    });
    const s = await postStream(`${gw.url}/v1/chat/completions`, chatBody(''));
    const { isComplete } = await s.done;
    t.equal(s.status, 200, 'not 504 worker_timeout');
    t.ok(isComplete);
    t.equal(s.text(), 'Loaded.');
  },
);
