import type { SerializedError } from './errors.js';
import type { Limits, UpstreamConfig } from './config.js';
import type { DirectCallMessage, DirectCallReport } from './direct.js';

// The one IPC protocol between master and workers (STYLE §18). A deploy can run
// a worker build that differs from the master, so `ready` carries a protocol
// number the master checks.

// 2 (turn 2): health probes (`ping`/`pong`); a protocol-1 build would never answer them.
export const PROTOCOL_VERSION = 2;

/** The env var through which the master hands a worker its settings, as JSON. */
export const WORKER_SETTINGS_ENV = 'GRAYGATE_WORKER_SETTINGS';

/**
 * A request header the master sets on every request it forwards (the client's is replaced): how long the request was
 * with the master before the worker got it (head and body read, queued for a slot), ms. The worker's first-token
 * histogram counts from the request's arrival at the master, as its clients and the canary see it.
 */
export const WAITED_HEADER = 'x-graygate-waited-ms';
/** The longest wait WAITED_HEADER is believed for (a day), ms. */
const MAX_WAITED_MS = 86_400_000;

/** WAITED_HEADER's value as the worker reads it: 0 when absent or not a wait. */
export function waitedMs(value: string | undefined): number {
  const ms = Number(value);
  return Number.isFinite(ms) && ms >= 0 && ms <= MAX_WAITED_MS ? ms : 0;
}

/** What a worker is told at fork time (JSON in WORKER_SETTINGS_ENV). */
export interface WorkerSettings {
  protocol: number;
  version: string;
  /** 0-based index of this instance inside its version group. */
  instance: number;
  upstream: UpstreamConfig;
  /**
   * maxSocketsPerWorker: the requests the master may have in this worker at once, which sizes its
   * upstream pool (issue 10); absent when the master predates it (a deploy may mix builds). workerHeadersTimeoutMs:
   * the master's wait for a response's first byte, which the worker's `102 Processing` pings keep from firing.
   * maxBufferedAnswerBytes: absent from masters before it (the default then).
   */
  limits: Pick<Limits, 'maxBodyBytes' | 'shutdownTimeoutMs'> &
    Partial<
      Pick<Limits, 'maxSocketsPerWorker' | 'workerHeadersTimeoutMs' | 'maxHeaderBytes' | 'maxBufferedAnswerBytes'>
    >;
  logLevel: string;
  /**
   * Where to listen (issue 10): a unix socket in a directory only the master's user can enter.
   * Cheaper than TCP loopback per write on both sides, and unreachable to other local users.
   * Absent: 127.0.0.1 on a free port.
   */
  socketPath?: string;
  /**
   * The master reads `calls-taken` (issue 10): the worker reports the calls it read in one turn taken in one message.
   * Absent from masters before it, which read only `call-report` `isTaken`, one a call.
   */
  readsCallsTaken?: boolean;
  /**
   * The master takes a ready worker's SIGTERM over (`signal`, answered `signal-taken`): it replaces the worker and
   * stops it as it stops an old build's, or, shutting down itself, within its own deadline. Absent from masters before
   * it: the worker drains on its own then, up to 5 s.
   */
  takesSignals?: boolean;
}

/** Where a ready worker listens: a unix socket, or a loopback TCP port. */
export type WorkerAddress = { path: string } | { host: string; port: number };

