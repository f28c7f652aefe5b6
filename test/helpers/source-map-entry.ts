import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

// A report's `source-map-cache`, which tap's report maps a built script's coverage back to its .ts with: the entry
// node's own cache (NODE_V8_COVERAGE) held for each script, made from the .js.map beside the script. The children's
// coverage (child-coverage.cjs) leaves them out; flushChildCoverage (child-env.ts) adds each once a test process.

/** A script's entry in a report's `source-map-cache` as node's own cache holds it, if it names a source map. */
export interface SourceMapEntry {
  /** The script's line lengths, which tap's report rebuilds its text from. */
  lineLengths: number[];
  /** The map, its `sources` made absolute URLs against its own URL. */
  data: { sources: string[]; sourceRoot?: string };
}

/** The `//# sourceMappingURL=` comment that tsc writes at a script's end (node takes the last one). */
const SOURCE_MAPPING_URL = /\/[*/]#\s+sourceMappingURL=(?<url>[^\s]+)/g;

/**
 * `url`'s source map entry (node's source_map_cache.js: the same lineLengths, the same absolute sources); undefined
 * when the script names no map file, or either is not there.
 */
export function sourceMapEntry(url: string): SourceMapEntry | undefined {
  let text: string;
  try {
    text = readFileSync(fileURLToPath(url), 'utf8');
  } catch {
    return undefined;
  }
  const named = [...text.matchAll(SOURCE_MAPPING_URL)].at(-1)?.groups?.['url'];
  if (named === undefined || named.startsWith('data:')) return undefined;
  const mapUrl = new URL(named, url);
  let data: SourceMapEntry['data'];
  try {
    data = JSON.parse(readFileSync(fileURLToPath(mapUrl), 'utf8')) as SourceMapEntry['data'];
  } catch {
    return undefined;
  }
  data.sources = data.sources.map((source) => new URL((data.sourceRoot ?? '') + source, mapUrl).href);
  data.sourceRoot = '';
  return { lineLengths: lineLengths(text), data };
}

/** Each line's length in UTF-16 units, the line ends (\n, U+2028, U+2029) not counted and \r counted, as node's. */
function lineLengths(text: string): number[] {
  const lengths: number[] = [];
  let start = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text.charCodeAt(i);
    if (c === 0x0a || c === 0x2028 || c === 0x2029) {
      lengths.push(i - start);
      start = i + 1;
    }
  }
  lengths.push(text.length - start);
  return lengths;
}
