import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { CliError, EXIT } from './admin-client.js';
import { parsePrometheusText } from './prom-text.js';
import { computeRows, renderRows, type Snapshot } from './top-view.js';

// `graygate top` / `graygate status --watch` (issue 5 part 5): scrape the
// admin port's /metrics every interval and redraw a per-version table. A
// failed scrape is shown and retried (the gateway may be restarting); a
// refused token ends the command, since retrying cannot fix it.

export interface TopOptions {
  /** Base URL of the admin port, e.g. http://127.0.0.1:9000. */
  adminUrl: string;
  /** Bearer token (GRAYGATE_ADMIN_TOKEN); undefined or empty: none sent. */
  token: string | undefined;
  /** Time between scrapes, ms. Default 1000. */
  intervalMs?: number;
  /** Where frames go. Default process.stdout; on a TTY each frame replaces the last. */
  output?: NodeJS.WriteStream | NodeJS.WritableStream;
  /** Stop after this many frames (e.g. 2 for one interval's rates in a script). Default: until `signal` aborts. */
  frames?: number;
  /** Ends the loop (Ctrl-C). */
  signal?: AbortSignal;
}

const CLEAR = '\x1b[H\x1b[2J';

async function scrape(options: TopOptions): Promise<Snapshot> {
  const headers: Record<string, string> = {};
  if (options.token !== undefined && options.token !== '') headers['authorization'] = `Bearer ${options.token}`;
  const signal = AbortSignal.any([AbortSignal.timeout(Math.max(5000, options.intervalMs ?? 1000)), ...(options.signal ? [options.signal] : [])]);
  const res = await fetch(new URL('/metrics', options.adminUrl), { headers, signal });
  const text = await res.text();
  if (res.status === 401) throw new CliError('401 unauthorized: set GRAYGATE_ADMIN_TOKEN', EXIT.apiError);
  if (!res.ok) throw new Error(`GET /metrics answered ${res.status}`);
  return { atMs: performance.now(), samples: parsePrometheusText(text) };
}

/** Runs until `signal` aborts or `frames` frames were drawn. Rejects with a CliError on a refused token. */
export async function runTop(options: TopOptions): Promise<void> {
  const output = options.output ?? process.stdout;
  const isTty = (output as NodeJS.WriteStream).isTTY === true;
  const intervalMs = options.intervalMs ?? 1000;
  const isAborted = (): boolean => options.signal?.aborted === true;
  let prev: Snapshot | undefined;
  for (let frame = 0; options.frames === undefined || frame < options.frames; frame++) {
    if (isAborted()) return;
    const started = performance.now();
    let body: string;
    try {
      const cur = await scrape(options);
      body = renderRows(computeRows(prev, cur));
      prev = cur;
    } catch (err) {
      if (err instanceof CliError) throw err;
      if (isAborted()) return;
      const cause = (err as { cause?: { code?: string } }).cause?.code ?? (err as Error).message;
      body = `cannot scrape ${options.adminUrl}/metrics (${cause}); retrying`;
      prev = undefined; // rates need two good scrapes in a row
    }
    const header = `graygate top — ${options.adminUrl} — ${new Date().toLocaleTimeString()} — every ${intervalMs / 1000} s, Ctrl-C to quit`;
    output.write(`${isTty ? CLEAR : frame === 0 ? '' : '\n'}${header}\n\n${body}\n`);
    if (options.frames !== undefined && frame + 1 >= options.frames) return;
    try {
      await sleep(Math.max(0, intervalMs - (performance.now() - started)), undefined, options.signal ? { signal: options.signal } : {});
    } catch {
      return; // aborted while waiting
    }
  }
}
