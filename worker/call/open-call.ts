import type { ServerResponse } from 'node:http';
import { createStreamState, type EndpointKind } from '../types.js';
import type { UpstreamAdapter } from '../upstream/format-adapter.js';
import { chatConsumer } from '../upstream/pipeline.js';
import { CompletionAggregator } from '../chat/aggregate.js';
import type { PreparedCall } from './prepare.js';
import { SseWriter } from '../chat/sse-writer.js';
import { GraygateError } from '../../shared/errors.js';
import {
  isError,
  checkWholeAnswerJson,
  notJsonObject,
  upstreamErrorMessage,
  upstreamStreamError,
  withoutBom,
} from '../upstream/format-adapter.js';
import { isUtf8 } from 'node:buffer';
import { usageOf } from '../relay/usage-tail.js';
import { BytesRelay } from '../relay/bytes-relay.js';
import { SseRelay } from '../relay/sse-relay.js';
import type { OpenedCall } from './call-response.js';
import { CollectedBody, JsonAnswer } from './json-answer.js';
import type { DirectRoute } from '../direct/direct-answer.js';
import type { ByteBudget } from '../../shared/byte-budget.js';
import { AnswerShare } from './answer-share.js';

// Which reader and which writer an upstream call gets (SPEC §5, §12):
//   chat, stream         upstream events → OpenAI chunks → SSE
//   chat, not streamed   OpenAI upstream's whole JSON, checked → the same bytes; the others' events → OpenAI
//                        chunks → one chat.completion
//   relay, stream        OpenAI upstream's events → the same events (completions, responses)
//   relay, not streamed  OpenAI upstream's JSON → the same bytes (embeddings, completions, responses)
//   converted answer     the upstream's whole JSON → OpenAI's (Ollama embeddings)

/**
 * Largest answer held whole, bytes: an upstream answer converted at once (64 MiB holds 2 048 embeddings of 3 072
 * dimensions as JSON), and what a non-streamed chat answer joins in memory (chat/aggregate.ts; unbounded, one took a
 * worker, and every stream on it, down). All of a worker's at once: limits.maxBufferedAnswerBytes (its `answers`);
 * one answer may hold the whole of a smaller budget, so that it is refused for its own size, not for a 503 that a
 * retry meets again.
 */
const MAX_WHOLE_ANSWER_BYTES = 64 * 1024 * 1024;

export interface OpenCallOptions {
  kind: EndpointKind;
  call: PreparedCall;
  adapter: UpstreamAdapter;
  res: ServerResponse;
  /** Extra response headers (e.g. x-request-id). */
  headers: Record<string, string>;
  /** Chat: the answer's id and creation time (unix seconds). */
  id: string;
  created: number;
  /** Monotonic clock in ms. */
  now: () => number;
  /** The first content of a stream went out, at this `now()` reading. */
  onFirstToken: (atMs: number) => void;
  /** limits.directStreams: the master offered the client's connection for a streamed answer. */
  direct?: DirectRoute | undefined;
  /** What all answers held whole may hold at once (limits.maxBufferedAnswerBytes). */
  answers: ByteBudget;
}

type AnswerUsage = { prompt_tokens: number; completion_tokens: number } | undefined;

/**
 * An upstream answer held whole (bounded: `tooLarge` past MAX_WHOLE_ANSWER_BYTES) and turned into the client's by
 * `convert` once complete: nothing goes out before, so any failure still gets a real status.
 */
function wholeAnswer(
  options: Pick<OpenCallOptions, 'res' | 'headers' | 'answers'>,
  tooLarge: 'upstream_protocol_error' | 'answer_too_large',
  convert: (bytes: Buffer) => { body: Buffer; usage: AnswerUsage },
): OpenedCall {
  const { res, headers, answers } = options;
  const share = AnswerShare.take(answers);
  const maxBytes = Math.min(MAX_WHOLE_ANSWER_BYTES, answers.limitBytes);
  const collected =
    tooLarge === 'answer_too_large'
      ? new CollectedBody({ maxBytes, tooLarge, hint: '; ask for it with stream: true', share })
      : // An answer converted whole (Ollama embeddings) past a budget set under 64 MiB is too large for this gateway,
        // not the upstream's fault.
        new CollectedBody({
          maxBytes,
          ...(maxBytes < MAX_WHOLE_ANSWER_BYTES
            ? { tooLarge: 'answer_too_large', hint: ', what limits.maxBufferedAnswerBytes lets a worker hold' }
            : { tooLarge }),
          share,
        });
  let usage: AnswerUsage;
  const build = (): Buffer => {
    const answer = convert(collected.bytes());
    usage = answer.usage;
    return answer.body;
  };
  return {
    consumer: collected,
    response: new JsonAnswer({ res, headers, build, contentChunks: () => (usage === undefined ? 0 : 1) }),
    usage: () => usage,
    share,
  };
}

