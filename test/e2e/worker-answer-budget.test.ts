import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { startGateway } from '../helpers/gateway.js';
import { scrapeUntil } from '../helpers/metrics.js';
import { httpRequest, json, type SimpleResponse } from '../helpers/http.js';
import { postStream } from '../worker/fixtures/sse-client.js';

// limits.maxBufferedAnswerBytes: what all of a worker's non-streamed answers hold at once (each may hold 64 MiB; ten
// at once took ~1.7 GB of one worker). An upstream that sends the first part of an answer and holds the rest until the
// test lets it go, on each path that holds an answer whole: an OpenAI upstream's JSON (collected, checked, sent as it
// came) and an Ollama stream joined into one chat.completion. Every wait is on an event or a scrape.

interface ErrorBody {
  error: { message: string; type: string; code: string };
}

const BUDGET = 1024 * 1024;
const PART = 700_000;

const ollamaLine = (content: string, done = false): string =>
  `${JSON.stringify({
    model: 'm',
    created_at: '2026-01-01T00:00:00Z',
    message: { role: 'assistant', content },
    done,
    ...(done ? { done_reason: 'stop', prompt_eval_count: 1, eval_count: 1 } : {}),
  })}\n`;
const sseChunk = (content: string): string =>
  `data: ${JSON.stringify({
    id: 'c1',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta: { content }, finish_reason: null }],
  })}\n\n`;

/** Answers `hold N` (N characters, then waits for release()) or `send N` (N characters at once), in either format. */
function budgetUpstream(): {
  url: Promise<string>;
  /** A held answer's first part went out. */
  held: () => Promise<void>;
  release: () => void;
  close: () => Promise<void>;
} {
  const waiting: Array<() => void> = [];
  const sent: Array<() => void> = [];
  const onHeld = (): void => void sent.shift()?.();
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      const [, how, n] = /(hold|send) (\d+)/.exec(text) ?? ['', 'send', '10'];
      // Pieces of 64 KiB: an event or line of the stream stays under maxEventBytes.
      const pieces = Array.from({ length: Math.ceil(Number(n) / 65536) }, (_, i) =>
        'a'.repeat(Math.min(65536, Number(n) - i * 65536)),
      );
      const ollama = req.url === '/api/chat';
      const isStream = /"stream":true/.test(text);
      const [head, tail] = ollama
        ? [pieces.map((piece) => ollamaLine(piece)).join(''), ollamaLine('', true)]
        : isStream
          ? [pieces.map((piece) => sseChunk(piece)).join(''), 'data: [DONE]\n\n']
          : [
              `{"id":"c1","object":"chat.completion","created":1,"model":"m","choices":[{"index":0,"message":{"role":"assistant","content":"${pieces.join('')}`,
              '"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}',
            ];
      const type = ollama ? 'application/x-ndjson' : isStream ? 'text/event-stream' : 'application/json';
      res.writeHead(200, { 'content-type': type });
      if (how === 'send') return void res.end(head + tail);
      res.write(head, () => onHeld());
      waiting.push(() => res.end(tail));
    });
  });
  server.listen(0, '127.0.0.1');
  return {
    url: once(server, 'listening').then(() => `http://127.0.0.1:${(server.address() as AddressInfo).port}`),
    held: () => new Promise((resolve) => sent.push(resolve)),
    release: () => {
      for (const end of waiting.splice(0)) end();
    },
    close: () => {
      server.closeAllConnections();
      return new Promise((resolve) => server.close(() => resolve()));
    },
  };
}

t.test('answers held whole share one budget per worker: 503 answer_budget past it, streams never', async (t) => {
  const upstream = budgetUpstream();
  t.teardown(upstream.close);
  const url = await upstream.url;
  const gw = await startGateway(t, {
    limits: { maxBufferedAnswerBytes: BUDGET },
    versions: {
      v1: { weight: 1, upstream: { format: 'openai', url } },
      llama: { weight: 0, upstream: { format: 'ollama', url } },
    },
  });
  const post = (version: string, what: string, stream = false): Promise<SimpleResponse> =>
    httpRequest(`${gw.url}/v1/chat/completions?version=${version}`, {
      method: 'POST',
      body: JSON.stringify({ model: 'm', stream, messages: [{ role: 'user', content: what }] }),
    });
  const content = (res: SimpleResponse): string =>
    json<{ choices: Array<{ message: { content: string } }> }>(res).choices[0]!.message.content;
  const held = (version: string, atLeast: number): Promise<unknown> =>
    scrapeUntil(
      gw,
      (s) => s.sum('graygate_buffered_answer_bytes', { version }) >= atLeast,
      `${version}'s worker holding ${atLeast} bytes`,
    );

  for (const version of ['v1', 'llama']) {
    t.test(`${version}: a second answer that does not fit waits for none`, async (t) => {
      const sentFirst = upstream.held();
      const first = post(version, `hold ${PART}`);
      await sentFirst;
      await held(version, PART);

      const second = await post(version, `send ${PART}`);
      t.equal(second.status, 503, 'refused: the worker holds the first');
      const error = json<ErrorBody>(second).error;
      t.equal(error.code, 'answer_budget');
      t.equal(error.type, 'overloaded_error');
      t.match(error.message, /maxBufferedAnswerBytes.*stream: true/);
      t.equal(second.headers['retry-after'], '1', 'a client may try again');

      const streamed = await postStream(`${gw.url}/v1/chat/completions?version=${version}`, {
        model: 'm',
        stream: true,
        messages: [{ role: 'user', content: `send ${2 * BUDGET}` }],
      });
      await streamed.done;
      t.equal(streamed.status, 200, 'a stream holds no answer whole: it goes on');
      t.equal(streamed.data.at(-1), '[DONE]');

      upstream.release();
      const answer = await first;
      t.equal(answer.status, 200, 'the first answer completes');
      t.equal(content(answer).length, PART);
      await scrapeUntil(gw, (s) => s.sum('graygate_buffered_answer_bytes', { version }) === 0, 'its bytes given back');

      const again = await post(version, `send ${PART}`);
      t.equal(again.status, 200, 'with the first sent, the same answer fits');
      t.equal(content(again).length, PART);
    });
  }

  t.test('an answer larger than the whole budget is answer_too_large, not a 503 a retry meets again', async (t) => {
    for (const version of ['v1', 'llama']) {
      const res = await post(version, `send ${BUDGET + 1000}`);
      t.equal(res.status, 502, version);
      t.equal(json<ErrorBody>(res).error.code, 'answer_too_large', version);
      t.equal(res.headers['retry-after'], undefined, version);
    }
    await scrapeUntil(gw, (s) => s.sum('graygate_buffered_answer_bytes') === 0, 'nothing held after the refusals');
  });
});
