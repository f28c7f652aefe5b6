// Reads counters from graygate's Prometheus text (GET /metrics on the admin
// port, SPEC §9): enough to split 503s by reason without parsing bodies.

/** Sum of a metric's samples per value of one label, e.g. graygate_rejected_total by reason. */
export function sumByLabel(text: string, metric: string, label: string): Record<string, number> {
  const out: Record<string, number> = {};
  const pattern = new RegExp(`^${metric}\\{([^}]*)\\}\\s+(\\S+)`);
  for (const line of text.split('\n')) {
    const match = pattern.exec(line);
    if (match === null) continue;
    const value = new RegExp(`(?:^|,)${label}="([^"]*)"`).exec(match[1]!)?.[1] ?? '';
    out[value] = (out[value] ?? 0) + Number(match[2]);
  }
  return out;
}

export async function fetchMetrics(adminUrl: string): Promise<string> {
  const res = await fetch(`${adminUrl}/metrics`, { signal: AbortSignal.timeout(10_000) });
  return res.text();
}
