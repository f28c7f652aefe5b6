// Human output of the CLI: plain aligned tables, no colour, so it pipes well.

/** C0 controls but the newline, DEL and C1 controls: what a terminal acts on rather than shows. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const CONTROL = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f]/g;

/**
 * `text` from the admin API as a terminal shows it, each control character but the newline written as `\u001b`: an
 * answer's ESC sequences, BEL and CR were printed raw (an operator probe: an error message from the address cleared
 * the screen, retitled the terminal and overwrote its own line with a fake one).
 */
export function printable(text: string): string {
  return text.replace(CONTROL, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string =>
    cells
      .map((c, i) => c.padEnd(widths[i]!))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

interface StatusWorker {
  pid?: number;
  instance: number;
  state: string;
  restarts: number;
  inflight: number;
}
interface StatusVersion {
  weight: number;
  /** The version's queue: one figure for all its workers, shown once on its first row. */
  queued: number;
  entry: string;
  upstream: { format: string; url: string; model?: string };
  workers: StatusWorker[];
  lastDeploy: { kind: string; phase: string; durationMs?: number; error?: { reason: string } } | null;
  canary?: {
    version: string;
    baseline: string;
    state: string;
    canaryPercent: number;
    step: number;
    steps: number[];
    startedAt: string;
    /** null while it runs or is held. */
    endedAt: string | null;
    /** Paused, by hand or at a step of pauseAt, until resumed (absent from a gateway older than this CLI). */
    paused?: boolean;
  };
}
export interface StatusBody {
  versions: Record<string, StatusVersion>;
  /** Removed versions whose workers still serve or drain (absent when none, and from an older master). */
  removing?: Record<string, { workers: StatusWorker[] }>;
  clientConnections?: {
    open: number;
    max: number | null;
    pastBound: number;
    dropped: number;
    closedIdle?: number;
    /** Absent from a master before limits.maxClientConnectionsPerAddress; printed once there is one. */
    refusedPerAddress?: number;
  };
}

export function formatStatus(status: StatusBody): string {
  const rows: string[][] = [];
  for (const [name, v] of Object.entries(status.versions)) {
    const upstream = `${v.upstream.format} ${v.upstream.url}${v.upstream.model === undefined ? '' : ` (${v.upstream.model})`}`;
    const deploy =
      v.lastDeploy === null
        ? '-'
        : `${v.lastDeploy.kind} ${v.lastDeploy.phase}${v.lastDeploy.error ? `: ${v.lastDeploy.error.reason}` : ''}`;
    if (v.workers.length === 0)
      rows.push([name, String(v.weight), v.entry, upstream, '-', '-', '-', '-', String(v.queued), deploy]);
    v.workers.forEach((w, i) => {
      rows.push(
        i === 0
          ? [
              name,
              String(v.weight),
              v.entry,
              upstream,
              String(w.pid ?? '-'),
              w.state,
              String(w.restarts),
              String(w.inflight),
              String(v.queued),
              deploy,
            ]
          : ['', '', '', '', String(w.pid ?? '-'), w.state, String(w.restarts), String(w.inflight), '', ''],
      );
    });
  }
  const out = table(
    ['VERSION', 'WEIGHT', 'ENTRY', 'UPSTREAM', 'PID', 'STATE', 'RESTARTS', 'INFLIGHT', 'QUEUED', 'LAST DEPLOY'],
    rows,
  );
  // SPEC §11: a version's canary (running, held, or the last one, as it ended) shows under the table, once per canary.
  const canaries = new Map<string, NonNullable<StatusVersion['canary']>>();
  // Keyed by start too: a version's last canary as a baseline can be an older canary of a version now in another one.
  for (const v of Object.values(status.versions))
    if (v.canary !== undefined) canaries.set(`${v.canary.version} ${v.canary.startedAt}`, v.canary);
  // An ended canary's percent is history (the weights may have changed since): its end instead.
  const lines = [...canaries.values()].map((c) =>
    c.endedAt === null
      ? `canary ${c.version} (baseline ${c.baseline}): ${c.paused === true ? 'paused' : c.state}, step ${c.step + 1}/${c.steps.length}, ${c.canaryPercent} % — graygate canary status ${c.version}`
      : `last canary ${c.version} (baseline ${c.baseline}): ${c.state.replace('_', ' ')} at ${c.endedAt} — graygate canary status ${c.version}`,
  );
  for (const [name, { workers }] of Object.entries(status.removing ?? {}))
    lines.push(
      `removed ${name}, finishing: ` +
        workers.map((w) => `pid ${w.pid ?? '-'} ${w.state} (${w.inflight} in flight)`).join(', '),
    );
  const c = status.clientConnections;
  if (c !== undefined)
    lines.push(
      `client connections: ${c.open} open (bound ${c.max ?? 'none'}), ` +
        (c.closedIdle === undefined ? '' : `${c.closedIdle} idle closed for new ones, `) +
        `${c.pastBound} accepted past it (503), ${c.dropped} closed as accepted` +
        (c.refusedPerAddress ? `, ${c.refusedPerAddress} closed as accepted past the bound per client` : ''),
    );
  return lines.length === 0 ? out : `${out}\n\n${lines.join('\n')}`;
}
