import { basename } from 'node:path';
import { benchArgs, readJsonFile } from './args.js';
import { checkCounts } from './counts.js';

// What a V8 heap snapshot holds, by constructor (DevTools' "Summary" view,
// self sizes only): count and bytes per class, and per stream when the
// snapshot was taken with N streams open (issue 10: "what is held per stream").
// Snapshots come from `npm run loadtest -- streams --hold --heap-snapshot`.
// With --baseline IDLE.heapsnapshot (the same build at rest) the rows are the
// growth over it, so "per stream" is what one more stream adds.
// Usage: node dist/scripts/bench/heap-summary.js FILE.heapsnapshot \
//          [--baseline IDLE.heapsnapshot] [--streams N] [--top 40]

interface Snapshot {
  snapshot: { meta: { node_fields: string[]; node_types: [string[], ...unknown[]] }; node_count: number };
  nodes: number[];
  strings: string[];
}

interface ClassRow {
  name: string;
  count: number;
  bytes: number;
}

/** Groups the way DevTools does: objects and closures by name, everything else by its type. */
function classOf(type: string, name: string): string {
  switch (type) {
    case 'object':
    case 'native':
      return name;
    case 'closure':
      return `(closure) ${name === '' ? '(anonymous)' : name}`;
    case 'string':
    case 'concatenated string':
    case 'sliced string':
      return '(string)';
    case 'array':
      return `(array) ${name}`;
    default:
      return `(${type})`;
  }
}

export function summarizeHeap(snap: Snapshot): { totalBytes: number; nodes: number; rows: ClassRow[] } {
  const fields = snap.snapshot.meta.node_fields;
  const types = snap.snapshot.meta.node_types[0];
  const width = fields.length;
  const [typeAt, nameAt, sizeAt] = [fields.indexOf('type'), fields.indexOf('name'), fields.indexOf('self_size')];
  const byClass = new Map<string, ClassRow>();
  let totalBytes = 0;
  for (let i = 0; i < snap.nodes.length; i += width) {
    const type = types[snap.nodes[i + typeAt]!] ?? 'unknown';
    const name = classOf(type, snap.strings[snap.nodes[i + nameAt]!] ?? '');
    const bytes = snap.nodes[i + sizeAt]!;
    totalBytes += bytes;
    let row = byClass.get(name);
    if (row === undefined) byClass.set(name, (row = { name, count: 0, bytes: 0 }));
    row.count++;
    row.bytes += bytes;
  }
  return {
    totalBytes,
    nodes: snap.nodes.length / width,
    rows: [...byClass.values()].sort((a, b) => b.bytes - a.bytes),
  };
}

/** Rows of `s` minus the same classes in `base` (count and bytes), largest growth first. */
function subtract(
  s: ReturnType<typeof summarizeHeap>,
  base: ReturnType<typeof summarizeHeap>,
): ReturnType<typeof summarizeHeap> {
  const before = new Map(base.rows.map((r) => [r.name, r]));
  const rows = s.rows.map((r) => ({
    name: r.name,
    count: r.count - (before.get(r.name)?.count ?? 0),
    bytes: r.bytes - (before.get(r.name)?.bytes ?? 0),
  }));
  return {
    totalBytes: s.totalBytes - base.totalBytes,
    nodes: s.nodes - base.nodes,
    rows: rows.sort((a, b) => b.bytes - a.bytes),
  };
}

const { values, positionals: files } = benchArgs(
  {
    allowPositionals: true,
    options: { baseline: { type: 'string' }, streams: { type: 'string' }, top: { type: 'string', default: '40' } },
  },
  'FILE.heapsnapshot…',
);
const streams = values.streams === undefined ? undefined : Number(values.streams);
const top = Number(values.top);
checkCounts(streams === undefined ? { top } : { top, streams }, { atLeast: 1 });
const baseline = values.baseline === undefined ? undefined : summarizeHeap(readJsonFile(values.baseline) as Snapshot);
for (const file of files) {
  const whole = summarizeHeap(readJsonFile(file) as Snapshot);
  const s = baseline === undefined ? whole : subtract(whole, baseline);
  const mb = (b: number): string => (b / 1048576).toFixed(2);
  process.stdout.write(
    `== ${basename(file)}: ${mb(s.totalBytes)} MB in ${s.nodes} objects (self sizes)${baseline === undefined ? '' : ' over the baseline'}${streams === undefined ? '' : `; per stream over ${streams} streams`}\n`,
  );
  process.stdout.write(
    `${'MB'.padStart(8)} ${'count'.padStart(9)}${streams === undefined ? '' : `${'B/stream'.padStart(10)}${'n/stream'.padStart(10)}`}  class\n`,
  );
  for (const r of s.rows.slice(0, top)) {
    const per =
      streams === undefined
        ? ''
        : `${Math.round(r.bytes / streams)
            .toString()
            .padStart(10)}${(r.count / streams).toFixed(2).padStart(10)}`;
    process.stdout.write(`${mb(r.bytes).padStart(8)} ${String(r.count).padStart(9)}${per}  ${r.name}\n`);
  }
  process.stdout.write('\n');
}
