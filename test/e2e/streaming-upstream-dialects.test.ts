import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { gzipSync } from 'node:zlib';
import { startGateway } from '../helpers/gateway.js';
import { httpRequest, json, type SimpleResponse } from '../helpers/http.js';
import { untilOutput } from '../helpers/output.js';
import { scrape } from '../helpers/metrics.js';
import { postStream, type StreamClient } from '../worker/fixtures/sse-client.js';

// Valid answers of real OpenAI-compatible servers that differ from OpenAI's own (a probe's findings, each named
// after a server that sends it): a stream that ends after its finish_reason without `[DONE]` (TGI, llama.cpp forks),
// llama.cpp's `error:` line, a byte-order mark first, `[DONE] ` with a space, Azure's prompt-filter chunk, and a
// server that compresses though nobody asked. Through the real master and worker, with the openai format.

interface ErrorBody {
  error: { message: string; code: string };
}

const chunk = (choice: Record<string, unknown>, extra: Record<string, unknown> = {}): string =>
  `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', created: 1, model: 'm', choices: [choice], ...extra })}\n\n`;
const token = (content: string, index = 0): string => chunk({ index, delta: { content }, finish_reason: null });
const finish = (index = 0): string => chunk({ index, delta: {}, finish_reason: 'stop' });
const USAGE = `data: ${JSON.stringify({ id: 'c1', object: 'chat.completion.chunk', choices: [], usage: { prompt_tokens: 2, completion_tokens: 1, total_tokens: 3 } })}\n\n`;
const text = (value: string, finishReason: string | null): string =>
  `data: ${JSON.stringify({ id: 'cmpl-1', object: 'text_completion', choices: [{ index: 0, text: value, finish_reason: finishReason }] })}\n\n`;
const LLAMA_CPP_ERROR =
  'error: {"code":400,"message":"the request exceeds the available context size, try increasing it","type":"exceed_context_size_error"}\n\n';
const COMPLETION = JSON.stringify({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1,
  model: 'm',
  choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
});

const SCENARIOS: Record<string, string | Buffer> = {
  'no-done': token('a') + finish() + USAGE,
  'no-done-two-choices': token('a', 0) + token('b', 1) + finish(0),
  // Choice 0's finish_reason twice (again on a usage-like chunk): still one choice finished.
  'no-done-finish-twice': token('a', 0) + token('b', 1) + finish(0) + finish(0),
  'no-done-cut': token('a'),
  'completions-no-done': text('a', null) + text('b', 'stop'),
  'completions-no-done-two': text('a', null) + text('b', 'stop'),
  'llama-error-first': LLAMA_CPP_ERROR + 'data: [DONE]\n\n',
  'llama-error-mid': token('a') + LLAMA_CPP_ERROR + 'data: [DONE]\n\n',
  bom: `\uFEFF${token('X')}${finish()}data: [DONE]\n\n`,
  'done-space': `${token('a')}${finish()}data: [DONE] \n\n`,
  'prompt-filter':
    chunk({ index: 0 }, {}).replace(
      /"choices":\[.*\]/,
      '"choices":[],"prompt_filter_results":[{"prompt_index":0,"content_filter_results":{"hate":{"filtered":false}}}]',
    ) +
    token('a') +
    finish() +
    USAGE +
    'data: [DONE]\n\n',
};

