import type { Args } from './args.js';
import type { Progress } from './progress.js';
import type { Table } from './table.js';

// What every scenario file exports: a function from the parsed flags to its
// figures, tables, targets and charts. The entry point writes the reports.

export interface Target {
  /** What is checked, e.g. "graygate master peak RSS". */
  name: string;
  /** Measured value, formatted with its unit. */
  value: string;
  /** The target, e.g. "< 120 MB". */
  limit: string;
  /** null: could not be measured in this run (shown, never counted as met). */
  isMet: boolean | null;
}

export interface Chart {
  /** File-name part, e.g. "rss". */
  name: string;
  title: string;
  svg: string;
}

export interface ScenarioOutput {
  /** The figures, JSON-safe. */
  results: unknown;
  tables: Table[];
  targets: Target[];
  charts: Chart[];
  /** Lines worth reading next to the tables (how to read them, what was skipped). */
  notes: string[];
  /**
   * Set when the target failed during the run (graygate's master exited): the report is written, and the run exits
   * 3 (README: the scenario failed to run) with this text, not 0 with figures of a dead target.
   */
  failure?: string;
}

export interface ScenarioContext {
  args: Args;
  signal: AbortSignal;
  progress: Progress;
}

export type Scenario = (ctx: ScenarioContext) => Promise<ScenarioOutput>;
