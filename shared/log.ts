import { writeSync } from 'node:fs';
import type { Readable } from 'node:stream';
import { pino, type Logger, type DestinationStream } from 'pino';

export type { Logger };

// Secrets never reach a log (SPEC §9). Credentials travel in these headers:
// the client's own (Authorization, and keys some SDKs send instead), the
// worker's to the upstream (openai `authorization`, anthropic `x-api-key`),
// and cookies. Paths cover headers at the top of a log object, under `req`,
// and one level down (`{ request: { headers } }`, an upstream call), plus
// API keys wherever a config object slips into a line.
const SECRET_HEADERS = [
  'authorization',
  'proxy-authorization',
  'x-api-key',
  'api-key',
  'x-goog-api-key',
  'cookie',
  'set-cookie',
];
// Explicit paths only: pino's wildcard redaction (`*.headers`, `*.apiKey`)
// walks every logged object and cost 14 µs per request line against 1.2 µs
// without it (measured with a null sink), halving the master's 503 rate under a
// flood. These are every place a header set or an upstream config is logged.
const HEADER_HOLDERS = ['headers', 'req.headers', 'request.headers', 'upstream.headers', 'res.headers'];
const KEY_HOLDERS = ['', 'upstream.', 'settings.upstream.', 'config.'];

const REDACT_PATHS: readonly string[] = [
  ...HEADER_HOLDERS.flatMap((holder) => SECRET_HEADERS.map((h) => `${holder}["${h}"]`)),
  ...KEY_HOLDERS.flatMap((holder) => [`${holder}apiKey`, `${holder}api_key`]),
];
export const REDACTED = '[redacted]';

export interface LoggerOptions {
  /** Which process writes: `master`, `worker` or `cli`. */
  role: 'master' | 'worker' | 'cli';
  /** Worker's version name; absent for the master. */
  version?: string;
  /** pino level; default the LOG_LEVEL env var, else `info`. */
  level?: string;
  /** Where lines go; default stdout (pino-pretty when stdout is a TTY, JSON lines otherwise). Tests pass a sink. */
  destination?: DestinationStream;
}

/** One root logger per process with `{ role, version, pid }` bindings (STYLE §27). */
export function createLogger(options: LoggerOptions): Logger {
  const fromEnv = process.env['LOG_LEVEL'];
  const level = options.level ?? (fromEnv === undefined || fromEnv === '' ? 'info' : fromEnv);
  const base: Record<string, unknown> = { role: options.role, pid: process.pid };
  if (options.version !== undefined) base['version'] = options.version;
  const pinoOptions = { level, base, redact: { paths: [...REDACT_PATHS], censor: REDACTED } };
  if (options.destination !== undefined) return pino(pinoOptions, options.destination);
  // Issue 5: readable on a terminal (`npm start`), JSON for anything that parses it.
  if (process.stdout.isTTY === true) {
    return pino({
      ...pinoOptions,
      transport: { target: 'pino-pretty', options: { colorize: true, translateTime: 'SYS:HH:MM:ss.l' } },
    });
  }
  return pino(pinoOptions, stdoutPerLoopTurn());
}

/**
 * Log lines to stdout, written synchronously once per event-loop turn: every
 * line a turn produced, in one write(2) of up to 4 KiB of whole lines (more
 * take one write per 4 KiB, see atomicPiece). pino's default destination writes
 * each line through libuv's thread pool (fs.write), which costs a wakeup of a
 * pool thread and one of the event loop per line: at one request at a time
 * that was 1.5 of the ~7 context switches a request cost each process
 * (issue 10, docs/BENCHMARKS.md "Wakeups at rest"). Under load a turn's lines
 * share writes, as they shared fs.writes before.
 *
 * stdout is a pipe in production (a log collector), made non-blocking by Node;
 * the master's alone among graygate's processes (workers write into a pipe the
 * master reads, relayLogLines), though npm or a wrapper script may share it.
 * When it is full what it did not take waits, in
 * order, for a retry every RETRY_MS (sonic-boom's pace): the event loop never
 * blocks on a slow reader, and no other process's line lands inside one of
 * ours (writes of whole lines, 4 KiB at most, see atomicPiece for the limits:
 * a single line over 4 KiB can still be cut). What waits is bounded: every
 * request writes a line, so a stalled collector must not let clients grow a
 * process's memory (pino's default kept lines without bound). Above
 * MAX_WAITING_BYTES a turn's lines are dropped and counted, and once the pipe
 * drains one line says how many. A closed stdout (EPIPE) drops lines, as pino
 * does. Lines still pending at exit are written by the `exit` handler, which
 * waits on a full pipe as long as its reader makes progress, and gives up
 * after EXIT_STALL_MS without any (ending a line cut in the middle, if it can).
 */
