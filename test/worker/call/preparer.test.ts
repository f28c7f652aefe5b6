import t from 'tap';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { RequestPreparer } from '../../../worker/call/preparer.js';
import { inputCount } from '../../../worker/call/prepare.js';
import { loadAdapter } from '../../../worker/upstream/load-adapter.js';
import { ROOT } from '../../helpers/gateway.js';

// Issue 9 part 5: small bodies are prepared on the event loop, large ones on
// the helper thread, with the same result; the thread is the built one
// (`npm test` builds first), since a thread cannot run the TypeScript sources.

const threadUrl = pathToFileURL(join(ROOT, 'dist/worker/call/prepare-thread.js'));
const body = (content: string, extra: Record<string, unknown> = {}): Buffer =>
  Buffer.from(
    JSON.stringify({
      model: 'm',
      stream: true,
      stream_options: { include_usage: true },
      messages: [{ role: 'user', content }],
      ...extra,
    }),
  );

t.test('inline and on the thread, the same upstream call', async (t) => {
  const adapter = await loadAdapter('anthropic');
  const preparer = new RequestPreparer({
    adapter,
    // The version's build options reach the thread too (upstream.defaultMaxTokens: the body's max_tokens below).
    build: { model: undefined, apiKey: 'k', defaultMaxTokens: 64_000 },
    inlineMaxBytes: 1024,
    threadUrl,
  });
  t.teardown(() => preparer.destroy());
  const signal = new AbortController().signal;
  const small = await preparer.prepare(body('hi'), { signal });
  t.equal(preparer.hasThread, false, 'a small body needs no thread');
  const bigText = 'é'.repeat(4096);
  const big = body(bigText);
  const onThread = await preparer.prepare(big, { signal });
  t.equal(preparer.hasThread, true);
  t.equal(big.length, 0, "the body's memory moved to the thread, not copied");
  t.same(
    { ...onThread, request: { ...onThread.request, body: undefined } },
    { ...small, request: { ...small.request, body: undefined } },
    'same flags, path, headers and model',
  );
  const sent = JSON.parse(onThread.request.body.toString()) as {
    messages: Array<{ content: string }>;
    max_tokens: number;
  };
  t.equal(sent.messages[0]?.content, bigText);
  t.equal(sent.max_tokens, 64_000, "the version's default max_tokens, on the thread as inline");
  t.same([onThread.isStream, onThread.includeUsage], [true, true]);
  await t.rejects(
    preparer.prepare(body('x'.repeat(2048), { n: 3 }), { signal }),
    { code: 'invalid_request', message: /^n: an anthropic upstream cannot express it/, param: 'n' },
    "a refusal crosses back with its code and the field it names (the body's `param`)",
  );
  const malformed = Buffer.from(
    JSON.stringify({ model: 'm', messages: [{ role: 'user', content: 5 }, 'x'.repeat(2048)] }),
  );
  await t.rejects(
    preparer.prepare(malformed, { signal }),
    { code: 'invalid_request', param: 'messages.0.content' },
    "a malformed body's too",
  );
});

t.test('a caller that gives up stops waiting; close() and destroy() stop the thread', async (t) => {
  const adapter = await loadAdapter('openai');
  const preparer = new RequestPreparer({
    adapter,
    build: { model: undefined, apiKey: undefined },
    inlineMaxBytes: 16,
    threadUrl,
  });
  t.teardown(() => preparer.destroy());
  const client = new AbortController();
  const waiting = preparer.prepare(body('x'.repeat(100)), { signal: client.signal });
  client.abort(new Error('client left'));
  await t.rejects(waiting, { message: 'client left' });
  const pending = preparer.prepare(body('y'.repeat(100)), { signal: new AbortController().signal });
  const closed = preparer.close();
  await t.resolves(pending, 'close() lets the jobs it has finish');
  await closed;
  t.equal(preparer.hasThread, false);
  await t.rejects(
    preparer.prepare(body('z'.repeat(100)), { signal: client.signal }),
    { message: 'client left' },
    'an aborted caller is refused first',
  );
  await t.rejects(preparer.prepare(body('z'.repeat(100)), { signal: new AbortController().signal }), {
    code: 'shutting_down',
  });
});

t.test('destroy() fails the jobs in flight', async (t) => {
  const adapter = await loadAdapter('ollama');
  const preparer = new RequestPreparer({
    adapter,
    build: { model: undefined, apiKey: undefined },
    inlineMaxBytes: 16,
    threadUrl,
  });
  const pending = preparer.prepare(body('x'.repeat(100)), { signal: new AbortController().signal });
  const refused = t.rejects(pending, { code: 'shutting_down' });
  await preparer.destroy();
  await refused;
  t.equal(preparer.hasThread, false);
});

t.test('every endpoint kind, inline and on the thread', async (t) => {
  const adapter = await loadAdapter('openai');
  const preparer = new RequestPreparer({
    adapter,
    build: { model: 'pinned', apiKey: undefined },
    inlineMaxBytes: 1024,
    threadUrl,
  });
  t.teardown(() => preparer.destroy());
  const signal = new AbortController().signal;
  const embed = (input: string): Buffer =>
    Buffer.from(JSON.stringify({ model: 'm', input, encoding_format: 'base64' }));
  const small = await preparer.prepare(embed('x'), { signal, kind: 'embeddings' });
  const big = await preparer.prepare(embed('x'.repeat(4096)), { signal, kind: 'embeddings' });
  t.equal(preparer.hasThread, true);
  for (const call of [small, big]) {
    t.same(
      [call.request.path, call.request.model, call.encoding, call.isStream],
      ['/embeddings', 'pinned', 'base64', false],
    );
  }
  const responses = await preparer.prepare(
    Buffer.from(JSON.stringify({ model: 'm', input: 'y'.repeat(2048), stream: true })),
    { signal, kind: 'responses' },
  );
  t.same([responses.request.path, responses.isStream], ['/responses', true]);
  const ollama = new RequestPreparer({
    adapter: await loadAdapter('ollama'),
    build: { model: undefined, apiKey: undefined },
    inlineMaxBytes: 16,
    threadUrl,
  });
  t.teardown(() => ollama.destroy());
  await t.rejects(
    ollama.prepare(Buffer.from(JSON.stringify({ model: 'm', prompt: 'p'.repeat(100) })), {
      signal,
      kind: 'completions',
    }),
    { code: 'unsupported_endpoint', message: /\(ollama\)/ },
    'a kind the format lacks',
  );
});

t.test(
  "embeddings: the inputs asked for, inline and on the thread (an answer's vectors are counted against them)",
  async (t) => {
    const preparer = new RequestPreparer({
      adapter: await loadAdapter('ollama'),
      build: { model: undefined, apiKey: undefined },
      inlineMaxBytes: 256,
      threadUrl,
    });
    t.teardown(() => preparer.destroy());
    const signal = new AbortController().signal;
    const inputs = async (input: unknown): Promise<number> =>
      (await preparer.prepare(Buffer.from(JSON.stringify({ model: 'e', input })), { signal, kind: 'embeddings' }))
        .choices;
    t.equal(await inputs('x'), 1);
    t.equal(await inputs(''), 0, 'an empty string is none: Ollama answers it with no vector (a reviewer)');
    t.equal(await inputs(['a', 'b', 'c']), 3);
    t.equal(await inputs(Array.from({ length: 300 }, () => 'text')), 300, 'on the thread');
    t.equal(preparer.hasThread, true);
    t.equal(inputCount([1, 2, 3]), 1, 'a token array is one input');
    t.equal(inputCount([[1], [2]]), 2);
  },
);
