import t from 'tap';
import { checkJsonLimits, type JsonLimits } from '../../../worker/request/json-limits.js';

// Issue 9 part 5: the pre-scan refuses what would cost too much, and only
// that: strings (escapes included) never count, whatever they contain.

const LIMITS: JsonLimits = { maxDepth: 3, maxMembers: 3, maxValues: 6 };
const check = (json: string): void => checkJsonLimits(Buffer.from(json), LIMITS);

const ACCEPTED: Array<[string, string]> = [
  ['scalars', '"x"'],
  ['depth 3', '{"a":[{"b":1}]}'],
  ['3 members', '{"a":1,"b":2,"c":3}'],
  ['3 items', '[1,2,3]'],
  ['6 values', '[[1,2],[3,4]]'],
  ['brackets, commas and quotes inside strings', '{"a":"[[[[{{{{,,,,,,\\"\\"\\\\","b":"\\\\"}'],
  ['a string ending in an escaped backslash', '["\\\\",1]'],
  ['unicode escapes and raw UTF-8', '{"é":"\\u00e9 日本 🚀"}'],
  ['whitespace everywhere', ' [ 1 , 2 ] '],
  ['empty containers count once each', '[[],{},[]]'],
];
for (const [name, json] of ACCEPTED) {
  t.test(`accepted: ${name}`, async (t) => {
    t.doesNotThrow(() => check(json));
    t.doesNotThrow(() => JSON.parse(json) as unknown, 'and it is JSON');
  });
}

const REFUSED: Array<[string, string, RegExp]> = [
  ['depth 4', '{"a":[{"b":[]}]}', /nested more than 3 levels deep \(limit 3\)/],
  ['4 members', '{"a":1,"b":2,"c":3,"d":4}', /more than 3 members \(limit 3\)/],
  ['4 items', '[1,2,3,4]', /more than 3 members/],
  ['7 values', '[[1,2],[3,4],[5]]', /more than 6 members and items in total \(limit 6\)/],
  ['brackets after an escaped quote are structure again', '["\\"",[[[]]]]', /nested more than 3/],
];
for (const [name, json, message] of REFUSED) {
  t.test(`refused: ${name}`, async (t) => {
    t.throws(() => check(json), { code: 'invalid_request', status: 400, message });
  });
}

t.test('malformed JSON is left to JSON.parse', async (t) => {
  for (const json of ['{"a":"unterminated', ']]]]]', '1,2,3,4,5', '{"a":1}}}}}'])
    t.doesNotThrow(() => check(json), json);
});

t.test('a deep body is refused without recursion, whatever its depth', async (t) => {
  const deep = '['.repeat(1_000_000) + ']'.repeat(1_000_000);
  t.throws(() => checkJsonLimits(Buffer.from(deep), { maxDepth: 64, maxMembers: 10, maxValues: 100 }), {
    message: /nested more than 64 levels/,
  });
});
