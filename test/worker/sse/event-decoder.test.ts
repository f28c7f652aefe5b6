import t from 'tap';
import { EventDecoder } from '../../../worker/sse/event-decoder.js';
import { LineDecoder } from '../../../worker/sse/line-decoder.js';

// WHATWG HTML §9.2.6 cases, then the whole bytes → lines → events pipeline at
// every split offset of fixtures with all three line endings.

type Ev = [type: string, data: string];

function decode(chunks: Buffer[], maxEventBytes = 4096): Ev[] {
  const events: Ev[] = [];
  const ev = new EventDecoder({ onEvent: (type, data) => events.push([type, data]), maxEventBytes });
  const lines = new LineDecoder({ onLine: (l) => ev.line(l), maxLineBytes: maxEventBytes });
  for (const c of chunks) lines.push(c);
  lines.end();
  ev.end();
  return events;
}

const CASES: Array<{ name: string; text: string; events: Ev[] }> = [
  { name: 'one data line', text: 'data: {"a":1}\n\n', events: [['message', '{"a":1}']] },
  { name: 'no space after colon', text: 'data:{"a":1}\n\n', events: [['message', '{"a":1}']] },
  { name: 'only one leading space is removed', text: 'data:  x\n\n', events: [['message', ' x']] },
  { name: 'multi-line data joins with LF', text: 'data: a\ndata: b\ndata:\n\n', events: [['message', 'a\nb\n']] },
  { name: 'event type', text: 'event: message_start\ndata: {}\n\n', events: [['message_start', '{}']] },
  {
    name: 'event type resets after dispatch',
    text: 'event: ping\ndata: 1\n\ndata: 2\n\n',
    events: [
      ['ping', '1'],
      ['message', '2'],
    ],
  },
  { name: 'comments are ignored', text: ': ping\n\n:\ndata: x\n: mid-event comment\n\n', events: [['message', 'x']] },
  { name: 'id and retry are ignored', text: 'id: 7\nretry: 100\ndata: x\n\n', events: [['message', 'x']] },
  { name: 'field without colon', text: 'data\n\n', events: [['message', '']] },
  { name: 'event with no data is dropped', text: 'event: ping\n\ndata: y\n\n', events: [['message', 'y']] },
  { name: 'unknown fields ignored', text: 'foo: bar\ndata: z\n\n', events: [['message', 'z']] },
  { name: 'last event without blank line is kept', text: 'data: [DONE]\n', events: [['message', '[DONE]']] },
  {
    name: 'multi-byte payload',
    text: 'data: {"t":"日本語 🚀 wörld"}\n\n',
    events: [['message', '{"t":"日本語 🚀 wörld"}']],
  },
];

for (const c of CASES) {
  t.test(c.name, async (t) => {
    t.same(decode([Buffer.from(c.text)]), c.events);
  });
}

// A realistic stream (Anthropic-like, with comments, multi-line data and
// multi-byte characters), rendered with each line ending.
const STREAM_LINES = [
  ': hello',
  'event: message_start',
  'data: {"type":"message_start"}',
  '',
  'data: {"t":"wörld 日本語',
  'data:  🚀"}',
  '',
  ': ping',
  '',
  'event: content_block_delta',
  'data: {"text":"€ café naïve"}',
  '',
  'data: [DONE]',
  '',
];
const STREAM_EVENTS: Ev[] = [
  ['message_start', '{"type":"message_start"}'],
  ['message', '{"t":"wörld 日本語\n 🚀"}'],
  ['content_block_delta', '{"text":"€ café naïve"}'],
  ['message', '[DONE]'],
];

for (const [name, nl] of [
  ['LF', '\n'],
  ['CRLF', '\r\n'],
  ['CR', '\r'],
] as const) {
  t.test(`stream with ${name} cut at every offset, in two and three pieces`, async (t) => {
    const bytes = Buffer.from(STREAM_LINES.join(nl) + nl);
    t.same(decode([bytes]), STREAM_EVENTS, 'whole');
    let failures = 0;
    for (let i = 0; i <= bytes.length; i++) {
      const got = decode([bytes.subarray(0, i), bytes.subarray(i)]);
      if (JSON.stringify(got) !== JSON.stringify(STREAM_EVENTS)) {
        failures++;
        t.same(got, STREAM_EVENTS, `cut at ${i}`);
      }
      // A second cut a few bytes later catches state carried across two boundaries.
      for (const gap of [1, 2, 3]) {
        const j = Math.min(bytes.length, i + gap);
        const got3 = decode([bytes.subarray(0, i), bytes.subarray(i, j), bytes.subarray(j)]);
        if (JSON.stringify(got3) !== JSON.stringify(STREAM_EVENTS)) {
          failures++;
          t.same(got3, STREAM_EVENTS, `cuts at ${i} and ${j}`);
        }
      }
    }
    t.equal(failures, 0, `all ${bytes.length + 1} offsets give the same events`);
  });
}

t.test('an event larger than maxEventBytes is an upstream_protocol_error', async (t) => {
  t.throws(() => decode([Buffer.from(`data: ${'a'.repeat(50)}\ndata: ${'b'.repeat(50)}\n\n`)], 80), {
    code: 'upstream_protocol_error',
  });
  t.throws(() => decode([Buffer.from(`data: ${'a'.repeat(200)}\n\n`)], 80), { code: 'upstream_protocol_error' });
  t.same(decode([Buffer.from(`data: ${'a'.repeat(40)}\ndata: ${'b'.repeat(30)}\n\n`)], 80).length, 1);
});