t.test("real servers' dialects of the OpenAI stream", async (t) => {
  /** The Accept-Encoding of every request the upstream got. */
  const acceptEncodings: unknown[] = [];
  const upstream = createServer((req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      acceptEncodings.push(req.headers['accept-encoding']);
      const body = JSON.parse(Buffer.concat(parts).toString('utf8')) as {
        messages?: Array<{ content: string }>;
        prompt?: string;
      };
      const scenario = body.messages?.at(-1)?.content ?? body.prompt ?? '';
      if (scenario === 'bom-whole') {
        res.writeHead(200, { 'content-type': 'application/json' });
        return res.end(`\uFEFF${COMPLETION}`);
      }
      if (scenario === 'gzip') {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': 'gzip' });
        return res.end(gzipSync(token('a') + finish() + 'data: [DONE]\n\n'));
      }
      // No coding at all, said oddly: an empty list (RFC 9110 §8.4), `none`, identity twice.
      const noCoding = { 'encoding-empty': '', 'encoding-none': 'none', 'encoding-twice': 'Identity, identity' }[
        scenario as 'encoding-empty'
      ];
      if (noCoding !== undefined) {
        res.writeHead(200, { 'content-type': 'text/event-stream', 'content-encoding': noCoding });
        return res.end(token('a') + finish() + 'data: [DONE]\n\n');
      }
      if (scenario === 'te-gzip') {
        // node frames it as chunked (the header says chunked last); the chunks' data is gzip.
        res.writeHead(200, { 'content-type': 'text/event-stream', 'transfer-encoding': 'gzip, chunked' });
        return res.end(gzipSync(token('a') + finish() + 'data: [DONE]\n\n'));
      }
      if (scenario === 'gzip-429') {
        res.writeHead(429, { 'content-type': 'application/json', 'content-encoding': 'gzip', 'retry-after': '7' });
        return res.end(gzipSync(JSON.stringify({ error: { message: 'slow down', type: 'rate_limit_exceeded' } })));
      }
      if (scenario === 'html-stream') {
        // PHP's default content type, and hand-rolled proxies': an event stream all the same.
        res.writeHead(200, { 'content-type': 'text/html; charset=UTF-8' });
        return res.end(token('a') + finish() + 'data: [DONE]\n\n');
      }
      if (scenario === 'html') {
        res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
        return res.end('<html><head><title>Access denied</title></head><body>data: oops</body></html>');
      }
      if (scenario === 'redirect') {
        res.writeHead(302, { location: 'https://models.example/v1/chat/completions' });
        return res.end();
      }
      if (scenario === 'usage-nonsense') {
        const usage = { prompt_tokens: 1e300, completion_tokens: -5, total_tokens: 1e300 };
        res.writeHead(200, { 'content-type': 'text/event-stream' });
        return res.end(
          token('a') +
            finish() +
            chunk({ index: 0 }, { usage }).replace(/"choices":\[.*\]/, '"choices":[]') +
            'data: [DONE]\n\n',
        );
      }
      const answer = SCENARIOS[scenario];
      if (answer === undefined) return res.writeHead(500).end();
      res.writeHead(200, { 'content-type': 'text/event-stream', 'x-request-id': 'req_upstream_1' });
      res.end(answer);
    });
  });
  upstream.listen(0, '127.0.0.1');
  await once(upstream, 'listening');
  t.teardown(() => {
    upstream.closeAllConnections();
    upstream.close();
  });
  const url = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;
  const gw = await startGateway(
    t,
    { versions: { v1: { weight: 1, upstream: { format: 'openai', url } } } },
    { env: { LOG_LEVEL: 'info' } },
  );
  const chat = (scenario: string, extra: Record<string, unknown> = {}): Promise<StreamClient> =>
    postStream(`${gw.url}/v1/chat/completions`, {
      model: 'm',
      stream: true,
      messages: [{ role: 'user', content: scenario }],
      ...extra,
    });
  const read = async (scenario: string, extra: Record<string, unknown> = {}): Promise<StreamClient> => {
    const s = await chat(scenario, extra);
    await s.done;
    return s;
  };
  /** A streamed request's answer read whole: a refusal before the stream's status is a plain JSON answer. */
  const answer = (scenario: string): Promise<SimpleResponse> =>
    httpRequest(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: scenario }] }),
    });
  /** The final error event, if the stream ended with one. */
  const errorOf = (s: StreamClient): ErrorBody['error'] | undefined => {
    const last = s.data.at(-1);
    return last === undefined || last === '[DONE]' ? undefined : (JSON.parse(last) as Partial<ErrorBody>).error;
  };

  t.test('a stream that ends after its finish_reason without [DONE] is complete (TGI, llama.cpp forks)', async (t) => {
    const s = await read('no-done');
    t.equal(s.status, 200);
    t.equal(s.text(), 'a');
    t.equal(s.data.at(-1), '[DONE]', 'the client gets its [DONE]');
    t.equal(errorOf(s), undefined);
    const completions = await postStream(`${gw.url}/v1/completions`, {
      model: 'm',
      stream: true,
      prompt: 'completions-no-done',
    });
    await completions.done;
    t.equal(completions.data.at(-1), '[DONE]', 'legacy completions too');
    t.equal(completions.data.length, 3);
  });

  t.test("the upstream's own request id is in the worker's log line (for the provider's support)", async (t) => {
    const s = await postStream(
      `${gw.url}/v1/chat/completions`,
      { model: 'm', stream: true, messages: [{ role: 'user', content: 'no-done' }] },
      { 'x-request-id': 'dialect-ids' },
    );
    await s.done;
    const line = await untilOutput(gw, () =>
      gw
        .output()
        .split('\n')
        .find((l) => l.includes('"reqId":"dialect-ids"') && l.includes('"msg":"request finished"')),
    );
    t.match(line, /"upstreamRequestId":"req_upstream_1"/);
  });

  t.test('without [DONE], a stream is complete only once every choice asked for has finished', async (t) => {
    const two = await read('no-done-two-choices', { n: 2 });
    t.equal(errorOf(two)?.code, 'upstream_protocol_error', 'choice 1 never finished');
    const twice = await read('no-done-finish-twice', { n: 2 });
    t.equal(errorOf(twice)?.code, 'upstream_protocol_error', 'one choice finishing twice is not two');
    const cut = await read('no-done-cut');
    t.equal(errorOf(cut)?.code, 'upstream_protocol_error', 'no finish_reason at all: cut');
    const completions = await postStream(`${gw.url}/v1/completions`, {
      model: 'm',
      stream: true,
      n: 2,
      prompt: 'completions-no-done-two',
    });
    await completions.done;
    t.equal(errorOf(completions)?.code, 'upstream_protocol_error', 'legacy completions: choice 1 never came');
  });

  t.test("llama.cpp's `error:` line is the upstream's error, not an empty success", async (t) => {
    const first = await answer('llama-error-first');
    t.equal(first.status, 502, 'before any content: a real status');
    t.equal(json<ErrorBody>(first).error.code, 'upstream_status');
    t.match(json<ErrorBody>(first).error.message, /exceeds the available context size/);
    const mid = await read('llama-error-mid');
    t.equal(mid.text(), 'a');
    t.equal(errorOf(mid)?.code, 'upstream_status', 'after content: the final error event');
    t.match(errorOf(mid)?.message, /exceeds the available context size/);
  });

  t.test('a byte-order mark first is not part of the first event, streamed or not', async (t) => {
    const s = await read('bom');
    t.equal(s.text(), 'X', 'the first event is kept');
    const whole = await httpRequest(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      body: JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 'bom-whole' }] }),
    });
    t.equal(whole.status, 200);
    t.equal(whole.body, COMPLETION, 'relayed without the mark');
  });

  t.test('`[DONE] ` with a trailing space ends the stream, as the SDKs read it', async (t) => {
    const s = await read('done-space');
    t.equal(s.text(), 'a');
    t.equal(s.data.at(-1), '[DONE]');
  });

  t.test(
    "Azure's prompt-filter chunk (no choices, no usage) reaches the client; the usage chunk only if asked",
    async (t) => {
      const s = await read('prompt-filter');
      t.match(s.data[0], /prompt_filter_results/);
      t.notOk(
        s.data.some((d) => d.includes('"usage":{')),
        'the usage chunk graygate asked for is not sent',
      );
      const asked = await read('prompt-filter', { stream_options: { include_usage: true } });
      t.ok(asked.data.some((d) => d.includes('"usage":{')));
    },
  );

  t.test('the upstream is asked for no encoding; a compressed answer anyway is a clear protocol error', async (t) => {
    acceptEncodings.length = 0;
    const res = await httpRequest(`${gw.url}/v1/chat/completions`, {
      method: 'POST',
      headers: { 'accept-encoding': 'gzip, br' },
      body: JSON.stringify({ model: 'm', stream: true, messages: [{ role: 'user', content: 'gzip' }] }),
    });
    t.same(acceptEncodings, ['identity']);
    t.equal(res.status, 502);
    t.equal(json<ErrorBody>(res).error.code, 'upstream_protocol_error');
    t.match(json<ErrorBody>(res).error.message, /Content-Encoding: gzip/);
    const chunked = await answer('te-gzip');
    t.equal(chunked.status, 502, 'a transfer-coding under the chunking too');
    t.match(json<ErrorBody>(chunked).error.message, /Transfer-Encoding: gzip, chunked, which graygate does not decode/);
  });

  t.test('an empty or `none` Content-Encoding is no coding, as for curl, fetch and nginx', async (t) => {
    for (const scenario of ['encoding-empty', 'encoding-none', 'encoding-twice']) {
      const s = await read(scenario);
      t.equal(s.status, 200, scenario);
      t.equal(s.text(), 'a', scenario);
      t.equal(s.data.at(-1), '[DONE]', scenario);
    }
  });

  t.test('a compressed error body keeps its status and Retry-After; its bytes are not the message', async (t) => {
    const res = await answer('gzip-429');
    t.equal(res.status, 429);
    t.equal(res.headers['retry-after'], '7');
    t.match(json<ErrorBody>(res).error.message, /^upstream answered 429: its body sent with Content-Encoding: gzip/);
    t.ok(/^[\x20-\x7e]*$/.test(json<ErrorBody>(res).error.message), 'printable');
  });

  t.test("a proxy's HTML page with 200 on a stream is named by its first bytes", async (t) => {
    const res = await answer('html');
    t.equal(res.status, 502);
    t.equal(json<ErrorBody>(res).error.code, 'upstream_protocol_error');
    t.match(json<ErrorBody>(res).error.message, /text\/html, not an event stream: "<html><head><title>Access denied/);
    const labelled = await read('html-stream');
    t.equal(labelled.text(), 'a', 'a stream labelled text/html is read as the stream it is');
    t.equal(labelled.data.at(-1), '[DONE]');
  });

  t.test('a redirect is not followed, and its Location is named (a wrong upstream.url)', async (t) => {
    const res = await answer('redirect');
    t.equal(res.status, 502);
    t.match(json<ErrorBody>(res).error.message, 'upstream answered 302 (Location: https://models.example/v1/chat/c');
  });

  t.test("an upstream's nonsense usage is counted 0, in the log line and graygate_tokens_total", async (t) => {
    const before = (await scrape(gw)).sum('graygate_tokens_total');
    const s = await postStream(
      `${gw.url}/v1/chat/completions`,
      { model: 'm', stream: true, messages: [{ role: 'user', content: 'usage-nonsense' }] },
      { 'x-request-id': 'usage-nonsense' },
    );
    await s.done;
    t.equal(s.text(), 'a');
    const line = await untilOutput(gw, () =>
      gw
        .output()
        .split('\n')
        .find((l) => l.includes('"reqId":"usage-nonsense"') && l.includes('"msg":"request finished"')),
    );
    t.match(line, /"tokens":0,"promptTokens":0/);
    t.equal((await scrape(gw)).sum('graygate_tokens_total'), before, 'nothing counted');
  });
});
