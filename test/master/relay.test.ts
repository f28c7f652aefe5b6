import t from 'tap';
import {
  FirstContent,
  hasContentEvent,
  LastEventHead,
  spansContentKey,
  timePerTokenOf,
  isFailedByTrailer,
} from '../../master/relay.js';
import { SequenceNumbers } from '../../master/sequence-numbers.js';
import { toResponsesErrorEvent, toSseErrorEvent, GraygateError } from '../../shared/errors.js';

// What the master reads in a relayed SSE stream (SPEC §11 outcomes), as a case table.

t.test('hasContentEvent', async (t) => {
  const cases: Array<[string, boolean]> = [
    ['data: {"choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n', false],
    ['data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n', true],
    [
      'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\ndata: {"choices":[{"delta":{"content":"x"}}]}\n\n',
      true,
    ],
    ['data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\n\n', true],
    ['data: {"choices":[{"delta":{"content":"","reasoning":"think"}}]}\n\n', true],
    ['data: {"choices":[{"delta":{"reasoning":""}}]}\n\n', false],
    ['data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n', true],
    ['data: {"choices":[{"text":"legacy","index":0}]}\n\n', true],
    ['data: {"type":"response.output_text.delta","delta":"hi"}\n\n', true],
    [': ping\n\n', false],
    ['data: [DONE]\n\n', false],
  ];
  for (const [chunk, want] of cases) t.equal(hasContentEvent(Buffer.from(chunk)), want, chunk.slice(0, 60));
});

t.test('spansContentKey: a content key the reads cut, wherever they cut it', async (t) => {
  const events = [
    'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
    'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n',
    'data: {"choices":[{"text":"legacy","index":0}]}\n\n',
    'data: {"type":"response.output_text.delta","delta":"hi"}\n\n',
  ];
  // A probe: `"content":"` cut across two reads was content in neither, and the stream's first token was taken late.
  for (const event of events) {
    const bytes = Buffer.from(event);
    for (let at = 1; at < bytes.length; at++) {
      const [previous, chunk] = [bytes.subarray(0, at), bytes.subarray(at)];
      const found = hasContentEvent(previous) || hasContentEvent(chunk) || spansContentKey(previous, chunk);
      // Cut right after a text key's opening quote, its first character is in the chunk: found there.
      if (!found) t.fail(`${event.trim()} cut at ${at}: no content found`);
    }
  }
  const empty = Buffer.from('data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n');
  for (let at = 1; at < empty.length; at++) {
    const [previous, chunk] = [empty.subarray(0, at), empty.subarray(at)];
    if (spansContentKey(previous, chunk)) t.fail(`the role chunk's empty content cut at ${at} is content`);
  }
  t.notOk(spansContentKey(undefined, Buffer.from('"content":"x')), 'nothing before');
  t.ok(spansContentKey(Buffer.from('"reasoning_'), Buffer.from('content":"x"')), "reasoning is the model's output");
  t.pass('every cut');
});

t.test('FirstContent: a content key cut over three reads is found where its content begins', async (t) => {
  // The relay looked only at the read before for the seam: a key cut over three reads (a read of a byte or two in
  // its middle, or one that is only the key's end) was content in none of them, and a one-token answer had no first
  // token at all.
  const streams = [
    'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n' +
      'data: {"choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n',
    'data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n',
    'data: {"choices":[{"text":"legacy","index":0}]}\n\n',
    'event: response.content_part.added\ndata: {"type":"response.content_part.added","part":{"text":""}}\n\n' +
      'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","delta":"hi"}\n\n',
  ];
  const keys = ['"content":"', '"text":"', '"delta":"'];
  for (const stream of streams) {
    const bytes = Buffer.from(stream);
    // The byte at which the stream first holds content: a text key's first character, or the tool-call key's end.
    let known = stream.indexOf('"tool_calls":[') === -1 ? Infinity : stream.indexOf('"tool_calls":[') + 13;
    for (const key of keys)
      for (let at = stream.indexOf(key); at !== -1; at = stream.indexOf(key, at + 1))
        if (stream[at + key.length] !== '"') known = Math.min(known, at + key.length);
    let misses = 0;
    for (let a = 1; a < bytes.length; a++) {
      for (let b = a + 1; b < bytes.length; b++) {
        const reads = [bytes.subarray(0, a), bytes.subarray(a, b), bytes.subarray(b)];
        const first = new FirstContent();
        let end = 0;
        let found = -1;
        for (const read of reads) {
          end += read.length;
          if (first.push(read)) {
            found = end;
            break;
          }
        }
        const want = known < a ? a : known < b ? b : bytes.length;
        if (found !== want && misses++ < 3)
          t.equal(found, want, `${stream.slice(0, 40)}… read as ${a}, ${b - a}, rest`);
      }
    }
    t.equal(misses, 0, `${stream.slice(0, 40)}…: every cut in three reads`);
  }
  const oneByte = new FirstContent();
  const role = 'data: {"choices":[{"delta":{"role":"assistant","content":""}}]}\n\n';
  t.notOk(
    [...Buffer.from(role)].some((byte) => oneByte.push(Buffer.from([byte]))),
    "the role chunk's empty content, a byte a read, is not content",
  );
});

