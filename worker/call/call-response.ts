import type { CallOutput } from '../types.js';
import type { BodyConsumer } from '../upstream/pipeline.js';
import type { AnswerShare } from './answer-share.js';

// The two halves of one upstream call as the handler drives them (SPEC §5,
// §12): what reads the upstream's body and what writes the client's answer.
// Chat streams, chat aggregates, relayed events, relayed bytes and converted
// answers all take this shape (call/open-call.ts picks one).

export interface CallResponse extends CallOutput {
  /** The status went out: a failure now ends the answer in place (STYLE §9). */
  readonly isCommitted: boolean;
  /** Bytes written to the client. */
  readonly bytesOut: number;
  /** Content pieces sent (tokens when the upstream reports no usage). */
  readonly contentChunks: number;
  /** Streams: clock reading of the first content written. */
  readonly firstTokenAtMs?: number | undefined;
  /** Streams: the mean ms between content events after the first, less waits on the client; NaN with fewer than two. */
  readonly timePerTokenMs?: number;
  /** Streams: the most the answer held unsent. */
  readonly peakBufferedBytes?: number;
  /** The upstream finished: write what is left and end the answer. */
  complete(): void;
  /** The upstream failed after the status went out: a final SSE error event, or a reset. */
  failAfterCommit(err: unknown): void;
}

export interface OpenedCall {
  consumer: BodyConsumer;
  response: CallResponse;
  /** The tokens the upstream reported, once the call is over (the metrics and the log line). */
  usage(): { prompt_tokens: number; completion_tokens: number } | undefined;
  /** An answer held whole: what it took of its worker's budget, given back once the call is over. */
  share?: AnswerShare;
}
