import { setTimeout as delay } from 'node:timers/promises';
import { resolve } from 'node:path';
import { parseArgs } from 'node:util';
import { resolveAdminUrl } from './admin-address.js';
import { MAX_TIMER_MS } from '../../shared/defaults.js';
import { callAdmin, CliError, EXIT, type AdminClientOptions } from './admin-client.js';
import { exitQuietlyOnBrokenPipe } from './broken-pipe.js';
import { formatStatus, printable, table, type StatusBody } from './format.js';
import { formatCanary, parseDuration, parseSteps, type CanaryStatusBody } from './canary.js';
import { runTop } from './top.js';
import { packageVersion } from './version.js';
import { parseArgsProblem } from '../parse-args-problem.js';

// `graygate <command>` (SPEC §7): a thin client of the admin API, plus `start`
// and `mock-upstream`, which run in this process.

const USAGE = `usage: graygate <command> [flags]

commands:
  start [--config F]                        run the gateway (same as npm start)
  status [--json] [--watch [--interval S] [--iterations N]]
                                            versions, weights, workers (--watch: same as top)
  top [--json] [--interval S] [--iterations N]
                                            live per-version req/s, error %, p99, queue (Ctrl-C quits)
  weights v1=90 v2=10                       set weights atomically (others unchanged)
  add NAME --entry F [--weight N] [--instances N]
  deploy NAME [--entry F] [--instances N]   swap NAME's worker build without dropping requests
  rollback NAME                             deploy NAME's previous build
  remove NAME                               stop routing to NAME, drain and stop its workers
  reload                                    re-read the config file and apply the difference
  canary [start] NAME [--baseline V] [--steps 5,25,50,100] [--pause-at 25,50] [--step 60s] [--min-requests 200]
         [--max-step 10m] [--on-inconclusive hold|rollback] [--alpha 0.01]
         [--non-inferiority] [--no-error-rate] [--no-first-token] [--no-response-time] [--no-time-per-token]
         [--latency-margin 20ms] [--time-per-token-margin 2ms] [--max-error-rate 5%]
                                            start a canary of NAME: step its weight up, judged
                                            against the baseline, promoted or rolled back by itself
                                            (canary start NAME: the same, for a version named
                                            status, promote, pause, resume or abort)
  canary status [NAME]                      a canary's state and the numbers behind it (all without NAME)
  canary status NAME --wait [--interval S] [--timeout 30m]
                                            …once it has ended: exit 0 promoted, 3 rolled back,
                                            aborted or held (a pipeline's gate; a pause waits),
                                            124 still running or paused at --timeout
  canary promote NAME                       promote NAME's canary now, whatever its step (running
                                            or held): it gets the pair's whole weight
  canary pause NAME                         hold NAME's canary at its step (still judged) until resumed
  canary resume NAME                        let a held or paused canary step on again from its step
  canary abort NAME                         stop NAME's canary; its weight goes back to 0
  mock-upstream [--port N] [--format F] [--fail-every N] [--first-byte-ms MS]
                [--interval-ms MS] [--tokens N]
                                            run the embedded mock upstream alone; --fail-every:
                                            every Nth answer a 500; --first-byte-ms: each answer's
                                            first byte that late; --interval-ms: tokens that far
                                            apart (a worse upstream for a canary)

flags:
  --admin ADDR      admin API: http(s)://HOST:PORT, HOST:PORT, HOST, :PORT or PORT
                    (no scheme: http://; HOST alone: the admin port below; a port alone: 127.0.0.1)
  --json            machine-readable output (top: one JSON object per line per refresh)
  --interval S      top: seconds between refreshes (default 1)
  --iterations N    top: stop after N refreshes (default: until Ctrl-C)
  -v, --version     print the version
  -h, --help        print this help

environment:
  GRAYGATE_ADMIN_URL    admin API when --admin is not given (same forms as --admin)
  GRAYGATE_ADMIN_PORT   admin port when neither is given: http://127.0.0.1:PORT,
                        default 9000 (the gateway moves its admin port with it too)
  GRAYGATE_ADMIN_TOKEN  bearer token for the admin API

exit codes: 0 ok, 1 the admin API refused the call, 3 canary status --wait: not
promoted, 64 usage, 69 admin API unreachable (top: 5 refreshes, --wait: 60 s),
124 canary status --wait: --timeout passed with the canary not ended,
130 interrupted (Ctrl-C on deploy stops the waiting only: the deploy goes on),
141 the reader of the output went away (e.g. | head)`;

