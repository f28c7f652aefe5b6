import t from 'tap';
import { LineDecoder } from '../../../worker/sse/line-decoder.js';

// SPEC §5: every fixture is cut at every byte offset (and into single bytes)
// and must give the same lines as when fed whole.

function decode(chunks: Buffer[], maxLineBytes = 1024): string[] {
  const lines: string[] = [];
  const decoder = new LineDecoder({ onLine: (l) => lines.push(l), maxLineBytes });
  for (const c of chunks) decoder.push(c);
  decoder.end();
  return lines;
}

const FIXTURES: Array<{ name: string; text: string; lines: string[] }> = [
  { name: 'LF', text: 'a\nbc\n\nd\n', lines: ['a', 'bc', '', 'd'] },
  { name: 'CRLF', text: 'a\r\nbc\r\n\r\nd\r\n', lines: ['a', 'bc', '', 'd'] },
  { name: 'CR', text: 'a\rbc\r\rd\r', lines: ['a', 'bc', '', 'd'] },
  { name: 'mixed endings', text: 'a\rb\nc\r\n\r\r\nd', lines: ['a', 'b', 'c', '', '', 'd'] },
  { name: 'multi-byte characters', text: 'wörld\r\n日本語\n🚀 ok\r€\n', lines: ['wörld', '日本語', '🚀 ok', '€'] },
  { name: 'last line without terminator', text: '{"a":1}\n{"b":"ü"}', lines: ['{"a":1}', '{"b":"ü"}'] },
  { name: 'empty', text: '', lines: [] },
  { name: 'CR then LF in separate lines', text: '\r\n\n\r', lines: ['', '', ''] },
];

for (const f of FIXTURES) {
  t.test(f.name, async (t) => {
    const bytes = Buffer.from(f.text, 'utf8');
    t.same(decode([bytes]), f.lines, 'whole');
    for (let cut = 0; cut <= bytes.length; cut++) {
      const got = decode([bytes.subarray(0, cut), bytes.subarray(cut)]);
      if (JSON.stringify(got) !== JSON.stringify(f.lines)) t.same(got, f.lines, `cut at ${cut}`);
      // An empty read between the two (a zero-length HTTP/2 DATA frame) is no read: it split a CRLF in two line ends.
      const gap = decode([bytes.subarray(0, cut), Buffer.alloc(0), bytes.subarray(cut)]);
      if (JSON.stringify(gap) !== JSON.stringify(f.lines)) t.same(gap, f.lines, `cut at ${cut}, an empty read between`);
    }
    t.same(decode([...bytes].map((b) => Buffer.from([b]))), f.lines, 'one byte at a time');
    t.pass(`every cut of ${bytes.length} bytes`);
  });
}

t.test('over-long line is an upstream_protocol_error, within one chunk or across chunks', async (t) => {
  const long = Buffer.from('x'.repeat(101) + '\n');
  t.throws(() => decode([long], 100), { code: 'upstream_protocol_error' });
  t.throws(() => decode([long.subarray(0, 60), long.subarray(60)], 100), { code: 'upstream_protocol_error' });
  // A line of exactly the limit is fine; the bound counts bytes, not characters.
  t.same(decode([Buffer.from('x'.repeat(100) + '\n')], 100), ['x'.repeat(100)]);
  t.throws(() => decode([Buffer.from('é'.repeat(51) + '\n')], 100), { code: 'upstream_protocol_error' });
  // Without a terminator the pending bytes are bounded too, before the line ever ends.
  const decoder = new LineDecoder({ onLine: () => undefined, maxLineBytes: 100 });
  decoder.push(Buffer.alloc(60, 0x61));
  t.throws(() => decoder.push(Buffer.alloc(60, 0x61)), { code: 'upstream_protocol_error' });
});

t.test('many lines in one big chunk are linear, not quadratic', async (t) => {
  // 200k lines of `data: x` with CRLF: a rescan per line would take seconds.
  const big = Buffer.from('data: x\r\n'.repeat(200_000));
  let n = 0;
  const decoder = new LineDecoder({ onLine: () => n++, maxLineBytes: 64 });
  decoder.push(big);
  decoder.end();
  t.equal(n, 200_000);
});

t.test('a long line that comes a byte per read, in a buffer the caller reuses, is whole', async (t) => {
  // A line held as one Buffer per read cost 106 MiB of heap for 1 MiB; the line is now copied into one buffer that
  // doubles as it fills (its memory is benchmarked, not asserted here). undici reuses its chunks' memory: copied.
  const text = 'data: {"x":"' + 'ab€'.repeat(20_000) + '"}';
  const bytes = Buffer.from(`${text}\r\ndata: y\n`);
  const lines: string[] = [];
  const decoder = new LineDecoder({ onLine: (l) => lines.push(l), maxLineBytes: Buffer.byteLength(text) });
  const reused = Buffer.alloc(1);
  for (const b of bytes) {
    reused[0] = b;
    decoder.push(reused);
  }
  decoder.end();
  t.same(lines, [text, 'data: y'], 'a line of exactly maxLineBytes, then the next');
  t.equal(decoder.isIdle, true);
});