export type MasterToWorker =
  /** Stop taking requests, finish in-flight ones within deadlineMs, exit 0. */
  | { type: 'shutdown'; deadlineMs: number }
  /** Request for this process's metrics in Prometheus JSON form (prom-client `getMetricsAsJSON`). */
  | { type: 'metrics'; id: number }
  /**
   * Health probe (SPEC §4a): answer with `pong` at once; a worker that misses limits.healthMisses in a row is replaced.
   */
  | { type: 'ping'; id: number }
  /**
   * limits.directStreams (issue 10): a duplicate of a client connection's descriptor comes with this message, once per
   * connection and worker process, only to workers whose `ready` said `takesConnections`; requests on that connection
   * name it in their `x-graygate-direct` offer. The worker only writes to it (the master's parser reads it) and closes
   * its duplicate on `conn-close`.
   */
  | { type: 'conn'; id: number }
  /** The client connection `id` closed in the master: close the duplicate. */
  | { type: 'conn-close'; id: number }
  /**
   * limits.directStreams (issue 10): a request on a connection this worker holds, passed whole, to be answered
   * straight to the client; only to workers whose `ready` said `takesCalls`. Reported on with `call-report`, first
   * `isTaken` (when its `ready` said `acksCalls`).
   */
  | DirectCallMessage
  /**
   * limits.directStreams: the write lease (shared/direct.ts) of the call on connection `conn` renewed to `writeBy`, on
   * a sign of life before its status; only to workers whose `ready` said `takesLeases`. By connection, where one call
   * at a time is answered: one sent for an earlier call comes before the next call's message.
   */
  | { type: 'call-lease'; conn: number; writeBy: number }
  /** The master heard the worker's `signal`: it will send `shutdown` when the worker is to drain. */
  | { type: 'signal-taken' }
  /**
   * A deadline passed with answers in flight: every one ends now as failed, with `shutting_down` (a stream its final
   * error event, one before its status a 503). The master's shutdown deadline (limits.shutdownTimeoutMs; the master
   * ends those it relays itself, this is for those this worker writes straight to clients, whose framing only it
   * knows), or, `reason` `drain`, this old build's drain deadline (limits.drainTimeoutMs). Only to workers whose
   * `ready` said `takesCuts` (an older build would exit on it); `shutdown` follows.
   */
  | { type: 'cut'; reason?: 'drain' };

export type WorkerToMaster =
  | {
      type: 'ready';
      protocol: number;
      pid: number;
      address: WorkerAddress;
      /**
       * limits.directStreams: this worker takes client connections (IPC `conn`). Absent in builds from before the
       * option and in workers that take none: the master never offers them one (an older build exits on `conn`).
       */
      takesConnections?: boolean;
      /** limits.directStreams: this worker answers requests passed as IPC `call` messages. */
      takesCalls?: boolean;
      /**
       * limits.directStreams: this worker reports each call taken (`call-report` `isTaken`) before anything of it runs.
       * Absent in builds from before: the master then takes a call as read once it is sent.
       */
      acksCalls?: boolean;
      /** limits.directStreams: this worker keeps the write leases of offers and calls, and takes `call-lease`. */
      takesLeases?: boolean;
      /** This worker takes `cut`: at the master's shutdown deadline it ends the answers it writes itself. */
      takesCuts?: boolean;
    }
  | { type: 'fatal'; error: SerializedError }
  | { type: 'metrics'; replyTo: number; metrics: unknown[] }
  /**
   * Answer to `ping`, with what a stuck or bloated worker looks like from inside. `counters`: the worker's counters
   * and histograms now (WorkerMetrics.collectCounters), when it keeps any.
   */
  | { type: 'pong'; replyTo: number; rssBytes: number; eventLoopDelayMs: number; counters?: unknown[] }
  /** The descriptor of connection `id` (IPC `conn`) arrived: the master may send the next one. */
  | { type: 'conn-taken'; id: number }
  /**
   * The calls `ids` (IPC `call`) were read, as a `call-report` `isTaken` says of one: those a worker read in one turn,
   * in one message (when its settings said `readsCallsTaken`).
   */
  | { type: 'calls-taken'; ids: number[] }
  /** What became of the direct call `id` (IPC `call`). */
  | DirectCallReport
  /**
   * A ready worker was sent SIGTERM (when its settings said `takesSignals`): it serves on until the master's `shutdown`
   * and drains on its own only if no `signal-taken` comes.
   */
  | { type: 'signal'; signal: 'SIGTERM' };

const MASTER_TO_WORKER_TYPES: ReadonlySet<string> = new Set<MasterToWorker['type']>([
  'shutdown',
  'metrics',
  'ping',
  'conn',
  'conn-close',
  'call',
  'call-lease',
  'signal-taken',
  'cut',
]);

export function isMasterToWorker(msg: unknown): msg is MasterToWorker {
  return (
    typeof msg === 'object' && msg !== null && MASTER_TO_WORKER_TYPES.has((msg as { type?: unknown }).type as string)
  );
}

