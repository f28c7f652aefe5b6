import t from 'tap';
import { findTopLevelUser, MAX_SCANNED_STRINGS, MAX_USER_KEY_CHARS, scanTopLevel } from '../../master/body-user.js';

// The body's `user` as a sticky key (issue 12 part 5): only the top-level string member counts.

t.test('findTopLevelUser', async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['{"model":"m","user":"alice","messages":[]}', 'alice'],
    ['{"messages":[{"role":"user","content":"user"}],"user":"bob"}', 'bob'],
    ['  {\n "user" : "spaced" }', 'spaced'],
    ['{"messages":[{"user":"nested"}]}', undefined],
    ['{"metadata":{"user":"nested"},"x":1}', undefined],
    ['{"content":"a \\"user\\":\\"fake\\" inside a string","user":"real"}', 'real'],
    ['{"content":"ends with backslash \\\\","user":"after"}', 'after'],
    ['{"user":"caf\\u00e9"}', 'café'],
    ['{"user":42}', undefined],
    ['{"user":""}', undefined],
    ['{"username":"no","user":"yes"}', 'yes'],
    ['["user","x"]', undefined],
    ['not json', undefined],
    ['{"user":"unterminated', undefined],
    ['', undefined],
  ];
  for (const [body, want] of cases) t.equal(findTopLevelUser(Buffer.from(body)), want, body);
  t.equal(
    findTopLevelUser(Buffer.from(`{"user":"${'u'.repeat(MAX_USER_KEY_CHARS + 1)}"}`)),
    undefined,
    'too long to be a key',
  );
});

t.test("`safety_identifier`, OpenAI's successor of `user`, when a body has no `user` string", async (t) => {
  const cases: Array<[string, string | undefined]> = [
    ['{"model":"m","safety_identifier":"h1","messages":[]}', 'h1'],
    ['{"user":"u","safety_identifier":"h"}', 'u'],
    ['{"safety_identifier":"h","user":"u"}', 'u'],
    ['{"user":42,"safety_identifier":"h"}', 'h'],
    ['{"user":"","safety_identifier":"h"}', 'h'],
    ['{"safety_identifier":7}', undefined],
    ['{"metadata":{"safety_identifier":"nested"}}', undefined],
    ['{"safety_identifier":"a","safety_identifier":"b"}', 'b'],
    ['{"s\\u0061fety_identifier":"escaped"}', 'escaped'],
    [
      `{"${[...'safety_identifier'].map((c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`).join('')}":"all"}`,
      'all',
    ],
  ];
  for (const [body, want] of cases) t.equal(findTopLevelUser(Buffer.from(body)), want, body);
  t.same(
    scanTopLevel(Buffer.from('{"stream":false,"safety_identifier":"h2"}')),
    { user: 'h2', stream: false, isObject: true },
    'with `stream`, in one pass',
  );
});

t.test('a large chat body: the member after a long history is found', async (t) => {
  const messages = Array.from({ length: 2000 }, (_, i) => ({
    role: i % 2 === 0 ? 'user' : 'assistant',
    content: `message ${i} ${'x'.repeat(500)} {"user":"decoy"}`,
  }));
  const body = Buffer.from(JSON.stringify({ model: 'm', messages, user: 'carol' }));
  t.equal(findTopLevelUser(body), 'carol');
});

t.test('scanTopLevel: `stream` too, which times a request its client gives up on (SPEC §11)', async (t) => {
  const cases: Array<[string, boolean | undefined, boolean]> = [
    ['{"model":"m","stream":true,"messages":[]}', true, true],
    ['{"messages":[{"stream":true}],"stream" : false}', false, true],
    ['{"messages":[{"content":"\\"stream\\":true"}]}', undefined, true],
    ['{"stream":"true"}', undefined, true],
    ['{"options":{"stream":true}}', undefined, true],
    ['["stream",true]', undefined, false],
    ['not json', undefined, false],
    // As the worker's JSON.parse reads them (a review: the master took the first, and escaped keys as other keys).
    ['{"stream":true,"stream":null}', false, true],
    ['{"stream":true,"str\\u0065am":false}', false, true],
    ['{"stream":false,"str\\u0065am":true}', true, true],
    ['{"stream":1}', undefined, true],
  ];
  for (const [body, stream, isObject] of cases) {
    const facts = scanTopLevel(Buffer.from(body));
    t.same([facts.stream, facts.isObject], [stream, isObject], body);
  }
  t.same(
    scanTopLevel(Buffer.from('{"stream":true,"user":"dora","x":{"user":"no","stream":false}}')),
    { user: 'dora', stream: true, isObject: true },
    'both, in one pass',
  );
});

