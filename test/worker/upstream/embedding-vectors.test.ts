import t from 'tap';
import { isDeepStrictEqual } from 'node:util';
import { findEmbeddingVectors } from '../../../worker/upstream/embedding-vectors.js';
import { convertOllamaEmbedAnswer } from '../../../worker/upstream/ollama-embed.js';
import { tokenCount } from '../../../worker/upstream/format-adapter.js';

// An Ollama embeddings answer's vectors read from its bytes (issue 10's hot loop: 1,000 texts' vectors held the
// worker's loop a second through JSON.parse and JSON.stringify), against the parse of the whole as the reference.

/** What the conversion gives, parsed, or the error's code and message. */
function converted(text: string, encoding: 'float' | 'base64' = 'float'): unknown {
  try {
    const inputs = inputsOf(text);
    return JSON.parse(convertOllamaEmbedAnswer('embeddings', Buffer.from(text), { encoding, inputs }).body.toString());
  } catch (err) {
    return { code: (err as { code?: string }).code, message: (err as Error).message };
  }
}

/** The inputs the answer's vectors are for: as many as it has (1 when it has none to count). */
function inputsOf(text: string): number {
  try {
    const vectors = (JSON.parse(text) as { embeddings?: unknown }).embeddings;
    return Array.isArray(vectors) ? vectors.length : 1;
  } catch {
    return 1;
  }
}

/** The answer as the parse of the whole builds it (the reference). */
function expected(text: string): unknown {
  const value = JSON.parse(text) as { embeddings: number[][]; model?: unknown; prompt_eval_count?: unknown };
  const tokens = tokenCount(value.prompt_eval_count);
  return {
    object: 'list',
    data: value.embeddings.map((embedding, index) => ({ object: 'embedding', index, embedding })),
    model: typeof value.model === 'string' ? value.model : '',
    usage: { prompt_tokens: tokens, total_tokens: tokens },
  };
}

t.test('vectors go out as the upstream wrote them; the rest of the answer is read as before', async (t) => {
  const text = '{"model":"e","embeddings":[[0.1000,-2E3, 0 ,-0.5e-7],[]],"total_duration":5,"prompt_eval_count":3}';
  const body = convertOllamaEmbedAnswer('embeddings', Buffer.from(text), {
    encoding: 'float',
    inputs: 2,
  }).body.toString();
  t.equal(
    body,
    '{"object":"list","data":[{"object":"embedding","index":0,"embedding":[0.1000,-2E3, 0 ,-0.5e-7]},' +
      '{"object":"embedding","index":1,"embedding":[]}],"model":"e","usage":{"prompt_tokens":3,"total_tokens":3}}',
  );
  t.same(JSON.parse(body), expected(text));
  const found = findEmbeddingVectors(Buffer.from(text), 2);
  t.equal(found?.rest.toString(), '{"model":"e","embeddings":[],"total_duration":5,"prompt_eval_count":3}');
  t.same(converted('{"embeddings":[[1.5,-2]]}', 'base64'), {
    object: 'list',
    data: [
      { object: 'embedding', index: 0, embedding: Buffer.from(new Float32Array([1.5, -2]).buffer).toString('base64') },
    ],
    model: '',
    usage: { prompt_tokens: 0, total_tokens: 0 },
  });
});

t.test('an answer of another shape is read whole, as before: the same answer or the same error', async (t) => {
  const cases = [
    '{"embeddings":[[1,"a"]]}', // not numbers
    '{"embeddings":[[01]]}', // not JSON numbers
    '{"embeddings":[[1.]]}',
    '{"embeddings":[[-]]}',
    '{"embeddings":[[1e]]}',
    '{"embeddings":[[NaN]]}',
    '{"embeddings":[1,2]}',
    '{"embeddings":"x"}',
    '{"model":"e"}',
    '{"embeddings":[[1]],"embeddings":[[2]]}', // JSON.parse keeps the last
    '{"embeddings":[[1]],"embe\\u0064dings":[[2]]}',
    '{"embe\\u0064dings":[[2]],"embeddings":[[1]]}',
    '{"embeddings":[[1]]', // cut
    '{"embeddings":[[1]]} x',
    '{"embeddings":[[1]],}',
    '[[1]]',
    '{"a":"]}\\"","embeddings":[[1,2]],"b":[{"c":"[["}],"d":null,"e":true}',
  ];
  for (const text of cases) {
    let reference: unknown;
    try {
      reference = expected(text);
      const value = JSON.parse(text) as { embeddings: unknown };
      const vectors = value.embeddings as unknown[];
      if (!Array.isArray(vectors) || !vectors.every((v) => Array.isArray(v) && v.every((x) => typeof x === 'number')))
        reference = 'an error';
    } catch {
      reference = 'an error';
    }
    const got = converted(text);
    if (reference === 'an error') t.match(got, { code: 'upstream_protocol_error' }, text);
    else t.same(got, reference, text);
  }
});

t.test('randomized answers: the same values as the parse of the whole', async (t) => {
  let seed = 42;
  const random = (): number => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
  const pick = <T>(items: T[]): T => items[Math.floor(random() * items.length)]!;
  const space = (): string => pick(['', '', ' ', '\n', '\t ']);
  const number = (): string =>
    pick([
      '0',
      '-0',
      '1',
      '-1.5',
      '0.000123',
      '12345678901234567890',
      '1e-7',
      '-2.5E+3',
      '3e0',
      String(random() - 0.5),
    ]);
  const other = (): string =>
    pick(['null', 'true', '"x"', '"a\\"]}["', '{"k":[1,{"z":"}"}]}', '[]', '-3.25', '"\\\\"', '"embeddings"']);
  const differing: string[] = [];
  for (let n = 0; n < 2000; n++) {
    const vectors = Array.from(
      { length: Math.floor(random() * 4) },
      () =>
        `[${space()}${Array.from({ length: Math.floor(random() * 5) }, () => `${space()}${number()}${space()}`).join(',')}]`,
    );
    const members = [`"embeddings"${space()}:${space()}[${space()}${vectors.join(`${space()},${space()}`)}${space()}]`];
    for (let m = Math.floor(random() * 4); m > 0; m--)
      members.push(`"${pick(['model', 'x', 'prompt_eval_count', 'e'])}"${space()}:${space()}${other()}`);
    members.sort(() => random() - 0.5);
    const text = `${space()}{${space()}${members.join(`${space()},${space()}`)}${space()}}${space()}`;
    if (!isDeepStrictEqual(converted(text), expected(text))) differing.push(text);
  }
  t.same(differing, [], 'no answer differs');
});