/** Put where a waiting line was once written: the list keeps no reference to it. */
const WRITTEN = Buffer.alloc(0);

function stdoutPerLoopTurn(): DestinationStream {
  if (stdoutBatch !== undefined) return stdoutBatch;
  let pending = '';
  let isScheduled = false;
  /**
   * Bytes the pipe did not take yet, in order, from `head` on; the one at `head` is a line cut in the middle after a
   * partial write. An index, not shift(): a stalled reader let ~70,000 turns' lines wait, and shifting them out one by
   * one held the loop 1.6 s once it read again (a probe).
   */
  const waiting: Buffer[] = [];
  let head = 0;
  let waitingBytes = 0;
  let isHeadCut = false;
  let droppedLines = 0;
  let retry: NodeJS.Timeout | undefined;
  const enqueue = (buf: Buffer): void => {
    waiting.push(buf);
    waitingBytes += buf.length;
  };
  /** Writes what waits until done (true) or the pipe is full (false). */
  const writeOut = (): boolean => {
    while (head < waiting.length) {
      const buf = waiting[head]!;
      const piece = atomicPiece(buf);
      let n: number;
      try {
        n = writeSync(STDOUT, buf, 0, piece);
      } catch (err) {
        if ((err as NodeJS.ErrnoException).code !== 'EAGAIN') {
          waiting.length = head = waitingBytes = 0;
          return true;
        }
        // Full: what was written goes once it is most of the list (each line moved once, about).
        if (head > 1024 && head * 2 > waiting.length) {
          waiting.splice(0, head);
          head = 0;
        }
        return false;
      }
      waitingBytes -= n;
      isHeadCut = n < piece;
      if (n < buf.length) waiting[head] = buf.subarray(n);
      else waiting[head++] = WRITTEN;
    }
    waiting.length = head = 0;
    return true;
  };
  const flush = (): void => {
    isScheduled = false;
    if (pending.length > 0) {
      const buf = Buffer.from(pending);
      if (waitingBytes + buf.length > MAX_WAITING_BYTES) droppedLines += countLines(pending);
      else enqueue(buf);
      pending = '';
    }
    if (retry !== undefined) return;
    if (!writeOut()) {
      retry = setTimeout(onRetry, RETRY_MS);
    } else if (droppedLines > 0) {
      enqueue(droppedLinesLine(droppedLines));
      droppedLines = 0;
      flush();
    }
  };
  const onRetry = (): void => {
    retry = undefined;
    flush();
  };
  process.on('exit', () => {
    if (pending.length > 0) enqueue(Buffer.from(pending));
    if (droppedLines > 0) enqueue(droppedLinesLine(droppedLines));
    const pause = new Int32Array(new SharedArrayBuffer(4));
    let stalledMs = 0;
    let lastWaiting = waitingBytes;
    while (!writeOut()) {
      if (waitingBytes !== lastWaiting) {
        stalledMs = 0;
        lastWaiting = waitingBytes;
      }
      if (stalledMs >= EXIT_STALL_MS) {
        if (isHeadCut) {
          try {
            writeSync(STDOUT, '\n');
          } catch {
            // still full: the reader sees a cut line
          }
        }
        return;
      }
      Atomics.wait(pause, 0, 0, EXIT_PAUSE_MS);
      stalledMs += EXIT_PAUSE_MS;
    }
  });
  stdoutBatch = {
    write(line: string): void {
      pending += line;
      if (isScheduled) return;
      isScheduled = true;
      setImmediate(flush);
    },
  };
  return stdoutBatch;
}

