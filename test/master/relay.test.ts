import t from 'tap';
import { hasContentEvent, hasErrorEvent, nextSequenceNumber, timePerTokenOf } from '../../master/relay.js';
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
    ['data: {"choices":[{"delta":{"reasoning_content":"think"}}]}\n\n', false],
    ['data: {"choices":[{"delta":{"tool_calls":[{"index":0}]}}]}\n\n', true],
    ['data: {"choices":[{"text":"legacy","index":0}]}\n\n', true],
    ['data: {"type":"response.output_text.delta","delta":"hi"}\n\n', true],
    [': ping\n\n', false],
    ['data: [DONE]\n\n', false],
  ];
  for (const [chunk, want] of cases) t.equal(hasContentEvent(Buffer.from(chunk)), want, chunk.slice(0, 60));
});

t.test('hasErrorEvent', async (t) => {
  t.ok(hasErrorEvent(Buffer.from(toSseErrorEvent(new GraygateError('upstream_reset')))));
  t.ok(hasErrorEvent(Buffer.from('data: {"choices":[]}\n\n' + toSseErrorEvent(new GraygateError('worker_error')))));
  t.notOk(
    hasErrorEvent(Buffer.from('data: {"choices":[{"delta":{"content":"{\\"error\\":1}"}}]}\n\n')),
    'escaped text is not an event',
  );
  // A Responses stream's: graygate's own (a review found its failures counted as successes, the canary's too), an
  // upstream's `error` and `response.failed`.
  t.ok(hasErrorEvent(Buffer.from(toResponsesErrorEvent(new GraygateError('upstream_reset'), 3))));
  t.ok(hasErrorEvent(Buffer.from('event: response.failed\ndata: {"type":"response.failed","response":{}}\n\n')));
  t.notOk(hasErrorEvent(Buffer.from('event: response.completed\ndata: {"type":"response.completed"}\n\n')));
  // Its `type` last, as servers that build their events from openai-python's types write it (a probe).
  t.ok(hasErrorEvent(Buffer.from('event: error\ndata: {"code":"server_error","message":"boom","type":"error"}\n\n')));
  t.ok(hasErrorEvent(Buffer.from('event: response.failed\ndata: {"response":{},"type":"response.failed"}\n\n')));
});

t.test('nextSequenceNumber: one past the last event a Responses stream sent', async (t) => {
  const events =
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":41,"delta":"a"}\n\n' +
    'event: response.output_text.delta\ndata: {"type":"response.output_text.delta","sequence_number":42,"delta":"b"}\n\n';
  t.equal(nextSequenceNumber(Buffer.from(events)), 43);
  t.equal(nextSequenceNumber(Buffer.from(': ping\n\n')), 0);
  t.equal(nextSequenceNumber(undefined), 0);
  t.match(
    toResponsesErrorEvent(new GraygateError('worker_error'), 43),
    /^event: error\ndata: \{"type":"error","code":"worker_error","message":".*","param":null,"sequence_number":43\}\n\n$/,
  );
});

t.test('endsWithErrorEvent: in the last chunk, or across the last two', async (t) => {
  const { endsWithErrorEvent } = await import('../../master/relay.js');
  const event = toSseErrorEvent(new GraygateError('upstream_reset'));
  t.ok(endsWithErrorEvent(Buffer.from('data: {"choices":[]}\n\n'), Buffer.from(event)));
  t.ok(
    endsWithErrorEvent(Buffer.from(`data: {"choices":[]}\n\n${event.slice(0, 9)}`), Buffer.from(event.slice(9))),
    'split across reads',
  );
  t.notOk(endsWithErrorEvent(Buffer.from('data: {"choices":[]}\n\n'), Buffer.from('data: [DONE]\n\n')));
  t.notOk(endsWithErrorEvent(undefined, undefined));
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
