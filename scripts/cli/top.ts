import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { callAdmin, CliError, EXIT, requestAdmin, type AdminClientOptions } from './admin-client.js';
import { printable, type StatusBody } from './format.js';
import { parsePrometheusText } from './prom-text.js';
import { computeRows, renderRows, rowToJson, type Snapshot, type VersionRow } from './top-view.js';

// `graygate top` / `graygate status --watch` (issue 5 part 5): every interval,
// read the admin port's /admin/status (which versions exist) and /metrics
// (what they do) and redraw a per-version table.
//
// Issue 12 part 6, when the admin API fails: at start, top exits like
// `status` does (69 unreachable, 1 for an error answer) with the same one
// line. Later, a failed refresh is drawn and retried (the gateway may be
// restarting, e.g. `pm2 reload`), up to `retries` times in a row; the next
// failure ends top with that exit code. A refusal (4xx: wrong token,
// forbidden) ends it at once, since retrying cannot fix it.

/** Failed refreshes in a row that top shows and retries before it exits: about 5 s at the default interval. */
const DEFAULT_TOP_RETRIES = 5;
const DEFAULT_INTERVAL_MS = 1000;
/** A refresh that takes longer than this (or the interval, if longer) counts as failed, ms. */
const MIN_REFRESH_TIMEOUT_MS = 5000;

export interface TopOptions extends AdminClientOptions {
  /** Time between refreshes, ms. Default 1000. */
  intervalMs?: number;
  /** Where frames go. Default process.stdout; on a TTY each table frame replaces the last. */
  output?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** `table` (default): a header and an aligned table per frame. `json`: one JSON object per line per frame. */
  format?: 'table' | 'json';
  /** Stop after this many frames (e.g. 2 for one interval's rates in a script). Default: until `signal` aborts. */
  frames?: number;
  /**
   * Failed refreshes in a row after a good one that are drawn and
   * retried before top rejects. Default DEFAULT_TOP_RETRIES.
   */
  retries?: number;
  /** Ends the loop (Ctrl-C); runTop then resolves. */
  signal?: AbortSignal;
}

async function refresh(options: TopOptions, timeoutMs: number): Promise<Snapshot> {
  const get = { method: 'GET', timeoutMs, ...(options.signal ? { signal: options.signal } : {}) } as const;
  const [status, text] = await Promise.all([
    callAdmin<StatusBody>(options, { ...get, path: '/admin/status' }),
    requestAdmin(options, { ...get, path: '/metrics' }),
  ]);
  try {
    return { atMs: performance.now(), samples: parsePrometheusText(text), versions: Object.keys(status.versions) };
  } catch (err) {
    throw new CliError(`GET /metrics: ${(err as Error).message}`, EXIT.apiError);
  }
}

// A 4xx is the API refusing this client; only a missing, failing or restarting gateway may recover.
const isRefusal = (err: CliError): boolean => err.status !== undefined && err.status >= 400 && err.status < 500;

/** Runs until `signal` aborts or `frames` frames were drawn; rejects with a CliError as described above. */
export async function runTop(options: TopOptions): Promise<void> {
  const output = options.output ?? process.stdout;
  const isTty = (output as NodeJS.WriteStream).isTTY === true;
  const isJson = options.format === 'json';
  const intervalMs = options.intervalMs ?? DEFAULT_INTERVAL_MS;
  const retries = options.retries ?? DEFAULT_TOP_RETRIES;
  const isAborted = (): boolean => options.signal?.aborted === true;
  let prev: Snapshot | undefined;
  let failures = 0;
  for (let frame = 0; options.frames === undefined || frame < options.frames; frame++) {
    if (isAborted()) return;
    const started = performance.now();
    let rows: VersionRow[] | undefined;
    let problem: string | undefined;
    try {
      const cur = await refresh(options, Math.max(MIN_REFRESH_TIMEOUT_MS, intervalMs));
      rows = computeRows(prev, cur);
      prev = cur;
      failures = 0;
    } catch (err) {
      if (isAborted()) return;
      if (!(err instanceof CliError) || frame === 0 || isRefusal(err) || failures >= retries) throw err;
      failures++;
      prev = undefined; // rates need two good refreshes in a row
      problem = `${err.message}; retrying (${failures}/${retries})`;
    }
    const time = new Date();
    if (isJson) {
      const line =
        rows === undefined
          ? { time: time.toISOString(), error: problem }
          : { time: time.toISOString(), versions: rows.map(rowToJson) };
      output.write(`${JSON.stringify(line)}\n`);
    } else {
      const header = `graygate top — ${options.adminUrl} — ${time.toLocaleTimeString()} — every ${intervalMs / 1000} s, Ctrl-C to quit`;
      output.write(
        `${isTty ? CLEAR : frame === 0 ? '' : '\n'}${header}\n\n${printable(rows === undefined ? (problem ?? '') : renderRows(rows))}\n`,
      );
    }
    if (options.frames !== undefined && frame + 1 >= options.frames) return;
    try {
      await sleep(
        Math.max(0, intervalMs - (performance.now() - started)),
        undefined,
        options.signal ? { signal: options.signal } : {},
      );
    } catch {
      return; // aborted while waiting
    }
  }
}

const CLEAR = '\x1b[H\x1b[2J';
