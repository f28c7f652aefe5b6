// Tables for the terminal summary and the Markdown report: one data shape, two renderings.

export interface Table {
  title: string;
  headers: string[];
  rows: Array<Array<string | number>>;
}

export function renderText(table: Table): string {
  const cells = [table.headers, ...table.rows.map((r) => r.map(String))];
  const widths = table.headers.map((_, i) => Math.max(...cells.map((r) => (r[i] ?? '').length)));
  const line = (r: string[]): string =>
    r.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join('  ');
  return [
    table.title,
    line(table.headers),
    widths.map((w) => '─'.repeat(w)).join('  '),
    ...cells.slice(1).map(line),
  ].join('\n');
}

export function renderMarkdown(table: Table): string {
  const esc = (c: string | number): string => String(c).replace(/\|/g, '\\|');
  return [
    `### ${table.title}`,
    '',
    `| ${table.headers.map(esc).join(' | ')} |`,
    `|${table.headers.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`,
    ...table.rows.map((r) => `| ${r.map(esc).join(' | ')} |`),
  ].join('\n');
}
