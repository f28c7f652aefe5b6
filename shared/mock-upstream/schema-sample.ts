import { mockText } from './text.js';

// A value that follows a JSON Schema, made the same way every time, for the
// mock's JSON-mode answers and tool-call arguments (SPEC §8, §12): every
// property of an object (required or not), one item per array, the first of
// an enum or a union, and fixed scalars (strings are mock text, so they
// carry multi-byte characters too). `$ref` and deeper than 8 levels: null.

const MAX_DEPTH = 8;

export function sampleFromSchema(schema: unknown, depth = 0): unknown {
  if (typeof schema !== 'object' || schema === null || depth > MAX_DEPTH) return null;
  const s = schema as Record<string, unknown>;
  if (Array.isArray(s['enum']) && s['enum'].length > 0) return s['enum'][0];
  if ('const' in s) return s['const'];
  for (const key of ['anyOf', 'oneOf', 'allOf']) {
    const options = s[key];
    if (Array.isArray(options) && options.length > 0)
      return sampleFromSchema(options.find((o) => (o as { type?: unknown }).type !== 'null') ?? options[0], depth + 1);
  }
  const type = Array.isArray(s['type']) ? (s['type'] as unknown[]).find((t) => t !== 'null') : s['type'];
  switch (type) {
    case 'object': {
      const properties = (s['properties'] ?? {}) as Record<string, unknown>;
      return Object.fromEntries(
        Object.entries(properties).map(([name, sub]) => [name, sampleFromSchema(sub, depth + 1)]),
      );
    }
    case 'array':
      return [sampleFromSchema(s['items'], depth + 1)];
    case 'string':
      return mockText(3);
    case 'number':
      return 4.5;
    case 'integer':
      return 42;
    case 'boolean':
      return true;
    default:
      return s['properties'] === undefined ? null : sampleFromSchema({ ...s, type: 'object' }, depth);
  }
}
