import type { ServerResponse } from 'node:http';
import type { FormatFrames, MockAnswer } from './formats.js';
import type { MockStream } from './mock-stream.js';
import type { MockCall, ToolFrames } from './tool-frames.js';
import { mockToken } from './text.js';

// How the mock writes an answer (SPEC §8): text at the controls' pace, with
// the fault asked for at the token asked for; or tool calls.

const QUIRKS_PIECE_BYTES = 3;

/**
 * A text answer: `pieces` when given (JSON mode: the JSON text in pieces,
 * never cut by max_tokens, so it stays valid), else `tokens` mock words.
 */
export async function answerText(
  res: ServerResponse,
  stream: MockStream,
  frames: FormatFrames,
  a: MockAnswer,
  options: { maxTokens: number | undefined; isStream: boolean; pieces?: string[] },
): Promise<void> {
  const c = stream.controls;
  const { maxTokens, isStream } = options;
  if (c.fault === 'status' || (c.fault === 'error' && !isStream))
    return json(res, c.status, frames.errorBody(c.status, `mock upstream error ${c.status}`));
  const tokens = options.pieces?.length ?? (maxTokens !== undefined && maxTokens < c.tokens ? maxTokens : c.tokens);
  const finish = tokens < c.tokens && options.pieces === undefined ? 'length' : c.finish;
  const piece = (i: number): string => options.pieces?.[i] ?? mockToken(i, c.tokenSize);
  a.sent = [];
  if (!isStream) {
    await pause(stream, c.firstByteMs + c.intervalMs * tokens);
    if (await fault(stream, frames, a, Math.min(c.after, c.tokens), false)) return;
    for (let i = 0; i < tokens; i++) a.sent.push(piece(i));
    return json(res, 200, frames.completion(a, a.sent.join(''), tokens, finish));
  }
  res.writeHead(200, { 'content-type': frames.streamContentType, 'cache-control': 'no-cache' });
  res.flushHeaders();
  // 3-byte pieces split every multi-byte character of the vocabulary somewhere.
  const write = (text: string): Promise<void> =>
    c.framing === 'quirks' ? stream.writeInPieces(text, QUIRKS_PIECE_BYTES) : stream.write(text);
  await pause(stream, c.firstByteMs);
  await write(frames.start(a));
  for (let i = 0; i < tokens; i++) {
    if (await fault(stream, frames, a, i, true)) return;
    await pause(stream, c.intervalMs);
    a.sent.push(piece(i));
    await write(frames.token(a, piece(i)));
    if (stream.isClosed) return;
  }
  if (await fault(stream, frames, a, tokens, true)) return;
  await write(frames.end(a, tokens, finish));
  res.end();
}

/** A tool-call answer: the calls' events at the controls' pace, with the fault asked for after `after` of them. */
export async function answerTools(
  res: ServerResponse,
  stream: MockStream,
  frames: { text: FormatFrames; tools: ToolFrames },
  a: MockAnswer,
  calls: MockCall[],
  isStream: boolean,
): Promise<void> {
  const c = stream.controls;
  if (c.fault === 'status' || (c.fault === 'error' && !isStream))
    return json(res, c.status, frames.text.errorBody(c.status, `mock upstream error ${c.status}`));
  const tokens = calls.reduce((n, call) => n + Math.max(1, Math.ceil(call.args.length / 4)), 0);
  if (!isStream) {
    await pause(stream, c.firstByteMs);
    if (await fault(stream, frames.text, a, 0, false, 0)) return;
    return json(res, 200, frames.tools.completion(a, calls, tokens));
  }
  res.writeHead(200, { 'content-type': frames.text.streamContentType, 'cache-control': 'no-cache' });
  res.flushHeaders();
  await pause(stream, c.firstByteMs);
  const events = frames.tools.stream(a, calls, tokens);
  // The fault comes after `after` of the answer's events (an agent's stream cut midway through its calls).
  const at = Math.min(c.after, events.length);
  for (const [i, event] of events.entries()) {
    if (await fault(stream, frames.text, a, i, true, at)) return;
    await pause(stream, c.intervalMs);
    await stream.write(event);
    if (stream.isClosed) return;
  }
  if (await fault(stream, frames.text, a, events.length, true, at)) return;
  res.end();
}

/**
 * An answer that is one JSON document (embeddings): after the first-byte delay, with the fault asked for (`error` is
 * answered as `status`, as any answer not streamed).
 */
export async function answerJson(
  res: ServerResponse,
  stream: MockStream,
  frames: FormatFrames,
  a: MockAnswer,
  value: () => unknown,
): Promise<void> {
  const c = stream.controls;
  if (c.fault === 'status' || c.fault === 'error')
    return json(res, c.status, frames.errorBody(c.status, `mock upstream error ${c.status}`));
  await pause(stream, c.firstByteMs);
  if (await fault(stream, frames, a, 0, false, 0)) return;
  return json(res, 200, value());
}

/**
 * Applies the stream's fault when `sent` tokens (or tool-call events) went out, `at` being where it comes. True: the
 * answer is over (or stalls forever).
 */
async function fault(
  stream: MockStream,
  frames: FormatFrames,
  a: MockAnswer,
  sent: number,
  isStream: boolean,
  at = Math.min(stream.controls.after, stream.controls.tokens),
): Promise<boolean> {
  const c = stream.controls;
  if (c.fault === 'none' || sent !== at || stream.isClosed) return stream.isClosed;
  switch (c.fault) {
    case 'stall':
      return true; // the connection stays open until the client gives up
    case 'reset':
      stream.reset();
      return true;
    case 'close':
      stream.cut();
      return true;
    case 'malformed':
      if (!isStream) return false;
      await stream.write(frames.malformed(a));
      return false;
    case 'long-line':
      if (!isStream) return false;
      await stream.write(frames.longLine(a, c.lineBytes));
      return false;
    case 'error':
      await stream.write(frames.errorEvent(a, c.status, `mock upstream error ${c.status}`));
      stream.end();
      return true;
    default:
      return false;
  }
}

function pause(stream: MockStream, ms: number): Promise<void> {
  if (ms <= 0 || stream.isClosed) return Promise.resolve();
  return new Promise((resolve) => {
    const done = (): void => {
      clearTimeout(timer);
      stream.off('close', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    stream.once('close', done);
  });
}

export function json(res: ServerResponse, status: number, value: unknown): void {
  const body = JSON.stringify(value);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
  res.end(body);
}
