// Deterministic answer text of the mock upstream (SPEC §8). Tests compute the
// exact expected text with the same functions. The vocabulary mixes ASCII
// with 2-, 3- and 4-byte UTF-8 characters so every parser sees characters
// split across network chunks.

const VOCABULARY = [
  'Hello',
  ',',
  ' wörld',
  '!',
  ' Ça',
  ' va',
  ' très',
  ' bien',
  ' —',
  ' 日本語',
  ' の',
  ' テキスト',
  ' 🚀',
  ' naïve',
  ' café',
  ' €5',
  ' 😀',
  ' fin',
  '.',
];

/**
 * Token `index` of an answer. `minChars` > 0 repeats the word until the token
 * has at least that many UTF-16 units, for large-token load tests; whole words
 * are repeated so no character is ever cut.
 */
export function mockToken(index: number, minChars = 0): string {
  const word = VOCABULARY[index % VOCABULARY.length]!;
  if (word.length >= minChars) return word;
  return word.repeat(Math.ceil(minChars / word.length));
}

/** The whole answer of `count` tokens, as a client should see it. */
export function mockText(count: number, minChars = 0): string {
  const parts: string[] = [];
  for (let i = 0; i < count; i++) parts.push(mockToken(i, minChars));
  return parts.join('');
}

/** The mock's prompt token count: whitespace-separated words over every message text. */
export function countPromptTokens(texts: readonly string[]): number {
  let count = 0;
  for (const text of texts) {
    for (const word of text.split(/\s+/)) if (word !== '') count++;
  }
  return count;
}