type Print = (value: unknown, human: () => string) => void;

/**
 * An add's, deploy's, rollback's or removal's answer: the canary it ended, the warnings it logged (absent from an older
 * master's).
 */
interface AnswerNotes {
  abortedCanary?: { canary: string; baseline: string };
  warnings?: string[];
}

/**
 * A line "aborted the canary of v3 (baseline v1)", as reload says it (a probe: "deployed v3" alone hid the abort), and
 * a line for each warning an add, a deploy or a rollback logged, as reload prints them.
 */
function notesLines({ abortedCanary: a, warnings = [] }: AnswerNotes): string {
  const aborted = a === undefined ? '' : `\naborted the canary of ${a.canary} (baseline ${a.baseline})`;
  return aborted + warnings.map((warning) => `\nwarning: ${warning}`).join('');
}

/**
 * `canary status --wait`: how long an unreachable admin API is retried before it exits 69, ms (a master restarting:
 * its shutdown drains for up to shutdownTimeoutMs, 30 s by default, then the new one starts its workers).
 */
const WAIT_UNREACHABLE_MS = 60_000;

/** `canary status --wait --timeout`: how long the look at the deadline may take to be answered, ms. */
const LAST_LOOK_MS = 2000;

/**
 * `canary status --wait`: how long one look may take to be answered, ms. An admin API that took the connection and
 * never answered (a master stopped, its event loop stuck) held a `--wait` without `--timeout` for ever; unanswered, a
 * look is an unreachable admin API, retried for WAIT_UNREACHABLE_MS as a refused connection is.
 */
const LOOK_MS = 10_000;

