import t from 'tap';
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { connect, type AddressInfo, type Socket } from 'node:net';
import { startGateway } from '../helpers/gateway.js';
import { scrapeUntil } from '../helpers/metrics.js';
import { httpRequest, json, type SimpleResponse } from '../helpers/http.js';
import { postStream } from '../worker/fixtures/sse-client.js';
import { untilOutput } from '../helpers/output.js';

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
  /** Requests it got. */
  requests: () => number;
  close: () => Promise<void>;
} {
  const waiting: Array<() => void> = [];
  const sent: Array<() => void> = [];
  const onHeld = (): void => void sent.shift()?.();
  let requests = 0;
  const server = createServer((req: IncomingMessage, res: ServerResponse) => {
    requests++;
    const parts: Buffer[] = [];
    req.on('data', (c: Buffer) => parts.push(c));
    req.on('end', () => {
      const text = Buffer.concat(parts).toString('utf8');
      const [, how, n] = /(hold|send) (\d+)/.exec(text) ?? ['', 'send', '10'];
      // Pieces of 64 KiB: an event or line of the stream stays under maxEventBytes.
      const pieces = Array.from({ length: Math.ceil(Number(n) / 65536) }, (_, i) =>
        'a'.repeat(Math.min(65536, Number(n) - i * 65536)),
      );
      if (req.url === '/api/embed') {
        // One vector of N bytes' worth of numbers.
        const vector = Array.from({ length: Math.ceil(Number(n) / 11) }, () => '0.123456789').join(',');
        res.writeHead(200, { 'content-type': 'application/json' });
        return void res.end(`{"model":"m","embeddings":[[${vector}]]}`);
      }
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
    requests: () => requests,
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
    // An answer converted whole (Ollama embeddings) past a budget under 64 MiB: too large for this gateway's setting,
    // not the upstream's protocol error (a review).
    const embeddings = await httpRequest(`${gw.url}/v1/embeddings?version=llama`, {
      method: 'POST',
      body: JSON.stringify({ model: 'm', input: `send ${BUDGET + 1000}` }),
    });
    t.equal(embeddings.status, 502);
    t.equal(json<ErrorBody>(embeddings).error.code, 'answer_too_large');
    t.match(json<ErrorBody>(embeddings).error.message, /limits\.maxBufferedAnswerBytes/);
    await scrapeUntil(gw, (s) => s.sum('graygate_buffered_answer_bytes') === 0, 'nothing held after the refusals');
  });
});

t.test(
  'an answer holds its share until its bytes have left the worker: a client that reads nothing keeps it',
  async (t) => {
    // A review: the share was given back as the answer was written, and 25 clients that read nothing held 315 MB of a
    // worker past a budget of 16 MiB. Here an answer of ~30 MB to a client that reads nothing: the master stops reading
    // the worker, and most of it waits in the worker.
    const upstream = budgetUpstream();
    t.teardown(upstream.close);
    const url = await upstream.url;
    const budget = 32 * 1024 * 1024;
    const gw = await startGateway(
      t,
      {
        limits: { maxBufferedAnswerBytes: budget },
        versions: { v1: { weight: 1, upstream: { format: 'openai', url } } },
      },
      { env: { LOG_LEVEL: 'info' } },
    );
    const { port } = new URL(gw.url);
    const body = (what: string): string =>
      JSON.stringify({ model: 'm', stream: false, messages: [{ role: 'user', content: what }] });
    /** A non-streamed answer of `size` characters to a client that reads nothing until resumed, written whole. */
    const unread = async (reqId: string, size: number): Promise<Socket> => {
      const socket = connect(Number(port), '127.0.0.1');
      t.teardown(() => socket.destroy());
      socket.pause(); // reads nothing until told
      const request = body(`send ${size}`);
      socket.write(
        'POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nContent-Type: application/json\r\n' +
          `X-Request-Id: ${reqId}\r\nContent-Length: ${Buffer.byteLength(request)}\r\n\r\n${request}`,
      );
      // The worker has written the whole answer (its line is logged once the call is over).
      await untilOutput(gw, () =>
        gw
          .output()
          .split('\n')
          .find((line) => line.includes(`"reqId":"${reqId}"`) && line.includes('request finished')),
      );
      return socket;
    };
    const slow = await unread('slow-1', 30_000_000);
    const post = (what: string): Promise<SimpleResponse> =>
      httpRequest(`${gw.url}/v1/chat/completions`, { method: 'POST', body: body(what) });
    const second = await post('send 5000000');
    t.equal(second.status, 503, 'the unread answer still counts');
    t.equal(json<ErrorBody>(second).error.code, 'answer_budget');

    // Read it all: its share is given back, and the same answer fits.
    slow.resume();
    await scrapeUntil(gw, (s) => s.sum('graygate_buffered_answer_bytes') === 0, 'given back once sent');
    t.equal((await post('send 5000000')).status, 200);

    // A budget with less than a read of room left refuses a new answer before its upstream call.
    const fill = await unread('fill-1', budget - 40_000);
    const calls = upstream.requests();
    const refused = await post('send 10');
    t.equal(refused.status, 503, 'full');
    t.equal(json<ErrorBody>(refused).error.code, 'answer_budget');
    t.equal(upstream.requests(), calls, 'refused without an upstream call: nothing generated to be dropped');
    fill.resume();
    await scrapeUntil(gw, (s) => s.sum('graygate_buffered_answer_bytes') === 0, 'given back once sent');
  },
);
