import { createRequire } from 'node:module';
import type { Gateway } from './gateway.js';
import { pollUntil } from './wait.js';
import { parsePrometheusText, sumSamples, type Sample } from '../../scripts/cli/prom-text.js';

// Scrapes GET /metrics and reads it two ways: with parse-prometheus-text-format
// (a third-party parser: proves the exposition is valid) and with the CLI's
// own sample reader (labelled histograms, which that parser flattens).

export interface Family {
  name: string;
  help: string;
  type: string;
  metrics: Array<{ value?: string; labels?: Record<string, string> }>;
}

const require = createRequire(import.meta.url);
/** parse-prometheus-text-format ships no types; it throws on a malformed line. */
export const parsePromText = require('parse-prometheus-text-format') as (text: string) => Family[];

export interface Scrape {
  status: number;
  contentType: string | null;
  text: string;
  families: Family[];
  samples: Sample[];
  /** Sum of the samples named `name` whose labels include `match`. */
  sum(name: string, match?: Record<string, string>): number;
}

export async function scrape(gw: Gateway, headers: Record<string, string> = {}): Promise<Scrape> {
  const res = await fetch(`${gw.adminUrl}/metrics`, { headers });
  const text = await res.text();
  if (res.status !== 200)
    return {
      status: res.status,
      contentType: res.headers.get('content-type'),
      text,
      families: [],
      samples: [],
      sum: () => NaN,
    };
  const samples = parsePrometheusText(text);
  return {
    status: res.status,
    contentType: res.headers.get('content-type'),
    text,
    families: parsePromText(text),
    samples,
    sum: (name, match = {}) => sumSamples(samples, name, match),
  };
}

/**
 * Scrapes until `condition` holds (metrics have no push events,
 * so polling is the event); bounded so a broken test fails.
 */
export function scrapeUntil(
  gw: Gateway,
  condition: (s: Scrape) => boolean,
  what: string,
  attempts = 2000,
): Promise<Scrape> {
  return pollUntil(
    () => scrape(gw),
    condition,
    what,
    attempts,
    (last) =>
      `graygate_* series of the last scrape:\n${
        last?.text
          .split('\n')
          .filter((l) => l.startsWith('graygate_'))
          .join('\n') ?? ''
      }`,
  );
}