/** Whether a stream relayed as `chunks` ended with its error event, as the master reads it at the stream's end. */
function endsWithErrorEvent(...chunks: string[]): boolean {
  const head = new LastEventHead();
  for (const chunk of chunks) head.push(Buffer.from(chunk));
  return head.isErrorEvent;
}

t.test('LastEventHead: whether the last event of a stream is its error event', async (t) => {
  t.ok(endsWithErrorEvent(toSseErrorEvent(new GraygateError('upstream_reset'))));
  t.ok(endsWithErrorEvent('data: {"choices":[]}\n\n' + toSseErrorEvent(new GraygateError('worker_error'))));
  t.notOk(
    endsWithErrorEvent('data: {"choices":[{"delta":{"content":"{\\"error\\":1}"}}]}\n\n'),
    'escaped text is not an event',
  );
  t.notOk(endsWithErrorEvent(), 'nothing relayed');
  t.notOk(endsWithErrorEvent('data: {"choices":[]}\n\n', 'data: [DONE]\n\n'));
  t.notOk(endsWithErrorEvent(toSseErrorEvent(new GraygateError('upstream_reset')), 'data: [DONE]\n\n'), 'not the last');
  // A Responses stream's: graygate's own (a review found its failures counted as successes, the canary's too), an
  // upstream's `error` and `response.failed`.
  t.ok(endsWithErrorEvent(toResponsesErrorEvent(new GraygateError('upstream_reset'), 3)));
  t.ok(endsWithErrorEvent('event: response.failed\ndata: {"type":"response.failed","response":{}}\n\n'));
  t.notOk(endsWithErrorEvent('event: response.completed\ndata: {"type":"response.completed"}\n\n'));
  // Its `type` last, as servers that build their events from openai-python's types write it (a probe).
  t.ok(endsWithErrorEvent('event: error\ndata: {"code":"server_error","message":"boom","type":"error"}\n\n'));
  t.ok(endsWithErrorEvent('event: response.failed\ndata: {"response":{},"type":"response.failed"}\n\n'));
});

t.test('LastEventHead: the error event whatever reads it came in', async (t) => {
  // The master reads the worker in pieces cut anywhere (64 KiB when a slow client backs the stream up): an event
  // longer than a read, or split far from its start, was taken for a success when only the last two reads and a few
  // bytes of their seam were looked at (a probe: an upstream's 150 KB `response.failed`, and one read in 13 of an
  // error event quoting an 8,000-character message).
  const before = 'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n';
  const events = [
    toSseErrorEvent(new GraygateError('upstream_status', `the upstream reported an error: ${'错误'.repeat(4000)}`)),
    `event: response.failed\ndata: ${JSON.stringify({ type: 'response.failed', response: { output: 'x'.repeat(150_000) } })}\n\n`,
    toResponsesErrorEvent(new GraygateError('upstream_reset'), 7),
  ];
  for (const event of events) {
    const stream = Buffer.from(before + event);
    for (const step of [1, 7, 64, 65_536]) {
      const chunks: string[] = [];
      for (let at = 0; at < stream.length; at += step) chunks.push(stream.subarray(at, at + step).toString('latin1'));
      const head = new LastEventHead();
      for (const chunk of chunks) head.push(Buffer.from(chunk, 'latin1'));
      t.ok(head.isErrorEvent, `${event.slice(0, 24)}… in reads of ${step}`);
    }
    const seam = before.length + 40;
    const cut = new LastEventHead();
    cut.push(stream.subarray(0, seam));
    cut.push(stream.subarray(seam));
    t.ok(cut.isErrorEvent, `${event.slice(0, 24)}… cut 40 bytes into it`);
  }
  const ok = new LastEventHead();
  for (const chunk of [before, '\n', 'data: [DONE]', '\n', '\n']) ok.push(Buffer.from(chunk));
  t.notOk(ok.isErrorEvent, 'a stream that ended well, its blank lines split');
});

