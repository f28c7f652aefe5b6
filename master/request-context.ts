import type { ClientRequest, IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import type { Lease } from './admission.js';
import type { WorkerHandle } from './worker-handle.js';
import type { VersionView } from './version.js';
import type { RoutingFacts } from './router.js';
import type { SequenceNumbers } from './sequence-numbers.js';

// The one per-request object the master's pipeline steps read and write
// (issue 9: proxy state used to travel in a module-level WeakMap and five
// places wrote error responses). Every field is set in the constructor so all
// contexts share one V8 shape; nothing here allocates per chunk.

/** Where a request is in the pipeline: read head → route → read body → admit → forward → relay → done. */
export type RequestPhase = 'head' | 'body' | 'queue' | 'worker' | 'relay' | 'done';

/** Its head or body still being read: not yet admitted for its version (admission is the `queue` phase on). */
export function isBeforeAdmission(phase: RequestPhase): boolean {
  return phase === 'head' || phase === 'body';
}

export const EMPTY_BODY = Buffer.alloc(0);

export class RequestContext {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
  /** performance.now() at arrival, ms. */
  readonly startedAtMs: number;
  /** The client's socket bytesWritten at arrival: the log's bytesOut is the difference. */
  readonly socketBytesAtStart: number;
  phase: RequestPhase = 'head';
  /** The gateway's list of the requests being served (gateway.ts): the ones before and after this one in it. */
  servingPrev: RequestContext | undefined = undefined;
  servingNext: RequestContext | undefined = undefined;
  /** /healthz and /readyz: answered by the master, neither logged nor counted. */
  isHealthCheck = false;
  reqId = '';
  /** The path forwarded to the worker (the routing query parameter removed). */
  forwardPath = '/';
  /** The client's headers while a relayed request may be tried again (gateway.ts), not the first try's copy. */
  clientHeaders: IncomingHttpHeaders | undefined = undefined;
  /** The version chosen by routing; undefined until then (or when refused before). */
  version: string | undefined = undefined;
  group: VersionView | undefined = undefined;
  /**
   * What the head said for routing: chosen from once the body is read when the choice waits for it
   * (`isChoiceDeferred`), or again if the version chosen was removed while the body came.
   */
  routingFacts: RoutingFacts | undefined = undefined;
  /** Routing waits for the body: the head had no sticky key and the body's `user` may be one (issue 12 part 5). */
  isChoiceDeferred = false;
  /** The whole request body, read before a worker slot is taken (SPEC §4a). */
  body: Buffer = EMPTY_BODY;
  /** Bytes of the body budget this request holds; released once the body is written to the worker. */
  budgetBytes = 0;
  lease: Lease<WorkerHandle> | undefined = undefined;
  /** The worker closed or reset its connection under this try before any answer (proxy.ts: its slot waits). */
  isWorkerHungUp = false;
  workerPid: number | undefined = undefined;
  proxyReq: ClientRequest | undefined = undefined;
  proxyRes: IncomingMessage | undefined = undefined;
  /** The worker answered `text/event-stream`: errors after the status become a final SSE event. */
  isEventStream = false;
  /**
   * performance.now() when the whole body was read, ms (the arrival until then): the canary's latencies count from
   * here, so a client that sends its body slowly cannot make a version look slow.
   */
  bodyReadAtMs: number;
  /**
   * The body asked for a stream (`"stream": true`), or not (no body, or a JSON object without it); undefined when the
   * master cannot tell (not a JSON object, or too long to scan). How a request its client gave up on is judged.
   */
  asksStream: boolean | undefined = false;
  /** Routed by `?version=` or the version header: served, counted in metrics, not judged by a canary. */
  isPinned = false;
  /** performance.now() when the first content event was relayed (streams), ms; 0 until then. */
  firstContentAtMs = 0;
  /**
   * A stream that ended well with two content events or more: the mean ms between its content events after the first,
   * as the worker measured them (its final report: a trailer, or a direct answer's last control bytes); NaN otherwise.
   */
  timePerTokenMs = NaN;
  /** performance.now() when the worker's response headers arrived, ms; 0 until then. */
  headersAtMs = 0;
  /**
   * The answer failed after its status: a stream that ended with an SSE error event, or an answer cut (counts as an
   * error though its status was 200; logged `streamFailed`).
   */
  isStreamFailed = false;
  /** The error code the master answered or ended the stream with, for the log line. */
  errorCode: string | undefined = undefined;
  /** Master → worker timer (headers, then idle); cleared when the request ends. */
  workerTimer: NodeJS.Timeout | undefined = undefined;
  /** Aborts the queue wait when the client leaves; created only when a request waits in the queue. */
  abort: AbortController | undefined = undefined;
  /** The last two chunks relayed, kept (no copy) to see, at its end, whether a stream ended with an error event. */
  lastChunk: Buffer | undefined = undefined;
  previousChunk: Buffer | undefined = undefined;
  /** A Responses stream's event numbers as they pass (relay.ts), to number the master's own error event after them. */
  sequenceNumbers: SequenceNumbers | undefined = undefined;
  /** limits.directStreams: the worker was offered the client's connection for this answer (gateway.ts forward). */
  isDirectOffered = false;
  /** Tried again after its worker never got it (retry.ts). */
  isTriedAgain = false;
  /** How many times it was (each try found its worker dead): bounded by retry.ts mayTryAgain. */
  triesAgain = 0;
  /**
   * The worker writes this answer to the client itself (it took the offer, or reported a call's status, which it does
   * before its first byte); the master relays nothing. Before that, the master can still answer.
   */
  isDirect = false;
  /** The request went to the worker as an IPC call (direct-calls.ts): its answer, whatever it is, is direct. */
  isDirectCall = false;
  /** Bytes the worker wrote to the client on a direct answer (its final report), for the log line. */
  directBytes: number | undefined = undefined;
  /**
   * At the shutdown deadline its worker was told to end it (IPC `cut`, gateway.ts cutAll): a 5xx or a failed stream
   * then is the shutdown's doing, not its version's.
   */
  isCutByWorker = false;

  constructor(req: IncomingMessage, res: ServerResponse, nowMs: number) {
    this.req = req;
    this.res = res;
    this.startedAtMs = nowMs;
    this.bodyReadAtMs = nowMs;
    this.socketBytesAtStart = req.socket.bytesWritten;
  }

  /** The signal that aborts when the client goes away; created on first use. */
  get signal(): AbortSignal {
    return (this.abort ??= new AbortController()).signal;
  }

  get isClientGone(): boolean {
    return this.res.destroyed || this.req.socket.destroyed;
  }
}