async function canaryCommand(
  args: string[],
  values: Record<string, string | boolean | undefined>,
  client: () => AdminClientOptions,
  print: Print,
): Promise<void> {
  const [first, second] = args;
  if (first === 'status') {
    if (second === undefined) {
      const { canaries } = await callAdmin<{ canaries: CanaryStatusBody[] }>(client(), {
        method: 'GET',
        path: '/admin/canaries',
      });
      return print({ canaries }, () =>
        canaries.length === 0 ? 'no canaries' : canaries.map(formatCanary).join('\n\n'),
      );
    }
    // A bad interval or timeout is a usage error before any call, not after the first.
    const everyMs = intervalMs(values['interval'] as string | undefined) ?? 1000;
    const timeoutMs = waitTimeoutMs(values['timeout'] as string | undefined);
    // Counted from the command's start, as Argo Rollouts' `status --timeout` and timeout(1) count.
    const deadlineMs = timeoutMs === undefined ? Infinity : performance.now() + timeoutMs;
    // A look is bounded (LOOK_MS; with --timeout, also by the time left, the one at the deadline getting LAST_LOOK_MS):
    // an admin API that took the connection and never answered (a master stopped, its event loop stuck) held
    // `--timeout 1s` for ever. Unanswered, a look is an unreachable admin (retried, then 69).
    const lookMs = (): number => Math.ceil(Math.min(LOOK_MS, Math.max(deadlineMs - performance.now(), LAST_LOOK_MS)));
    // Without --wait, one look, unbounded as every one-shot command's call is (kubectl's and curl's are).
    const isWait = values['wait'] === true;
    const get = (): Promise<CanaryStatusBody> =>
      callAdmin<CanaryStatusBody>(client(), {
        method: 'GET',
        path: `/admin/versions/${encodeURIComponent(second)}/canary`,
        ...(isWait ? { timeoutMs: lookMs() } : {}),
      });
    let one = await get();
    /** When `one` was answered. */
    let seenAtMs = performance.now();
    if (!isWait) return print(one, () => formatCanary(one));
    // Argo Rollouts' `status` as a pipeline's gate: the verdict, then an exit code a script can branch on.
    let unreachableSinceMs: number | undefined;
    // A canary paused by hand waits for its operator (resume, promote, abort), as Argo Rollouts' `status --watch` waits
    // on a paused rollout; one held by the judge (no verdict in maxStepMs) is the gate's answer: it will not move.
    let isPauseSaid = false;
    while (one.state === 'running' || one.paused === true) {
      // Said once a pause (it waits for a person, not a verdict: a pipeline's own timeout bounds it).
      if (one.paused === true && !isPauseSaid) {
        isPauseSaid = true;
        process.stderr.write(
          `graygate: canary ${one.version} is paused at step ${one.step + 1} (${one.steps[one.step]} %); ` +
            'waiting until it is resumed, promoted or aborted\n',
        );
      }
      const leftMs = deadlineMs - performance.now();
      if (leftMs <= 0) {
        const still = one;
        print(still, () => formatCanary(still));
        const where = `${still.paused === true ? 'paused' : still.state} at step ${still.step + 1}/${still.steps.length}`;
        // The admin API gone quiet since the last answer: what was printed is that answer, not the canary now.
        const seen =
          unreachableSinceMs === undefined
            ? `is still ${where}`
            : `was last seen ${where} ${((performance.now() - seenAtMs) / 1000).toFixed(1)} s ago (the admin API ` +
              'has not answered since)';
        throw new CliError(
          `canary ${still.version} ${seen} after --timeout ${values['timeout'] as string}: not promoted yet`,
          EXIT.timedOut,
        );
      }
      // The last look is at the deadline, not up to an interval past it.
      await delay(Math.min(everyMs, leftMs));
      const askedMs = performance.now();
      try {
        one = await get();
        seenAtMs = performance.now();
        unreachableSinceMs = undefined;
      } catch (err) {
        if (!(err instanceof CliError)) throw err;
        // A master restarting (`pm2 reload`, a pod's container) is retried, as `graygate top` retries it (a probe: the
        // gate failed at its first missed call), for a restart's time; the master it starts has no canary (the 404).
        const isFirstMiss = unreachableSinceMs === undefined;
        unreachableSinceMs ??= askedMs;
        if (err.exitCode === EXIT.unreachable && performance.now() - unreachableSinceMs < WAIT_UNREACHABLE_MS) {
          // Said once an outage (a look every --interval would print a line each), at its first missed look.
          if (isFirstMiss) {
            const until =
              deadlineMs - performance.now() < WAIT_UNREACHABLE_MS - (performance.now() - unreachableSinceMs)
                ? `until --timeout ${values['timeout'] as string}`
                : `for up to ${WAIT_UNREACHABLE_MS / 1000} s`;
            process.stderr.write(`graygate: ${printable(err.message)}; retrying ${until}\n`);
          }
          continue;
        }
        // Its version was removed, and the canary with it (the removal aborts it, SPEC §11), or the master restarted
        // and starts from the file: not promoted, as README's exit 3 says, not the API's refusal (1) that a name never
        // known gets.
        if (err.status !== 404) throw err;
        throw new CliError(
          `canary ${second} ended unpromoted: the admin API no longer knows it (${err.message}); its version was ` +
            "removed, or the master restarted (a canary lives in the master's memory)",
          EXIT.notPromoted,
        );
      }
    }
    const ended = one;
    print(ended, () => formatCanary(ended));
    if (ended.state !== 'promoted')
      throw new CliError(`canary ${ended.version} ${ended.state.replace('_', ' ')}: ${ended.reason}`, EXIT.notPromoted);
    return;
  }
  if (first === 'promote' || first === 'pause' || first === 'resume') {
    if (second === undefined) usage(`canary ${first} needs a version name`);
    const changed = await callAdmin<CanaryStatusBody>(client(), {
      method: 'POST',
      path: `/admin/versions/${encodeURIComponent(second)}/canary/${first}`,
    });
    return print(changed, () => formatCanary(changed));
  }
  if (first === 'abort') {
    if (second === undefined) usage('canary abort needs a version name');
    const aborted = await callAdmin<CanaryStatusBody>(client(), {
      method: 'DELETE',
      path: `/admin/versions/${encodeURIComponent(second)}/canary`,
    });
    return print(aborted, () => formatCanary(aborted));
  }
  // `canary start NAME` too, for a version literally named status, promote, pause, resume or abort.
  const name = first === 'start' ? second : first;
  if (name === undefined) usage('canary needs a version name');
  const body: Record<string, unknown> = {};
  const text = (key: string): string | undefined => (typeof values[key] === 'string' ? values[key] : undefined);
  if (text('baseline') !== undefined) body['baseline'] = text('baseline');
  if (text('steps') !== undefined)
    body['steps'] =
      parseSteps(text('steps')!) ??
      usage(`--steps must be percentages like 5,25,50,100, got ${JSON.stringify(text('steps'))}`);
  if (text('pause-at') !== undefined)
    body['pauseAt'] =
      parseSteps(text('pause-at')!) ??
      usage(`--pause-at must be percentages of --steps like 25,50, got ${JSON.stringify(text('pause-at'))}`);
  for (const [flag, key] of [
    ['step', 'stepMs'],
    ['max-step', 'maxStepMs'],
  ] as const) {
    const raw = text(flag);
    if (raw !== undefined)
      body[key] =
        parseDuration(raw) ?? usage(`--${flag} must be a duration like 60s, 500ms or 10m, got ${JSON.stringify(raw)}`);
  }
  const minRequests = positiveInt(text('min-requests'), '--min-requests');
  if (minRequests !== undefined) body['minRequests'] = minRequests;
  if (text('on-inconclusive') !== undefined) body['onInconclusive'] = text('on-inconclusive');
  const alpha = text('alpha');
  if (alpha !== undefined) {
    const value = alpha.trim() === '' ? NaN : Number(alpha);
    // The API bounds it (0 < alpha < 1); a usage error is what text that is no number at all gets, as other flags do.
    body['alpha'] = Number.isFinite(value)
      ? value
      : usage(`--alpha must be a number like 0.01, got ${JSON.stringify(alpha)}`);
  }
  if (values['non-inferiority'] === true) body['requireNonInferiority'] = true;
  const criteria: Record<string, false | number | { marginMs: number }> = {};
  const marginText = text('latency-margin');
  if (marginText !== undefined) {
    // A unit is required: a bare number reads as seconds elsewhere (--step 60), and 20 s would switch the p99s off.
    const marginMs =
      (/[a-z]\s*$/i.test(marginText) ? parseDuration(marginText) : undefined) ??
      usage(`--latency-margin must be a duration with its unit, like 20ms, got ${JSON.stringify(marginText)}`);
    criteria['firstTokenP99'] = { marginMs };
    criteria['responseTimeP99'] = { marginMs };
  }
  const tokenMarginText = text('time-per-token-margin');
  if (tokenMarginText !== undefined) {
    const marginMs =
      (/[a-z]\s*$/i.test(tokenMarginText) ? parseDuration(tokenMarginText) : undefined) ??
      usage(
        `--time-per-token-margin must be a duration with its unit, like 2ms, got ${JSON.stringify(tokenMarginText)}`,
      );
    criteria['timePerTokenP99'] = { marginMs };
  }
  if (values['no-error-rate'] === true) criteria['errorRate'] = false;
  if (values['no-first-token'] === true) criteria['firstTokenP99'] = false;
  if (values['no-response-time'] === true) criteria['responseTimeP99'] = false;
  if (values['no-time-per-token'] === true) criteria['timePerTokenP99'] = false;
  const maxErrorText = text('max-error-rate');
  if (maxErrorText !== undefined) {
    // A percentage with its sign: `0.05` or `5` alone could mean either.
    const m = /^\s*(\d+(?:\.\d+)?)\s*%\s*$/.exec(maxErrorText);
    criteria['maxErrorRate'] =
      m === null
        ? usage(`--max-error-rate must be a percentage like 5%, got ${JSON.stringify(maxErrorText)}`)
        : Number(m[1]) / 100;
  }
  if (Object.keys(criteria).length > 0) body['criteria'] = criteria;
  const started = await callAdmin<CanaryStatusBody>(client(), {
    method: 'POST',
    path: `/admin/versions/${encodeURIComponent(name)}/canary`,
    body,
  });
  return print(started, () => formatCanary(started));
}