/**
 * A non-streamed chat answer of an OpenAI upstream, asked for whole (upstream/openai.ts), checked (SPEC §5: one
 * chat.completion; an error body or a page that is not JSON gets a real error status) and sent as the bytes it came
 * in (audio, legacy function_call: the upstream's own).
 */
function checkedOpenAIChat(whole: Buffer): { body: Buffer; usage: AnswerUsage } {
  // A leading byte-order mark (which fetch's json() skips) is not sent on: JSON has none (RFC 8259 §8.1).
  const bytes = withoutBom(whole);
  checkWholeAnswerJson(bytes, 'the upstream answered with JSON that');
  const text = bytes.toString('utf8');
  let value: unknown;
  try {
    value = JSON.parse(text);
  } catch {
    value = undefined;
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw notJsonObject(text);
  const answer = value as Record<string, unknown>;
  if (isError(answer['error'])) throw upstreamStreamError(upstreamErrorMessage(text));
  if (!Array.isArray(answer['choices']))
    throw new GraygateError('upstream_protocol_error', 'the upstream answered without a choices array');
  const usage = answer['usage'];
  return {
    // Sent as it came, unless its bytes are not UTF-8 (the JSON says so in its content-type): then as decoded, with
    // U+FFFD for what was not, as the streamed and converted answers are (strict decoders refuse the raw bytes).
    body: isUtf8(bytes) ? bytes : Buffer.from(text),
    usage: usageOf(typeof usage === 'object' && usage !== null ? (usage as Record<string, unknown>) : undefined),
  };
}

export function openCall(options: OpenCallOptions): OpenedCall {
  const { kind, call, adapter, res, headers } = options;
  const stream = { res, headers, now: options.now, onFirstToken: options.onFirstToken, direct: options.direct };
  if (kind === 'chat') {
    const state = createStreamState({
      id: options.id,
      created: options.created,
      model: call.request.model,
      choices: call.choices,
    });
    if (call.isStream) {
      const writer = new SseWriter({ ...stream, includeUsage: call.includeUsage });
      const consumer = chatConsumer(adapter, state, writer);
      // An OpenAI upstream's plain chunks go out as they came (issue 10): their first choice means the role went out.
      if (adapter.format === 'openai') {
        consumer.plainChunk = (chunk) => {
          if (!writer.relayPlain(chunk)) return false;
          state.isRoleSent = true;
          return true;
        };
      }
      return { consumer, response: writer, usage: () => state.usage };
    }
    if (adapter.format === 'openai') return wholeAnswer(options, 'answer_too_large', checkedOpenAIChat);
    const share = AnswerShare.take(options.answers);
    const maxHeld = Math.min(MAX_WHOLE_ANSWER_BYTES, options.answers.limitBytes);
    const aggregator = new CompletionAggregator({ maxHeld, share });
    const build = (): Buffer => Buffer.from(JSON.stringify(aggregator.toCompletion()));
    return {
      consumer: chatConsumer(adapter, state, aggregator),
      response: new JsonAnswer({ res, headers, build, contentChunks: () => aggregator.contentChunks }),
      usage: () => state.usage,
      share,
    };
  }
  const convert = adapter.convertAnswer;
  if (convert !== undefined) {
    return wholeAnswer(options, 'upstream_protocol_error', (bytes) =>
      convert(kind, bytes, { encoding: call.encoding, inputs: call.choices }),
    );
  }
  if (call.isStream && kind !== 'embeddings') {
    const relay = new SseRelay({ ...stream, kind, includeUsage: call.includeUsage, choices: call.choices });
    return { consumer: relay.consumer, response: relay, usage: () => relay.usage() };
  }
  const relay = new BytesRelay({ res, headers });
  return { consumer: relay, response: relay, usage: () => relay.usage() };
}
