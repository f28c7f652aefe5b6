import t from 'tap';
import { encodeChunk, encodeData } from '../../../worker/sse/encoder.js';
import { EventDecoder } from '../../../worker/sse/event-decoder.js';
import { LineDecoder } from '../../../worker/sse/line-decoder.js';
import type { ChatCompletionChunk } from '../../../worker/types.js';

// Issue 9 part 6: whatever a payload holds, the event the worker writes
// decodes back to exactly that payload, with the worker's own SSE decoder
// standing in for any WHATWG-conformant client.

function roundTrip(event: string): string[] {
  const payloads: string[] = [];
  const events = new EventDecoder({ onEvent: (_type, data) => payloads.push(data), maxEventBytes: 1 << 20 });
  const lines = new LineDecoder({ onLine: (line) => events.line(line), maxLineBytes: 1 << 20 });
  lines.push(Buffer.from(event));
  lines.end();
  events.end();
  return payloads;
}

const PAYLOADS: Array<[string, string]> = [
  ['one line', '{"a":1}'],
  ['pretty-printed JSON', '{\n "id": "x",\n "choices": [\n  {"delta": {"content": "日本"}}\n ]\n}'],
  ['an empty line inside', 'a\n\nb'],
  ['leading and trailing breaks', '\nx\n'],
  ['a line that starts with a space', 'a\n  b'],
  ['a line that looks like a field', 'a\nevent: x\n: comment'],
];

for (const [name, payload] of PAYLOADS) {
  t.test(`round trip: ${name}`, async (t) => {
    const event = encodeData(payload);
    t.ok(event.endsWith('\n\n'), 'one event');
    t.notOk(/\n(?!data: |\n|$)/.test(event.slice(0, -2)), 'every line is a data line');
    t.same(roundTrip(event), [payload]);
  });
}

t.test('CR and CRLF breaks become data lines too (their text is LF once decoded)', async (t) => {
  t.equal(encodeData('a\r\nb\rc'), 'data: a\ndata: b\ndata: c\n\n');
});

t.test('single-line payloads and serialised chunks are written as they are', async (t) => {
  const raw = '{"id":"u1","choices":[]}';
  t.equal(encodeChunk({} as ChatCompletionChunk, raw), `data: ${raw}\n\n`);
  const chunk: ChatCompletionChunk = {
    id: 'c',
    object: 'chat.completion.chunk',
    created: 1,
    model: 'm',
    choices: [{ index: 0, delta: { content: 'a\nb' }, finish_reason: null }],
  };
  t.equal(encodeChunk(chunk), `data: ${JSON.stringify(chunk)}\n\n`);
  t.same(roundTrip(encodeChunk(chunk)), [JSON.stringify(chunk)], 'a newline inside a string is escaped by JSON');
});
