import { existsSync, mkdirSync, statSync, writeFileSync } from 'node:fs';
import { cpus, loadavg, totalmem } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import type { ScenarioOutput } from './scenario.js';
import { renderMarkdown } from './table.js';

// Every run writes <scenario>-<timestamp>.json and .md, plus one .svg per
// chart, under reports/ (git-ignored) or --report-dir (issue 6).

export interface Machine {
  cores: number;
  cpuModel: string;
  totalMemoryMb: number;
  node: string;
  platform: string;
  /** 1-minute load average when the run started: other work on the box skews every figure. */
  loadAverageAtStart: number;
}

export function describeMachine(): Machine {
  const cpu = cpus();
  return {
    cores: cpu.length,
    cpuModel: cpu[0]?.model.trim() ?? 'unknown',
    totalMemoryMb: Math.round(totalmem() / (1024 * 1024)),
    node: process.version,
    platform: `${process.platform} ${process.arch}`,
    loadAverageAtStart: Math.round(loadavg()[0]! * 100) / 100,
  };
}

export interface FullReport extends Omit<ScenarioOutput, 'charts' | 'tables'> {
  scenario: string;
  command: string;
  startedAt: string;
  finishedAt: string;
  machine: Machine;
  options: Record<string, unknown>;
  /** True when every measured target is met (targets that could not be measured do not count as met). */
  isOk: boolean;
  tables: ScenarioOutput['tables'];
  charts: string[];
  files: { json: string; markdown: string };
}

export interface WriteReportOptions {
  machine: Machine;
  dir: string;
  scenario: string;
  command: string;
  startedAt: Date;
  options: Record<string, unknown>;
  output: ScenarioOutput;
}

/**
 * Makes the report directory and its missing parents, one level at a time (node 20's recursive mkdirSync spins for
 * ever on a path under /proc); throws on a path that is a file or cannot be made.
 */
export function makeReportDir(dir: string): void {
  const missing: string[] = [];
  let at = resolve(dir);
  while (!existsSync(at)) {
    missing.unshift(at);
    const parent = dirname(at);
    if (parent === at) break;
    at = parent;
  }
  if (missing.length === 0 && !statSync(at).isDirectory()) throw new Error('not a directory');
  for (const path of missing) mkdirSync(path);
}

export function writeReport(options: WriteReportOptions): FullReport {
  makeReportDir(options.dir);
  const stamp = options.startedAt.toISOString().replace(/[:.]/g, '-');
  const base = join(options.dir, `${options.scenario}-${stamp}`);
  const { output } = options;
  const chartFiles = output.charts.map((c) => {
    const file = `${base}-${c.name}.svg`;
    writeFileSync(file, c.svg);
    return file;
  });
  const report: FullReport = {
    scenario: options.scenario,
    command: options.command,
    startedAt: options.startedAt.toISOString(),
    finishedAt: new Date().toISOString(),
    machine: options.machine,
    options: options.options,
    isOk: output.failure === undefined && output.targets.every((t) => t.isMet === true),
    results: output.results,
    targets: output.targets,
    notes: output.notes,
    tables: output.tables,
    charts: chartFiles,
    files: { json: `${base}.json`, markdown: `${base}.md` },
  };
  writeFileSync(report.files.json, JSON.stringify(report, null, 2) + '\n');
  writeFileSync(report.files.markdown, toMarkdown(report, output));
  return report;
}

function toMarkdown(report: FullReport, output: ScenarioOutput): string {
  const m = report.machine;
  const lines = [
    `# graygate load test: ${report.scenario}`,
    '',
    `- command: \`${report.command}\``,
    `- machine: ${m.cores} cores (${m.cpuModel}), ${m.totalMemoryMb} MB RAM, Node ${m.node}, ${m.platform}; load average ${m.loadAverageAtStart} at the start`,
    `- run: ${report.startedAt} → ${report.finishedAt}`,
    '',
  ];
  for (const table of output.tables) lines.push(renderMarkdown(table), '');
  if (output.targets.length > 0) {
    lines.push('### Targets', '', '| target | measured | limit | met |', '|---|---:|---:|---|');
    for (const t of output.targets)
      lines.push(
        `| ${t.name} | ${t.value} | ${t.limit} | ${t.isMet === null ? 'not measured' : t.isMet ? 'yes' : '**no**'} |`,
      );
    lines.push('');
  }
  for (const [i, c] of output.charts.entries()) lines.push(`![${c.title}](${report.charts[i]!.split('/').pop()})`, '');
  if (output.notes.length > 0) lines.push('### Notes', '', ...output.notes.map((n) => `- ${n}`), '');
  return lines.join('\n');
}
