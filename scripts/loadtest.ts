import { USAGE, parseLoadtestArgs, type Args, type ScenarioName } from './loadtest/args.js';
import { parseArgsProblem } from './parse-args-problem.js';
import { interruptSignal, stopAll } from './loadtest/processes.js';
import { Progress } from './loadtest/progress.js';
import { describeMachine, makeReportDir, writeReport } from './loadtest/report.js';
import type { Scenario } from './loadtest/scenario.js';
import { renderText } from './loadtest/table.js';
import { runCapacity } from './loadtest/scenarios/capacity.js';
import { runBacklog } from './loadtest/scenarios/backlog.js';
import { runStreams } from './loadtest/scenarios/streams.js';
import { runSwap } from './loadtest/scenarios/swap.js';
import { runCompare } from './loadtest/scenarios/compare.js';
import { runCanary } from './loadtest/scenarios/canary.js';

// `npm run loadtest -- <scenario> [flags]` (SPEC §9, issue 6). Wiring only:
// parse flags, run one scenario, write its reports, print the summary.
// Exit codes: 0 ok (or targets missed without --assert), 1 target missed with
// --assert, 2 bad usage, 3 the scenario failed to run (or its target, graygate's master, exited during it: the report
// is still written), 130/143 interrupted.

const SCENARIO_RUNNERS: Record<ScenarioName, Scenario> = {
  capacity: runCapacity,
  backlog: runBacklog,
  streams: runStreams,
  swap: runSwap,
  compare: runCompare,
  canary: runCanary,
};

const argv = process.argv.slice(2);
if (argv.includes('--help') || argv.includes('-h')) {
  process.stdout.write(USAGE);
  process.exit(0);
}
let args: Args;
try {
  args = parseLoadtestArgs(argv);
} catch (err) {
  const problem = parseArgsProblem(err) ?? (err instanceof Error ? err.message : String(err));
  process.stderr.write(`loadtest: ${problem}\n\n${USAGE}`);
  process.exit(2);
}

// Where the report goes, made before any load: a path that cannot hold it failed only after the whole run, its
// figures lost (and node's recursive mkdir spins for ever under /proc).
try {
  makeReportDir(args.reportDir);
} catch (err) {
  process.stderr.write(
    `loadtest: --report-dir ${args.reportDir}: ${err instanceof Error ? err.message : String(err)}\n`,
  );
  process.exit(2);
}

const signal = interruptSignal();
const progress = new Progress({ isQuiet: false });
const startedAt = new Date();
const machine = describeMachine(); // before the scenario loads the box
progress.phase(`loadtest ${args.scenario}`);

try {
  const output = await SCENARIO_RUNNERS[args.scenario]({ args, signal, progress });
  progress.done();
  // Interrupted, a scenario may still return what it had: a cut step's figures are not a result (the handler exits).
  if (signal.aborted) throw signal.reason;
  const { scenario, reportDir: _dir, ...options } = args;
  const report = writeReport({
    dir: args.reportDir,
    scenario,
    command: `npm run loadtest -- ${argv.join(' ')}`,
    startedAt,
    machine,
    options,
    output,
  });
  if (args.isJson) {
    process.stdout.write(JSON.stringify(report, null, 2) + '\n');
  } else {
    for (const table of output.tables) process.stdout.write(`\n${renderText(table)}\n`);
    if (output.targets.length > 0) {
      process.stdout.write(
        `\n${renderText({
          title: 'Targets',
          headers: ['target', 'measured', 'limit', 'met'],
          rows: output.targets.map((t) => [
            t.name,
            t.value,
            t.limit,
            t.isMet === null ? 'n/a' : t.isMet ? 'yes' : 'NO',
          ]),
        })}\n`,
      );
    }
    for (const note of output.notes) process.stdout.write(`\n  ${note}`);
    process.stdout.write(`\n\nreport: ${report.files.markdown}\n        ${report.files.json}\n`);
    for (const chart of report.charts) process.stdout.write(`        ${chart}\n`);
  }
  if (output.failure !== undefined) {
    process.stderr.write(`loadtest ${args.scenario} failed: ${output.failure} (report written)\n`);
    process.exitCode = 3;
  } else if (args.isAssert && !report.isOk) {
    const missed = output.targets.filter((t) => t.isMet !== true).map((t) => t.name);
    process.stderr.write(`loadtest: target missed: ${missed.join('; ')}\n`);
    process.exitCode = 1;
  }
} catch (err) {
  progress.done();
  if (signal.aborted) {
    // the interrupt handler stops everything and exits
  } else {
    process.stderr.write(`loadtest ${args.scenario} failed: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exitCode = 3;
  }
} finally {
  await stopAll();
}
// Keep-alive sockets or a stuck naive proxy's timers must not keep a finished run alive.
process.exit(process.exitCode ?? 0);
