// Human output of the CLI: plain aligned tables, no colour, so it pipes well.

export function table(headers: readonly string[], rows: ReadonlyArray<readonly string[]>): string {
  const widths = headers.map((h, i) => Math.max(h.length, ...rows.map((r) => (r[i] ?? '').length)));
  const line = (cells: readonly string[]): string => cells.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

interface StatusWorker {
  pid?: number;
  instance: number;
  state: string;
  restarts: number;
  inflight: number;
  queued: number;
}
interface StatusVersion {
  weight: number;
  entry: string;
  upstream: { format: string; url: string; model?: string };
  workers: StatusWorker[];
  lastDeploy: { kind: string; phase: string; durationMs?: number; error?: { reason: string } } | null;
}
export interface StatusBody {
  versions: Record<string, StatusVersion>;
}

export function formatStatus(status: StatusBody): string {
  const rows: string[][] = [];
  for (const [name, v] of Object.entries(status.versions)) {
    const upstream = `${v.upstream.format} ${v.upstream.url}${v.upstream.model === undefined ? '' : ` (${v.upstream.model})`}`;
    const deploy = v.lastDeploy === null ? '-' : `${v.lastDeploy.kind} ${v.lastDeploy.phase}${v.lastDeploy.error ? `: ${v.lastDeploy.error.reason}` : ''}`;
    if (v.workers.length === 0) rows.push([name, String(v.weight), v.entry, upstream, '-', '-', '-', '-', '-', deploy]);
    v.workers.forEach((w, i) => {
      rows.push(
        i === 0
          ? [name, String(v.weight), v.entry, upstream, String(w.pid ?? '-'), w.state, String(w.restarts), String(w.inflight), String(w.queued), deploy]
          : ['', '', '', '', String(w.pid ?? '-'), w.state, String(w.restarts), String(w.inflight), String(w.queued), ''],
      );
    });
  }
  return table(['VERSION', 'WEIGHT', 'ENTRY', 'UPSTREAM', 'PID', 'STATE', 'RESTARTS', 'INFLIGHT', 'QUEUED', 'LAST DEPLOY'], rows);
}