/**
 * A worker's stdout, read from its pipe by the master and written with the master's own lines
 * (master/worker-handle.ts), whole lines only. The workers do not share the master's stdout: a
 * child shares the open file description, and with it the non-blocking flag, which libuv clears
 * in every child it spawns and node restores at a child's exit to what it found at start; after
 * the first worker's start or exit, the master's writes to a full pipe blocked, and a log
 * collector that stalled froze the gateway (requests, health, SIGTERM). One writer, one flag: the
 * master's. What waits counts against the master's bound (MAX_WAITING_BYTES); a line longer than
 * MAX_RELAYED_LINE_CHARS is ended there, and the rest of it dropped.
 */
export function relayLogLines(source: Readable): void {
  const out = stdoutPerLoopTurn();
  let partial = '';
  // The rest of a line cut at MAX_RELAYED_LINE_CHARS is dropped, up to its end: not lines of its own.
  let isSkipping = false;
  source.setEncoding('utf8');
  source.on('data', (data: string) => {
    let chunk = data;
    if (isSkipping) {
      const lineEnd = chunk.indexOf('\n');
      if (lineEnd === -1) return;
      isSkipping = false;
      chunk = chunk.slice(lineEnd + 1);
    }
    const end = chunk.lastIndexOf('\n');
    if (end === -1) {
      partial += chunk;
      if (partial.length > MAX_RELAYED_LINE_CHARS) {
        out.write(`${partial}\n`);
        partial = '';
        isSkipping = true;
      }
      return;
    }
    out.write(partial + chunk.slice(0, end + 1));
    partial = chunk.slice(end + 1);
  });
  source.on('end', () => {
    if (partial !== '') out.write(`${partial}\n`);
  });
}

const MAX_RELAYED_LINE_CHARS = 1024 * 1024;

/**
 * How much of `buf` (whole lines, the head of what waits) one write takes: at most PIPE_BUF bytes
 * of whole lines, or one longer line alone. Another process may share stdout (npm, a wrapper
 * script); a write of up to PIPE_BUF bytes to a pipe is atomic (all of it or EAGAIN, POSIX), so no other process's line
 * can land inside one of ours. A longer write can be cut when the pipe is nearly full, and its
 * rest, written 100 ms later, would follow whatever the others wrote meanwhile. A Unix stream
 * socket (what journald and Node's `stdio: 'pipe'` give) takes a write this small whole too
 * (Linux queues it as one buffer), and a regular file is written whole. Only a single line over
 * PIPE_BUF can still be cut.
 */
function atomicPiece(buf: Buffer): number {
  if (buf.length <= PIPE_BUF) return buf.length;
  const lastEnd = buf.lastIndexOf(NEWLINE, PIPE_BUF - 1);
  if (lastEnd !== -1) return lastEnd + 1;
  const firstEnd = buf.indexOf(NEWLINE);
  return firstEnd === -1 ? buf.length : firstEnd + 1;
}

function countLines(text: string): number {
  let n = 0;
  for (let i = text.indexOf('\n'); i !== -1; i = text.indexOf('\n', i + 1)) n++;
  return n;
}

/** A warn line in pino's shape (the loggers' own bindings are not known here). */
function droppedLinesLine(count: number): Buffer {
  return Buffer.from(
    `${JSON.stringify({ level: 40, time: Date.now(), pid: process.pid, droppedLines: count, msg: 'log lines dropped: stdout was not read' })}\n`,
  );
}

let stdoutBatch: DestinationStream | undefined;
const STDOUT = 1;
/** Linux's PIPE_BUF: the largest write to a pipe that is never interleaved with another. */
const PIPE_BUF = 4096;
const NEWLINE = 0x0a;
const RETRY_MS = 100;
const EXIT_PAUSE_MS = 10;
const EXIT_STALL_MS = 5000;
/** Most bytes of log lines a process holds for a stdout that is not read (~16k request lines). */
export const MAX_WAITING_BYTES = 16 * 1024 * 1024;