function usage(message: string): never {
  throw new CliError(`${message}\n${USAGE}`, EXIT.usage);
}

/**
 * A routing weight as the master takes it (SPEC §2: a number from 0 to 1,000,000, fractions included), read alike by
 * `weights NAME=N` and `add --weight N`: a probe found `weights v2=1.5` taken and `add v2 --weight 1.5` refused.
 */
const WEIGHT = /^\d+(?:\.\d+)?$/;
const MAX_WEIGHT = 1_000_000;

/** A weight's digits as a number, or undefined if they are none from 0 to 1,000,000 (400 nines were Infinity). */
function weightOf(text: string): number | undefined {
  const n = Number(text);
  return WEIGHT.test(text) && n <= MAX_WEIGHT ? n : undefined;
}

function weightArg(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  const n = weightOf(value);
  if (n === undefined) usage(`${flag} must be a number from 0 to 1,000,000, got ${JSON.stringify(value)}`);
  return n;
}

function positiveInt(value: string | undefined, flag: string): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d+$/.test(value)) usage(`${flag} must be a whole number, got ${JSON.stringify(value)}`);
  return Number(value);
}

/** A whole number up to `max` (a port, a time a timer can wait). */
function upTo(value: string | undefined, flag: string, max: number): number | undefined {
  const n = positiveInt(value, flag);
  if (n !== undefined && n > max) usage(`${flag} must be at most ${max}, got ${value}`);
  return n;
}