/**
 * A message the master can act on: a known type with the fields it reads, of their types. A version's `entry` can be
 * any build, and the master acts on these in its IPC listener, where a throw ends it with every stream: a `ready`
 * without an address or a `call-report` without `marks` did (a probe's hostile worker builds), and a `pong` whose
 * `rssBytes` was a string made every later /metrics scrape a 500.
 */
export function isWorkerToMaster(msg: unknown): msg is WorkerToMaster {
  if (typeof msg !== 'object' || msg === null) return false;
  const type = (msg as { type?: unknown }).type;
  return typeof type === 'string' && Object.hasOwn(WORKER_MESSAGE_CHECKS, type)
    ? WORKER_MESSAGE_CHECKS[type as WorkerToMaster['type']](msg as Record<string, unknown>)
    : false;
}

/** Per type, the fields the master reads (every type has one: the record's key type says so). */
const WORKER_MESSAGE_CHECKS: Record<WorkerToMaster['type'], (m: Record<string, unknown>) => boolean> = {
  ready: (m) =>
    isId(m['protocol']) &&
    isWorkerAddress(m['address']) &&
    isOptional(m['takesConnections'], isBoolean) &&
    isOptional(m['takesCalls'], isBoolean) &&
    isOptional(m['acksCalls'], isBoolean) &&
    isOptional(m['takesLeases'], isBoolean) &&
    isOptional(m['takesCuts'], isBoolean),
  fatal: (m) => typeof m['error'] === 'object' && m['error'] !== null,
  metrics: (m) => isId(m['replyTo']) && Array.isArray(m['metrics']),
  pong: (m) =>
    isId(m['replyTo']) &&
    isFiniteNumber(m['rssBytes']) &&
    isFiniteNumber(m['eventLoopDelayMs']) &&
    isOptional(m['counters'], Array.isArray),
  'conn-taken': (m) => isId(m['id']),
  'calls-taken': (m) => Array.isArray(m['ids']) && m['ids'].length > 0 && (m['ids'] as unknown[]).every(isId),
  'call-report': (m) =>
    isId(m['id']) &&
    typeof m['marks'] === 'string' &&
    isOptional(m['status'], isStatus) &&
    isOptional(m['isStream'], isBoolean) &&
    isOptional(m['isEnd'], isBoolean) &&
    isOptional(m['isLast'], isBoolean) &&
    isOptional(m['isTaken'], isBoolean),
  signal: (m) => m['signal'] === 'SIGTERM',
};

/** A `ready` message, whatever else it holds: one the master cannot use fails that worker's start at once. */
export function isReadyMessage(msg: unknown): msg is { type: 'ready'; protocol?: unknown } {
  return typeof msg === 'object' && msg !== null && (msg as { type?: unknown }).type === 'ready';
}

function isWorkerAddress(value: unknown): value is WorkerAddress {
  if (typeof value !== 'object' || value === null) return false;
  const a = value as Record<string, unknown>;
  if ('path' in a) return typeof a['path'] === 'string' && a['path'] !== '';
  return (
    typeof a['host'] === 'string' && Number.isInteger(a['port']) && Number(a['port']) > 0 && Number(a['port']) < 65536
  );
}

const isId = (value: unknown): boolean => Number.isSafeInteger(value);
const isBoolean = (value: unknown): boolean => typeof value === 'boolean';
const isFiniteNumber = (value: unknown): boolean => typeof value === 'number' && Number.isFinite(value);
const isStatus = (value: unknown): boolean => Number.isInteger(value) && Number(value) >= 100 && Number(value) <= 999;
const isOptional = (value: unknown, check: (value: unknown) => boolean): boolean => value === undefined || check(value);

export function assertNever(value: never): never {
  throw new Error(`unexpected message: ${JSON.stringify(value)}`);
}

export function readWorkerSettings(env: NodeJS.ProcessEnv): WorkerSettings {
  const raw = env[WORKER_SETTINGS_ENV];
  if (raw === undefined)
    throw new Error(`${WORKER_SETTINGS_ENV} is not set: workers are started by the graygate master`);
  const settings = JSON.parse(raw) as WorkerSettings;
  if (settings.protocol !== PROTOCOL_VERSION) {
    throw new Error(`protocol mismatch: master speaks ${settings.protocol}, this worker ${PROTOCOL_VERSION}`);
  }
  return settings;
}