t.test('a duplicated or escaped `user` is read as JSON.parse reads it: the last, decoded', async (t) => {
  t.equal(findTopLevelUser(Buffer.from('{"user":"a","user":"b"}')), 'b');
  t.equal(findTopLevelUser(Buffer.from('{"us\\u0065r":"x"}')), 'x');
  t.equal(findTopLevelUser(Buffer.from('{"user":"a","user":7}')), undefined);
});

t.test(
  'the scan reads a body a bounded number of times over, whatever its members (not a key check a member)',
  async (t) => {
    // A probe: every top-level key looked for an escape from itself to the body's next backslash, or its end, so 4 MiB
    // of `"a":"b",` held the master's event loop 47 s. Counted as the bytes Buffer.indexOf goes over (not timed).
    const body = Buffer.from(`{${'"a":"b",'.repeat(5_000)}"us\\u0065r":"escaped","user":"u1","messages":[]}`);
    let scanned = 0;
    type IndexOf = (this: Buffer, value: number | string | Uint8Array, byteOffset?: number) => number;
    const proto = Buffer.prototype as unknown as { indexOf: IndexOf };
    const indexOf = proto.indexOf;
    proto.indexOf = function (this: Buffer, value, byteOffset) {
      const found = indexOf.call(this, value, byteOffset);
      if (this === body) scanned += (found === -1 ? this.length : found + 1) - (byteOffset ?? 0);
      return found;
    };
    t.teardown(() => {
      proto.indexOf = indexOf;
    });
    const facts = scanTopLevel(body);
    proto.indexOf = indexOf;
    t.equal(facts.user, 'u1');
    t.ok(scanned <= 2 * body.length, `${scanned} bytes gone over for a body of ${body.length}`);
  },
);

t.test('the scan stops after MAX_SCANNED_STRINGS strings, with what it found so far', async (t) => {
  // Strings: the key "a", the array's, the key "user" and its value. The worker refuses a chat body with more than
  // 50,000 members and items, so a body past the count is refused there whatever the scan found.
  const body = (items: number): Buffer => Buffer.from(`{"a":[${'"x",'.repeat(items)}"x"],"user":"u1","stream":true}`);
  const last = scanTopLevel(body(MAX_SCANNED_STRINGS - 3));
  t.same([last.user, last.stream], ['u1', undefined], 'the user key is the last string read, its value read with it');
  const past = scanTopLevel(body(MAX_SCANNED_STRINGS - 2));
  t.same([past.user, past.stream, past.isObject], [undefined, undefined, true], 'one more: the scan stopped before it');
});

t.test('a body of many escaped keys or repeated `user` members costs a bounded number of decodes', async (t) => {
  // A review: every `user` value and every short escaped key was a JSON.parse, so 50,000 of either held the master's
  // loop ~40 ms. The last `user` is decoded once, after the scan; escaped keys, 64 a body (no client escapes these).
  const body = Buffer.from(`{${'"\\u0061":1,'.repeat(1000)}${'"user":"a",'.repeat(1000)}"user":"last"}`);
  let parses = 0;
  const parse = JSON.parse;
  JSON.parse = (text: string, reviver?: Parameters<typeof JSON.parse>[1]): unknown => {
    parses++;
    return parse(text, reviver) as unknown;
  };
  t.teardown(() => {
    JSON.parse = parse;
  });
  const facts = scanTopLevel(body);
  JSON.parse = parse;
  t.equal(facts.user, 'last', 'the last one counts');
  t.ok(parses <= 65, `${parses} decodes`);
  const late = scanTopLevel(Buffer.from(`{${'"\\u0061":1,'.repeat(64)}"us\\u0065r":"escaped"}`));
  t.equal(late.user, undefined, 'an escaped `user` after 64 escaped keys is not decoded');
  const early = scanTopLevel(Buffer.from(`{${'"\\u0061":1,'.repeat(63)}"us\\u0065r":"escaped"}`));
  t.equal(early.user, 'escaped', 'the 64th is');
});