function atLeastOne(value: string | undefined, flag: string): number | undefined {
  const n = positiveInt(value, flag);
  if (n === 0) usage(`${flag} must be at least 1`);
  return n;
}

/**
 * `--interval S` in ms: above 0, at most node's longest timer (~24.8 days), past which a timer fires at once (a
 * probe: `canary status --wait --interval 3000000` polled the admin API ~800 times in 3 s; 5000000 was a stack).
 */
function intervalMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = Number(value) * 1000;
  if (!/^(\d+(\.\d*)?|\.\d+)$/.test(value) || !(ms > 0 && ms <= MAX_TIMER_MS))
    usage(
      `--interval must be a number of seconds above 0, at most ${Math.floor(MAX_TIMER_MS / 1000)}, ` +
        `got ${JSON.stringify(value)}`,
    );
  return ms;
}

/**
 * `--timeout` of `canary status --wait` in ms (`30m`, `600`, `90s`): above 0 and at most node's longest timer, as
 * `--interval`; undefined when not given (wait until the canary ends, or a pipeline's own timeout).
 */
function waitTimeoutMs(value: string | undefined): number | undefined {
  if (value === undefined) return undefined;
  const ms = parseDuration(value);
  if (ms === undefined || !(ms > 0 && ms <= MAX_TIMER_MS))
    usage(
      `--timeout must be a duration above 0 (500ms, 90s, 30m, 2h; a plain number is seconds), at most ` +
        `${Math.floor(MAX_TIMER_MS / 1000)} s, got ${JSON.stringify(value)}`,
    );
  return ms;
}

const CANARY_START_FLAGS = [
  'baseline',
  'steps',
  'pause-at',
  'step',
  'max-step',
  'min-requests',
  'on-inconclusive',
  'alpha',
  'non-inferiority',
  'no-error-rate',
  'no-first-token',
  'no-response-time',
  'no-time-per-token',
  'latency-margin',
  'max-error-rate',
  'time-per-token-margin',
] as const;

/** The words after `canary` that are its verbs, not a version's name (`canary start NAME` for a version so named). */
const CANARY_VERBS: readonly string[] = ['status', 'promote', 'pause', 'resume', 'abort', 'start'];

/**
 * The flags each command reads besides --admin, --json, --help and --version (`start` hands its own to the
 * master, which refuses what it does not read). An operator probe: `deploy v2 --weight 10` deployed and left the
 * weight as it was, saying nothing.
 */
function commandFlags(
  command: string,
  args: readonly string[],
  modes: { isWatch: boolean; isWait: boolean },
): readonly string[] | undefined {
  const { isWatch, isWait } = modes;
  switch (command) {
    case 'status':
      return isWatch ? ['watch', 'interval', 'iterations'] : ['watch'];
    case 'top':
      return ['interval', 'iterations'];
    case 'add':
      return ['entry', 'weight', 'instances'];
    case 'deploy':
      return ['entry', 'instances'];
    case 'mock-upstream':
      return ['port', 'format', 'fail-every', 'first-byte-ms', 'interval-ms', 'tokens'];
    case 'canary':
      if (args[0] === 'status') return isWait ? ['wait', 'interval', 'timeout'] : ['wait'];
      if (args[0] !== 'start' && CANARY_VERBS.includes(args[0] ?? '')) return [];
      return CANARY_START_FLAGS;
    case 'weights':
    case 'rollback':
    case 'remove':
    case 'reload':
      return [];
    default:
      return undefined; // an unknown command: its own usage error
  }
}

