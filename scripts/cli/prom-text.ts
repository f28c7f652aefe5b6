// A reader of the Prometheus text exposition format (version 0.0.4), enough
// for `graygate top`: every sample as name, labels and value. Comments,
// HELP and TYPE lines are skipped; a line that is not a sample is an error,
// so a broken exposition is reported rather than shown as zeros.
// https://prometheus.io/docs/instrumenting/exposition_formats/

export interface Sample {
  /** Sample name as written, e.g. `graygate_request_duration_seconds_bucket`. */
  name: string;
  labels: Record<string, string>;
  value: number;
}

const SAMPLE_NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*/;
const LABEL_NAME = /^[a-zA-Z_][a-zA-Z0-9_]*/;

export function parsePrometheusText(text: string): Sample[] {
  const samples: Sample[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '' || line.startsWith('#')) continue;
    const sample = parseSample(line);
    if (sample === undefined) throw new Error(`line ${i + 1} is not a Prometheus sample: ${line.slice(0, 120)}`);
    samples.push(sample);
  }
  return samples;
}

function parseSample(line: string): Sample | undefined {
  const name = SAMPLE_NAME.exec(line)?.[0];
  if (name === undefined) return undefined;
  let rest = line.slice(name.length);
  const labels: Record<string, string> = {};
  if (rest.startsWith('{')) {
    rest = rest.slice(1);
    for (;;) {
      rest = rest.trimStart();
      if (rest.startsWith('}')) break;
      const label = LABEL_NAME.exec(rest)?.[0];
      if (label === undefined || rest[label.length] !== '=' || rest[label.length + 1] !== '"') return undefined;
      const read = readQuoted(rest, label.length + 2);
      if (read === undefined) return undefined;
      labels[label] = read.value;
      rest = rest.slice(read.end).trimStart();
      if (rest.startsWith(',')) rest = rest.slice(1);
      else if (!rest.startsWith('}')) return undefined;
    }
    rest = rest.slice(1);
  }
  // Value, then an optional timestamp we do not need.
  const valueText = rest.trim().split(/\s+/, 1)[0] ?? '';
  const value = parseValue(valueText);
  return value === undefined ? undefined : { name, labels, value };
}

/** A label value starting after its opening quote at `start`; `end` is the index after the closing quote. */
function readQuoted(text: string, start: number): { value: string; end: number } | undefined {
  let value = '';
  for (let i = start; i < text.length; i++) {
    const c = text[i]!;
    if (c === '"') return { value, end: i + 1 };
    if (c !== '\\') {
      value += c;
      continue;
    }
    const next = text[++i];
    if (next === 'n') value += '\n';
    else if (next === '\\' || next === '"') value += next;
    else return undefined;
  }
  return undefined;
}

// Prometheus reads values with Go's ParseFloat, which ignores case in NaN and
// Inf; prom-client writes `Nan` (e.g. an event-loop mean before its first sample).
function parseValue(text: string): number | undefined {
  const lower = text.toLowerCase();
  if (lower === '+inf' || lower === 'inf' || lower === '+infinity' || lower === 'infinity') return Infinity;
  if (lower === '-inf' || lower === '-infinity') return -Infinity;
  if (lower === 'nan') return NaN;
  if (text === '' || !/^[-+0-9.eE]+$/.test(text)) return undefined;
  const n = Number(text);
  return Number.isNaN(n) ? undefined : n;
}

/** Sum of the samples named `name` whose labels include every pair in `match`. */
export function sumSamples(
  samples: readonly Sample[],
  name: string,
  match: Readonly<Record<string, string>> = {},
): number {
  let total = 0;
  for (const s of samples) {
    if (s.name !== name) continue;
    if (Object.entries(match).every(([k, v]) => s.labels[k] === v)) total += s.value;
  }
  return total;
}
