import type { IncomingHttpHeaders } from 'node:http';

// What a request asks the mock upstream to do (SPEC §8). Set per request by
// `x-mock-*` headers, or, when the request comes through the gateway (which
// does not forward such headers), by a directive in the last message's text:
//   [mock tokens=50 interval-ms=5 fault=stall after=3 framing=quirks]
//   [mock tools=get_weather,get_time args={"city":"Paris"}]
// Headers win over the directive, the directive over the server's defaults.

export type MockFault = 'none' | 'stall' | 'reset' | 'close' | 'malformed' | 'status' | 'long-line' | 'error';

const FAULTS: ReadonlySet<string> = new Set<MockFault>([
  'none',
  'stall',
  'reset',
  'close',
  'malformed',
  'status',
  'long-line',
  'error',
]);

export interface MockControls {
  /** Tokens in the answer. */
  tokens: number;
  /** Pause before each token, ms; 0 writes as fast as the client reads. */
  intervalMs: number;
  /** Minimum size of each token in UTF-16 units (see mockToken); 0: the plain words. */
  tokenSize: number;
  /** Delay between the response headers and the first body byte, ms (a slow first byte). */
  firstByteMs: number;
  /**
   * stall: stop writing, keep the connection open; reset: TCP RST; close: end
   * the connection without finishing the body; malformed: a line that is not
   * JSON; long-line: one line of `lineBytes` bytes; status: answer `status` at
   * once with the format's error body; error: the format's in-stream error
   * event for `status` (Anthropic's `event: error`, Ollama's `{"error":…}`
   * line), then the end of the stream (not streamed: as status).
   */
  fault: MockFault;
  /** Tokens sent before the fault. */
  after: number;
  /** Status for fault=status and fault=error. */
  status: number;
  /** Size of the fault=long-line line, bytes. */
  lineBytes: number;
  /** Line ending of the stream: `\n`, `\r\n` or `\r`. */
  newline: '\n' | '\r\n' | '\r';
  /**
   * plain: one `data:` line per event, the `newline` ending. quirks (issue 9
   * part 6): every framing the formats allow at once. SSE: comments, `event:`
   * without its space, id and retry fields, JSON spread over several `data:`
   * lines with and without the space, CRLF, CR and LF endings changing from
   * event to event. NDJSON: CRLF endings, blank lines between documents, the
   * last one without a newline. Both: the body written a few bytes at a time,
   * so UTF-8 characters are split across network chunks. Overrides `newline`.
   */
  framing: 'plain' | 'quirks';
  /** finish_reason the answer ends with (also `length` when max_tokens cut it). */
  finish: 'stop' | 'length';
  /**
   * Answer with calls of these tools (several: parallel calls), each of which
   * must be among the request's tools (else a 400, as a real upstream would
   * never call an unknown tool). Empty: a text answer, unless the request
   * forces a tool (tool_choice required / a named tool).
   */
  tools: string[];
  /** The arguments of every call, as JSON without spaces; default: a value made from the tool's schema. */
  args: string | undefined;
}

export const DEFAULT_CONTROLS: MockControls = {
  tokens: 20,
  intervalMs: 0,
  tokenSize: 0,
  firstByteMs: 0,
  fault: 'none',
  after: 1,
  status: 500,
  lineBytes: 2 * 1024 * 1024,
  newline: '\n',
  framing: 'plain',
  finish: 'stop',
  tools: [],
  args: undefined,
};

const DIRECTIVE = /\[mock ([^\]]*)\]/;
const NEWLINES: Record<string, MockControls['newline']> = { lf: '\n', crlf: '\r\n', cr: '\r' };

/**
 * Reads controls from the headers and the last message text, over `defaults`. Unknown or invalid values are ignored.
 */
export function readControls(
  headers: IncomingHttpHeaders,
  lastMessageText: string,
  defaults: MockControls,
): MockControls {
  const controls = { ...defaults };
  const match = DIRECTIVE.exec(lastMessageText);
  if (match !== null) {
    for (const pair of match[1]!.trim().split(/\s+/)) {
      const eq = pair.indexOf('=');
      if (eq > 0) apply(controls, pair.slice(0, eq), pair.slice(eq + 1));
    }
  }
  for (const [name, value] of Object.entries(headers)) {
    if (name.startsWith('x-mock-') && typeof value === 'string') apply(controls, name.slice('x-mock-'.length), value);
  }
  return controls;
}

function apply(controls: MockControls, key: string, value: string): void {
  const n = Number(value);
  const isCount = Number.isInteger(n) && n >= 0;
  switch (key) {
    case 'tokens':
      if (isCount) controls.tokens = n;
      break;
    case 'interval-ms':
      if (isCount) controls.intervalMs = n;
      break;
    case 'token-size':
      if (isCount) controls.tokenSize = n;
      break;
    case 'first-byte-ms':
      if (isCount) controls.firstByteMs = n;
      break;
    case 'after':
      if (isCount) controls.after = n;
      break;
    case 'status':
      if (isCount && n >= 100 && n <= 599) controls.status = n;
      break;
    case 'line-bytes':
      if (isCount) controls.lineBytes = n;
      break;
    case 'fault':
      if (FAULTS.has(value)) controls.fault = value as MockFault;
      break;
    case 'newline':
      if (Object.hasOwn(NEWLINES, value)) controls.newline = NEWLINES[value]!; // own keys: not `constructor`
      break;
    case 'finish':
      if (value === 'stop' || value === 'length') controls.finish = value;
      break;
    case 'framing':
      if (value === 'plain' || value === 'quirks') controls.framing = value;
      break;
    case 'tools':
      controls.tools = value.split(',').filter((name) => name !== '');
      break;
    case 'args':
      if (isJsonObject(value)) controls.args = value;
      break;
    default:
      break;
  }
}

function isJsonObject(text: string): boolean {
  try {
    const value = JSON.parse(text) as unknown;
    return typeof value === 'object' && value !== null && !Array.isArray(value);
  } catch {
    return false;
  }
}