t.test('LastEventHead: events framed with CRLF or CR, as SSE reads them', async (t) => {
  // A worker `entry` is any module: one that frames its events with CRLF (or CR) had its final error event taken for
  // a success (no LF pair ever began an event); the last-two-reads scan before it found them.
  const content = 'data: {"choices":[{"delta":{"content":"hi"}}]}';
  const errors = ['data: {"error":{"code":"upstream_reset"}}', 'event: error\ndata: {"type":"error"}'];
  for (const eol of ['\r\n', '\r']) {
    const frame = (event: string): string => event.split('\n').join(eol) + eol + eol;
    for (const error of errors) {
      const stream = Buffer.from(frame(content) + frame(': ping') + frame(error));
      const done = Buffer.from(frame(content) + frame(error) + frame('data: [DONE]'));
      for (const step of [1, 2, 3, 7, stream.length]) {
        const failed = new LastEventHead();
        for (let at = 0; at < stream.length; at += step) failed.push(stream.subarray(at, at + step));
        t.ok(failed.isErrorEvent, `${JSON.stringify(eol)}: ${error.slice(0, 14)}… in reads of ${step}`);
        const ok = new LastEventHead();
        for (let at = 0; at < done.length; at += step) ok.push(done.subarray(at, at + step));
        t.notOk(ok.isErrorEvent, `${JSON.stringify(eol)}: [DONE] after it, in reads of ${step}`);
      }
    }
  }
  // CR | LF across reads is one line end, not an empty line: the event goes on.
  const split = new LastEventHead();
  for (const read of ['data: {"error":{}}\r', '\n', 'data: x\r', '\n\r\n']) split.push(Buffer.from(read));
  t.ok(split.isErrorEvent, 'a CRLF cut between reads ends one line');
});

t.test('SequenceNumbers: one past the last event a Responses stream sent, cut anywhere', async (t) => {
  const delta = (n: number | string, sep = ':'): string =>
    `event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number"${sep}${n},"delta":"a"}\n\n`;
  const numbered = (reads: readonly string[]): number => {
    const numbers = new SequenceNumbers();
    for (const read of reads) numbers.push(Buffer.from(read));
    return numbers.next;
  };
  const stream = delta(41) + delta(42);
  t.equal(numbered([stream]), 43);
  t.equal(numbered([]), 0, 'nothing numbered yet: 0');
  // A review: the last read alone was looked at, and a `: ping` after the events has no number (it said 0).
  t.equal(numbered([stream, ': ping\n\n', ': ping\n\n']), 43, 'pings after the events change nothing');
  // Cut at every byte, and read a byte at a time: the same number.
  for (let cut = 1; cut < stream.length; cut++)
    t.equal(numbered([stream.slice(0, cut), stream.slice(cut)]), 43, `cut at ${cut}`);
  t.equal(numbered([...stream]), 43, 'a byte a read');
  // Its digits cut: the number waits for the read that ends it (it said 2 for 1|2).
  t.equal(numbered([delta(41) + delta(12).slice(0, delta(12).indexOf('2,')), '2,"delta":"a"}\n\n']), 13);
  // The upstream's JSON, spaces and all (a Python server's `"sequence_number": 12` said 1).
  t.equal(numbered([delta(' 12', ' :')]), 13, 'JSON whitespace around the colon');
  t.equal(numbered([delta(41) + delta('\t7')]), 8);
  // A schema echoed in a response names the key with no number after it: not a number.
  const schema =
    'data: {"type":"response.created","sequence_number":5,"response":{"tools":[{"parameters":{"properties":{"sequence_number":{"type":"integer"}}}}]}}\n\n';
  t.equal(numbered([schema]), 6, "a schema's property is not a number");
  // Past JSON's exact integers: not a number (400 digits were Infinity, written as null).
  t.equal(numbered([delta(7) + delta('9'.repeat(400))]), 8);
  t.match(
    toResponsesErrorEvent(new GraygateError('worker_error'), 43),
    /^event: error\ndata: \{"type":"error","code":"worker_error","message":".*","param":null,"sequence_number":43\}\n\n$/,
  );
});