/**
 * The words each command reads after its own name, at most (`start` hands its own to the master). A probe:
 * `graygate remove v5 v2` removed v5 and said nothing of v2.
 */
function commandWords(command: string, args: readonly string[]): number | undefined {
  switch (command) {
    case 'status':
    case 'top':
    case 'reload':
    case 'mock-upstream':
      return 0;
    case 'add':
    case 'deploy':
    case 'rollback':
    case 'remove':
      return 1;
    case 'canary':
      return CANARY_VERBS.includes(args[0] ?? '') ? 2 : 1;
    default:
      return undefined; // `weights` takes any number of pairs; `start` is the master's; an unknown command
  }
}

/** What `command` is called in a usage message (`canary status`, `deploy`). */
function commandName(command: string, args: readonly string[]): string {
  return command === 'canary' && CANARY_VERBS.includes(args[0] ?? '') ? `canary ${args[0]}` : command;
}

async function run(argv: string[]): Promise<void> {
  const { values, positionals, tokens } = parseArgs({
    args: argv,
    allowPositionals: true,
    tokens: true,
    options: {
      admin: { type: 'string' },
      json: { type: 'boolean', default: false },
      watch: { type: 'boolean', default: false },
      wait: { type: 'boolean', default: false },
      config: { type: 'string' },
      entry: { type: 'string' },
      weight: { type: 'string' },
      instances: { type: 'string' },
      port: { type: 'string' },
      format: { type: 'string' },
      'fail-every': { type: 'string' },
      'first-byte-ms': { type: 'string' },
      'interval-ms': { type: 'string' },
      tokens: { type: 'string' },
      interval: { type: 'string' },
      timeout: { type: 'string' },
      iterations: { type: 'string' },
      baseline: { type: 'string' },
      steps: { type: 'string' },
      'pause-at': { type: 'string' },
      step: { type: 'string' },
      'max-step': { type: 'string' },
      'min-requests': { type: 'string' },
      'on-inconclusive': { type: 'string' },
      alpha: { type: 'string' },
      'non-inferiority': { type: 'boolean', default: false },
      'no-error-rate': { type: 'boolean', default: false },
      'no-first-token': { type: 'boolean', default: false },
      'no-response-time': { type: 'boolean', default: false },
      'no-time-per-token': { type: 'boolean', default: false },
      'latency-margin': { type: 'string' },
      'max-error-rate': { type: 'string' },
      'time-per-token-margin': { type: 'string' },
      // -v like node, npm and pm2, whose users run this; graygate has no verbose mode to keep it for.
      version: { type: 'boolean', short: 'v', default: false },
      help: { type: 'boolean', short: 'h', default: false },
    },
  });
  const [command, ...args] = positionals;
  // One place for the flag's one use: `canary status NAME --wait`.
  if (values.wait && !(command === 'canary' && args[0] === 'status' && args[1] !== undefined))
    usage('--wait is for canary status NAME');
  // `start` runs the master, whose output is its own business: a broken pipe must not skip its shutdown.
  if (command !== 'start') exitQuietlyOnBrokenPipe([process.stdout, process.stderr]);
  if (values.version) {
    process.stdout.write(`${packageVersion()}\n`);
    return;
  }
  if (values.help || command === undefined) {
    process.stdout.write(`${USAGE}\n`);
    if (command === undefined && !values.help) process.exitCode = EXIT.usage;
    return;
  }
  // Resolved on first use: `mock-upstream` must not fail on an admin variable it never reads.
  let resolved: AdminClientOptions | undefined;
  const client = (): AdminClientOptions => {
    if (resolved !== undefined) return resolved;
    const { url, source } = resolveAdminUrl({ flag: values.admin, env: process.env });
    const token = process.env['GRAYGATE_ADMIN_TOKEN'];
    // One a header cannot carry (a newline pasted with it) was reported as the admin API being down (exit 69).
    if (token !== undefined && !/^[\t\x20-\x7e\x80-\xff]*$/.test(token))
      usage('GRAYGATE_ADMIN_TOKEN has a character an HTTP header cannot carry (a newline, a control character)');
    resolved = { adminUrl: url, source, token };
    return resolved;
  };
  const watch = (): Promise<void> => {
    const stop = new AbortController();
    process.once('SIGINT', () => stop.abort());
    const interval = intervalMs(values.interval);
    const frames = atLeastOne(values.iterations, '--iterations');
    return runTop({
      ...client(),
      format: values.json ? 'json' : 'table',
      signal: stop.signal,
      ...(interval === undefined ? {} : { intervalMs: interval }),
      ...(frames === undefined ? {} : { frames }),
    });
  };
  const print = (value: unknown, human: () => string): void => {
    process.stdout.write(`${values.json ? JSON.stringify(value, null, 2) : readable(human)}\n`);
  };
  const name = (): string => args[0] ?? usage(`${command} needs a version name`);
  // Only `start` reads a config file: `status --config F` looked at the admin port of the environment, not F's.
  if (values.config !== undefined && command !== 'start')
    usage(
      `--config is for start only: ${command} finds the admin API by --admin, GRAYGATE_ADMIN_URL or GRAYGATE_ADMIN_PORT`,
    );

  // After the --config and --wait checks, whose messages say where each belongs.
  const own = commandFlags(command, args, { isWatch: values.watch, isWait: values.wait });
  if (own !== undefined) {
    const stray = tokens.find(
      (token) => token.kind === 'option' && !['admin', 'json', 'help', 'version', ...own].includes(token.name),
    );
    if (stray?.kind === 'option')
      usage(
        `${commandName(command, args)} does not take ${stray.rawName}` +
          (command === 'status' && ['interval', 'iterations'].includes(stray.name) ? ' without --watch' : '') +
          (command === 'canary' && ['interval', 'timeout'].includes(stray.name) ? ' without --wait' : ''),
      );
  }

  const words = commandWords(command, args);
  if (words !== undefined && args.length > words) {
    const extra = args.slice(words).map((word) => JSON.stringify(word));
    const takes = words === 0 ? 'no arguments' : 'one version name';
    const hint = words === 0 ? '' : ': run it once for each';
    usage(`${commandName(command, args)} takes ${takes}, not also ${extra.join(' ')}${hint}`);
  }

  switch (command) {
    case 'start': {
      // The master reads its own arguments (`--config F`, and it refuses anything else): it gets what came with
      // `start`, so that `start --port 8001` or `start F` is its usage error, not dropped here.
      const own = [...argv];
      own.splice(own.indexOf('start'), 1);
      process.argv.splice(2, Infinity, ...own);
      await import('../../master/main.js');
      return;
    }
    case 'mock-upstream': {
      const { runMockUpstreamCli } = await import('../../shared/mock-upstream/main.js');
      return runMockUpstreamCli({
        port: upTo(values.port, '--port', 65_535) ?? 0,
        format: values.format,
        failEvery: positiveInt(values['fail-every'], '--fail-every'),
        firstByteMs: upTo(values['first-byte-ms'], '--first-byte-ms', MAX_TIMER_MS),
        intervalMs: upTo(values['interval-ms'], '--interval-ms', MAX_TIMER_MS),
        tokens: atLeastOne(values.tokens, '--tokens'),
      });
    }
    case 'top':
      return watch();
    case 'status': {
      if (values.watch) return watch();
      const status = await callAdmin<StatusBody>(client(), { method: 'GET', path: '/admin/status' });
      return print(status, () => formatStatus(status));
    }
    case 'weights': {
      if (args.length === 0) usage('weights needs NAME=WEIGHT pairs, e.g. graygate weights v1=90 v2=10');
      // No prototype: `__proto__=5` is a name the API refuses, not an assignment that sent `{}` and printed success.
      const weights: Record<string, number> = Object.create(null) as Record<string, number>;
      for (const pair of args) {
        const m = /^([^=]+)=(.*)$/s.exec(pair);
        const weight = m === null ? undefined : weightOf(m[2]!);
        if (m === null || weight === undefined)
          usage(`bad weight ${JSON.stringify(pair)}: use NAME=NUMBER, a number from 0 to 1,000,000`);
        if (Object.hasOwn(weights, m[1]!)) usage(`${JSON.stringify(m[1]!)} is named twice`);
        weights[m[1]!] = weight;
      }
      const status = await callAdmin<StatusBody>(client(), { method: 'PUT', path: '/admin/weights', body: weights });
      return print(status, () =>
        table(
          ['VERSION', 'WEIGHT'],
          Object.entries(status.versions).map(([n, v]) => [n, String(v.weight)]),
        ),
      );
    }
    case 'add': {
      if (values.entry === undefined) usage('add needs --entry F');
      const body: Record<string, unknown> = {
        name: name(),
        entry: resolve(values.entry),
        weight: weightArg(values.weight, '--weight') ?? 0,
      };
      const instances = positiveInt(values.instances, '--instances');
      if (instances !== undefined) body['instances'] = instances;
      const added = await callAdmin<AnswerNotes>(client(), { method: 'POST', path: '/admin/versions', body });
      return print(added, () => `added ${name()}${notesLines(added)}`);
    }
    case 'deploy': {
      const body: Record<string, unknown> = {};
      // SPEC §2: the CLI sends absolute paths; a relative one means the user's working directory, not the master's.
      if (values.entry !== undefined) body['entry'] = resolve(values.entry);
      const instances = positiveInt(values.instances, '--instances');
      if (instances !== undefined) body['instances'] = instances;
      // Ctrl-C stops the waiting, not the deploy (the master has it): an operator probe took the silent exit for a
      // cancel.
      process.once('SIGINT', () => {
        process.stderr.write(
          `graygate: interrupted; the deploy of ${name()} goes on in the master: see graygate status\n`,
        );
        process.exit(130);
      });
      const result = await callAdmin<
        { lastDeploy: { from: string; to: string; durationMs: number; newPids: number[] } } & AnswerNotes
      >(client(), { method: 'POST', path: `/admin/versions/${encodeURIComponent(name())}/deploy`, body });
      const d = result.lastDeploy;
      return print(
        result,
        () => `deployed ${name()}: ${d.to} (pids ${d.newPids.join(', ')}) in ${d.durationMs} ms${notesLines(result)}`,
      );
    }
    case 'rollback': {
      const result = await callAdmin<{ lastDeploy: { to: string; durationMs: number } } & AnswerNotes>(client(), {
        method: 'POST',
        path: `/admin/versions/${encodeURIComponent(name())}/rollback`,
      });
      return print(
        result,
        () =>
          `rolled back ${name()} to ${result.lastDeploy.to} in ${result.lastDeploy.durationMs} ms${notesLines(result)}`,
      );
    }
    case 'remove': {
      const result = await callAdmin<AnswerNotes>(client(), {
        method: 'DELETE',
        path: `/admin/versions/${encodeURIComponent(name())}`,
      });
      return print(result, () => `removed ${name()}${notesLines(result)}`);
    }
    case 'reload': {
      const result = await callAdmin<{ applied: string[]; restartRequired: string[]; warnings?: string[] }>(client(), {
        method: 'POST',
        path: '/admin/reload',
      });
      return print(result, () => {
        const lines = [result.applied.length === 0 ? 'nothing changed' : `applied: ${result.applied.join(', ')}`];
        if (result.restartRequired.length > 0)
          lines.push(`needs a restart to take effect: ${result.restartRequired.join(', ')}`);
        // An older master's answer has none.
        for (const warning of result.warnings ?? []) lines.push(`warning: ${warning}`);
        return lines.join('\n');
      });
    }
    case 'canary':
      return canaryCommand(args, values, client, print);
    default:
      usage(`unknown command ${JSON.stringify(command)}`);
  }
}

/**
 * The human view of an admin answer, or a one-line reason (SPEC §7) when the answer is not what the view reads: JSON
 * of another shape (another service's `{}` at the address, a proxy's JSON page) threw a TypeError and node printed
 * its stack (an operator probe: `graygate status --admin` at a service answering `{"versions":null}`).
 */
function readable(human: () => string): string {
  try {
    return printable(human());
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    throw new CliError(
      `the admin API's answer is not what this CLI reads (${why}); is that graygate's admin port, of the same release?`,
      EXIT.apiError,
    );
  }
}

try {
  await run(process.argv.slice(2));
} catch (err) {
  if (err instanceof CliError) {
    process.stderr.write(`graygate: ${printable(err.message)}\n`);
    process.exitCode = err.exitCode;
  } else {
    const problem = parseArgsProblem(err);
    if (problem === undefined) throw err;
    process.stderr.write(`graygate: ${problem}\n`);
    process.exitCode = EXIT.usage;
  }
}