t.test("timePerTokenOf: the worker's trailer, read as a bounded number or not at all", async (t) => {
  t.equal(timePerTokenOf(['X-Graygate-Time-Per-Token-Ms', '21.350']), 21.35, 'any case of the name');
  t.equal(timePerTokenOf(['other', '1', 'x-graygate-time-per-token-ms', '0']), 0);
  t.equal(timePerTokenOf(['x-graygate-time-per-token-ms', '1800000.000']), 1_800_000, 'the sketches’ ceiling');
  for (const bad of ['', '-1', '1e3', '0x10', ' 5', '5.', '1.2345', 'NaN', 'Infinity', '99999999999', '1800001'])
    t.ok(Number.isNaN(timePerTokenOf(['x-graygate-time-per-token-ms', bad])), JSON.stringify(bad));
  t.ok(Number.isNaN(timePerTokenOf([])), 'no trailer');
  t.ok(Number.isNaN(timePerTokenOf(['x-graygate-time-per-token-ms'])), 'a name without its value');
});

t.test('endsAtEventBoundary: an error event may follow what was relayed only after a blank line', async (t) => {
  const { endsAtEventBoundary } = await import('../../master/relay.js');
  const b = (s: string): Buffer => Buffer.from(s, 'latin1');
  const cases: Array<[string | undefined, string | undefined, boolean]> = [
    [undefined, undefined, true], // the head only: nothing of the body relayed
    [undefined, 'data: {"choices":[]}\n\n', true],
    [undefined, ': ping\n\n', true],
    [undefined, 'data: x\r\n\r\n', true],
    [undefined, 'data: x\r\r', true],
    [undefined, 'data: x\n\r', true],
    [undefined, 'data: x\r\n\r', true], // CR ends the blank line; the LF that may follow is ignored
    [undefined, 'data: {"choices":[{"delta":{"content":"hal', false],
    [undefined, 'data: x\n', false], // the line ended, the event did not
    [undefined, 'data: x\r\n', false],
    [undefined, 'data: x\r', false],
    [undefined, '\n', false], // too short to tell: a reset, never a glued event
    ['data: x\n', '\n', true], // the blank line's end in the last read
    ['data: x\r\n\r', '\n', true],
    ['data: x\r\n', '\r\n', true],
    ['data: x', '\n', false],
    ['data: x\n\n', 'data: y', false],
  ];
  for (const [previous, last, want] of cases)
    t.equal(
      endsAtEventBoundary(previous === undefined ? undefined : b(previous), last === undefined ? undefined : b(last)),
      want,
      JSON.stringify([previous, last]),
    );
});

t.test("isFailedByTrailer: the worker's word that a relayed stream failed", async (t) => {
  t.ok(isFailedByTrailer(['X-Graygate-Stream-Failed', '1']), 'any case of the name');
  t.ok(isFailedByTrailer(['x-graygate-time-per-token-ms', '1.000', 'x-graygate-stream-failed', '1']));
  t.notOk(isFailedByTrailer([]));
  t.notOk(isFailedByTrailer(['x-graygate-stream-failed', '0']));
  t.notOk(isFailedByTrailer(['x-graygate-stream-failed']), 'a name without its value');
});
