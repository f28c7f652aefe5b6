import t, { type Test } from 'tap';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { CLEAN_ENV, CLI_BIN, runCli } from '../helpers/cli.js';
import { runNode, runNodeInGroup } from '../helpers/child-env.js';
import { configText, ROOT, startGateway, TEST_WORKER_ENTRY, type Gateway } from '../helpers/gateway.js';
import { DEAD_PORT } from '../helpers/dead-port.js';

// The built CLI with a clean admin environment (test/helpers/cli.ts).
const cli = runCli;

// ~50 node processes (CLI runs, a master, mock upstreams) started one after another: 82 s of the lane's wall time
// beside the unit tests and the other lane (there were two), 121 s with one more busy core, past tap's 120 s per file
// (the lane failed the file and took no more). Its own bound, as the load-test smoke files have.
const UNSET = 'GG_CLI_TEST_UNSET_KEY';
export const TIMEOUT_MS = 240_000; // test/helpers/e2e-lane.ts reads it
t.setTimeout(TIMEOUT_MS);

t.test('CLI against a running gateway', async (t) => {
  const gw = await startGateway(
    t,
    {
      versions: {
        v1: { entry: TEST_WORKER_ENTRY, weight: 90 },
        // A key variable nothing sets: a deploy's warning.
        v2: { entry: TEST_WORKER_ENTRY, weight: 10, upstream: { format: 'openai', url: 'mock:', apiKeyEnv: UNSET } },
      },
    },
    { env: { GRAYGATE_ADMIN_TOKEN: 'tok' } },
  );
  const env = { GRAYGATE_ADMIN_TOKEN: 'tok' };
  t.test('commands', (t) => commands(t, gw, env));
  t.test('where the CLI finds the admin API (issue 12 part 6)', (t) => adminAddress(t, gw, env));
});

async function commands(t: Test, gw: Gateway, env: Record<string, string>): Promise<void> {
  const a = ['--admin', gw.adminUrl];

  const human = await cli(t, ['status', ...a], env);
  t.equal(human.code, 0);
  t.match(human.stdout, /^VERSION\s+WEIGHT\s+ENTRY\s+UPSTREAM\s+PID\s+STATE/);
  t.match(human.stdout, /\nv1\s+90\s+\S+test-worker\.js\s+openai mock:\s+\d+\s+ready/);
  t.match(
    human.stdout,
    /\nclient connections: \d+ open \(bound \d+\), 0 idle closed for new ones, 0 accepted past it \(503\), 0 closed as accepted\n/,
  );

  const json = await cli(t, ['status', '--json', ...a], env);
  t.equal(json.code, 0);
  t.equal(
    (JSON.parse(json.stdout) as { versions: Record<string, { weight: number }> }).versions['v2']?.weight,
    10,
    '--json is the admin API body',
  );

  const weights = await cli(t, ['weights', 'v1=50', 'v2=50', '--json', ...a], env);
  t.equal(weights.code, 0);
  t.equal((JSON.parse(weights.stdout) as { versions: Record<string, { weight: number }> }).versions['v1']?.weight, 50);

  const unauthorized = await cli(t, ['status', ...a], { GRAYGATE_ADMIN_TOKEN: 'nope' });
  t.equal(unauthorized.code, 1);
  t.equal(unauthorized.stderr, 'graygate: 401 unauthorized: missing or wrong bearer token\n', 'one-line reason');
  // An operator probe: a token with a newline pasted into it was "admin API unreachable … is graygate running?", 69.
  const pasted = await cli(t, ['status', ...a], { GRAYGATE_ADMIN_TOKEN: 'tok\n' });
  t.equal(pasted.code, 64, 'a token a header cannot carry: a usage error');
  t.match(pasted.stderr, /^graygate: GRAYGATE_ADMIN_TOKEN has a character an HTTP header cannot carry/);

  const unknown = await cli(t, ['rollback', 'v9', ...a], env);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /^graygate: 404 unknown_version: unknown version "v9"/);

  const conflict = await cli(t, ['rollback', 'v1', ...a], env);
  t.equal(conflict.code, 1);
  t.match(conflict.stderr, /409 no_previous_build/);

  const invalid = await cli(t, ['weights', 'v1=-3', ...a], env);
  t.equal(invalid.code, 64, 'usage error before any call');
  // A probe: `__proto__=5` set the body's prototype, sent `{}` and printed the table as if it had worked (exit 0).
  const proto = await cli(t, ['weights', '__proto__=5', ...a], env);
  t.equal(proto.code, 1, 'the API refuses the name');
  t.match(proto.stderr, /^graygate: 400 invalid_request: .*__proto__/);

  // A weight as `weights` takes it, a fraction included (add had taken whole numbers only).
  const added = await cli(t, ['add', 'v3', '--entry', TEST_WORKER_ENTRY, '--weight', '0.5', ...a], env);
  t.equal(added.code, 0, added.stderr);
  t.equal(added.stdout, 'added v3\n');
  const v3 = JSON.parse((await cli(t, ['status', '--json', ...a], env)).stdout) as {
    versions: Record<string, { weight: number }>;
  };
  t.equal(v3.versions['v3']?.weight, 0.5);
  const removed = await cli(t, ['remove', 'v3', ...a], env);
  t.equal(removed.code, 0);
  // SPEC §2: the CLI sends absolute paths; a relative entry is the user's working directory's, not the master's.
  const fromDist = await cli(
    t,
    ['add', 'v4', '--entry', 'test/fixtures/test-worker.js', ...a],
    env,
    join(ROOT, 'dist'),
  );
  t.equal(fromDist.code, 0, fromDist.stderr);
  const v4 = JSON.parse((await cli(t, ['status', '--json', ...a], env)).stdout) as {
    versions: Record<string, { entry: string }>;
  };
  t.equal(v4.versions['v4']?.entry, TEST_WORKER_ENTRY, 'the entry resolved against the CLI working directory');
  t.equal((await cli(t, ['remove', 'v4', ...a], env)).code, 0);

  const deployed = await cli(t, ['deploy', 'v2', ...a], env);
  t.equal(deployed.code, 0);
  // With the warning the master logged, as reload prints them: it was in the master's log only.
  t.match(
    deployed.stdout,
    new RegExp(
      String.raw`^deployed v2: \S+ \(pids \d+\) in \d+ ms\n` +
        `warning: version v2's upstream.apiKeyEnv names ${UNSET}, which is not set: its calls go to the upstream ` +
        'without a key\n$',
    ),
  );
  // The same build again: new processes, and no build to roll back to (forked from the same files, it would roll back
  // nothing); another one (two instances) is.
  const same = await cli(t, ['rollback', 'v2', ...a], env);
  t.same([same.code, same.stderr], [1, 'graygate: 409 no_previous_build: version "v2" has no previous build\n']);
  t.equal((await cli(t, ['deploy', 'v2', '--instances', '2', ...a], env)).code, 0);
  const rolled = await cli(t, ['rollback', 'v2', ...a], env);
  t.equal(rolled.code, 0);

  const reload = await cli(t, ['reload', ...a], env);
  t.equal(reload.code, 0);
  t.match(reload.stdout, /weights v1=90 v2=10/, 'the file still says 90/10');
}

async function adminAddress(t: Test, gw: Gateway, env: Record<string, string>): Promise<void> {
  const port = new URL(gw.adminUrl).port;
  const dead = String(DEAD_PORT);

  // The resolution rules are tested case by case in test/scripts/cli/admin-address.test.ts; here, each source once.
  const reach: Array<[string, string[], Record<string, string>]> = [
    [
      '--admin HOST:PORT without a scheme, over GRAYGATE_ADMIN_URL',
      ['--admin', `127.0.0.1:${port}`],
      { GRAYGATE_ADMIN_URL: `127.0.0.1:${dead}` },
    ],
    [
      'GRAYGATE_ADMIN_URL without a scheme, over GRAYGATE_ADMIN_PORT',
      [],
      { GRAYGATE_ADMIN_URL: `localhost:${port}`, GRAYGATE_ADMIN_PORT: dead },
    ],
    ['GRAYGATE_ADMIN_PORT alone', [], { GRAYGATE_ADMIN_PORT: port }],
  ];
  const results = await Promise.all(
    reach.map(([, args, extra]) => cli(t, ['status', '--json', ...args], { ...env, ...extra })),
  );
  reach.forEach(([what], i) => {
    t.equal(results[i]!.code, 0, what);
    t.equal(results[i]!.stderr, '', what);
  });
  t.equal(
    (JSON.parse(results[0]!.stdout) as { versions: Record<string, { weight: number }> }).versions['v1']?.weight,
    90,
  );

  const top = await cli(t, ['top', '--json', '--iterations', '1', '--admin', `:${port}`], env);
  t.equal(top.code, 0, 'top --iterations 1 ends by itself');
  const frame = JSON.parse(top.stdout) as { versions: Array<{ version: string; workersUp: number }> };
  t.same(
    frame.versions.map((v) => [v.version, v.workersUp]),
    [
      ['v1', 1],
      ['v2', 1],
    ],
    'one JSON frame',
  );

  const refused: Array<[string, string[], Record<string, string>, RegExp]> = [
    [
      'a dead GRAYGATE_ADMIN_PORT is named',
      [],
      { GRAYGATE_ADMIN_PORT: dead },
      new RegExp(
        `^graygate: admin API unreachable at http://127\\.0\\.0\\.1:${dead} \\(ECONNREFUSED\\); is graygate running\\? \\(address from GRAYGATE_ADMIN_PORT\\)\n$`,
      ),
    ],
    [
      'garbage --admin',
      ['--admin', 'http//127.0.0.1:9000'],
      {},
      /^graygate: --admin: expected http:\/\/HOST:PORT, HOST:PORT, HOST, :PORT or PORT, got "http\/\/127\.0\.0\.1:9000"\n$/,
    ],
    [
      'garbage GRAYGATE_ADMIN_PORT',
      [],
      { GRAYGATE_ADMIN_PORT: 'nine' },
      /^graygate: GRAYGATE_ADMIN_PORT: the port must be a number 1–65535, got "nine"\n$/,
    ],
  ];
  const failed = await Promise.all(refused.map(([, args, extra]) => cli(t, ['status', ...args], { ...env, ...extra })));
  refused.forEach(([what, , , stderr], i) => {
    t.equal(failed[i]!.code, i === 0 ? 69 : 64, what);
    t.match(failed[i]!.stderr, stderr, what);
    t.equal(failed[i]!.stdout, '', what);
  });
}

t.test('graygate start --config F runs the gateway on F (the master reads no CLI argument)', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-cli-start-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'graygate.json');
  writeFileSync(path, configText({ versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } }));
  const start = runNodeInGroup(t, [CLI_BIN, 'start', '--config', path], { ...CLEAN_ENV, LOG_LEVEL: 'info' });
  const url = await start.watch((out) => /"url":"([^"]+)"[^\n]*"msg":"graygate listening"/.exec(out)?.[1]);
  if (url === undefined) throw new Error(`start exited ${await start.closed}: ${start.stdout()}${start.stderr()}`);
  const res = await fetch(`${url}/v1/models`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('x-graygate-version'), 'v1');
  await res.arrayBuffer();
  start.child.kill('SIGTERM');
  t.equal(await start.closed, 0, 'SIGTERM ends it cleanly');
});

t.test('CLI errors without a gateway', async (t) => {
  const port = DEAD_PORT;
  const down = await cli(t, ['status', '--admin', `http://127.0.0.1:${port}`]);
  t.equal(down.code, 69);
  t.equal(
    down.stderr,
    `graygate: admin API unreachable at http://127.0.0.1:${port} (ECONNREFUSED); is graygate running? (address from --admin)\n`,
    'one line',
  );
  t.equal((await cli(t, ['frobnicate'])).code, 64);
  t.equal((await cli(t, ['status', '--bogus'])).code, 64);
  // Only start reads a config file; status took it and read the admin port of the environment instead.
  const config = await cli(t, ['status', '--config', 'config/graygate.json']);
  t.equal(config.code, 64);
  t.match(config.stderr, /^graygate: --config is for start only: status finds the admin API by --admin/);
  t.equal((await cli(t, ['top', '--iterations', '0'])).code, 64);
  // A flag the command does not read was dropped silently: `deploy v2 --weight 10` deployed and left the weight.
  const strays = [
    [['deploy', 'v2', '--weight', '10'], 'deploy does not take --weight'],
    [['rollback', 'v2', '--entry', 'x.js'], 'rollback does not take --entry'],
    [['status', '--interval', '2'], 'status does not take --interval without --watch'],
    [['canary', 'status', 'v2', '--steps', '5,100'], 'canary status does not take --steps'],
    [['canary', 'abort', 'v2', '--alpha', '0.05'], 'canary abort does not take --alpha'],
    [['mock-upstream', '--instances', '2'], 'mock-upstream does not take --instances'],
    // A word the command does not read was dropped the same way: `remove v5 v2` removed v5 and said nothing of v2.
    [['remove', 'v5', 'v2'], 'remove takes one version name, not also "v2": run it once for each'],
    [
      ['deploy', 'v2', 'dist/worker/main.js'],
      'deploy takes one version name, not also "dist/worker/main.js": run it once for each',
    ],
    [['status', 'v1'], 'status takes no arguments, not also "v1"'],
    [['canary', 'status', 'v2', 'v3'], 'canary status takes one version name, not also "v3": run it once for each'],
    [['canary', 'v2', 'v3'], 'canary takes one version name, not also "v3": run it once for each'],
  ] as const;
  // At once: each is a node start, and this file is the lane's longest.
  const refused = await Promise.all(strays.map(([args]) => cli(t, [...args])));
  strays.forEach(([args, message], i) => {
    t.equal(refused[i]!.code, 64, args.join(' '));
    t.match(refused[i]!.stderr, new RegExp(`^graygate: ${message}\n`), args.join(' '));
  });
  // start hands the master its arguments, which it refuses but --config (a review: `start --port 8001` and `start F`
  // were dropped silently).
  for (const args of [
    ['start', '--port', '8001'],
    ['start', 'config/graygate.json'],
    ['start', '--config='],
  ]) {
    // A config that cannot load: were the check gone, the master would exit 78 at once, not serve on :8000.
    const refused = await cli(t, args, { GRAYGATE_CONFIG: '/nonexistent/graygate.json' });
    t.equal(refused.code, 64, args.join(' '));
    t.match(
      refused.stderr,
      /^graygate: (unknown argument "(--port|config\/graygate\.json)"|--config= needs a file)/,
      args.join(' '),
    );
  }
  // A README walk-through: `v1=-3` was told to "use NAME=NUMBER", and -3 is a number.
  const negative = await cli(t, ['weights', 'v1=-3']);
  t.equal(negative.code, 64);
  t.match(negative.stderr, /bad weight "v1=-3": use NAME=NUMBER, a number from 0 to 1,000,000/);
  // parseArgs' refusals in one line naming the flag, and a flag only --wait reads refused without it.
  const refusals: Array<[string[], RegExp]> = [
    [['status', '--bogus'], /^graygate: unknown flag --bogus \(--help lists the flags\)\n$/],
    [['add', 'v3', '--entry', 'w.js', '--weight', '-1'], /^graygate: --weight needs a value, .*--weight=VALUE\n$/],
    [['canary', 'status', 'v2', '--interval', '1'], /^graygate: canary status does not take --interval without --wait/],
    // A probe: past node's longest timer the poll fired at once (3000000) or threw a stack (5000000).
    [
      ['status', '--watch', '--interval', '5000000'],
      /^graygate: --interval must be a number of seconds above 0, at most/,
    ],
    [
      ['canary', 'status', 'v2', '--wait', '--interval', '3000000'],
      /^graygate: --interval must be a number of seconds/,
    ],
    [['canary', 'status', 'v2', '--timeout', '5m'], /^graygate: canary status does not take --timeout without --wait/],
    [['canary', 'status', 'v2', '--wait', '--timeout', '0'], /^graygate: --timeout must be a duration above 0/],
    [['canary', 'status', 'v2', '--wait', '--timeout', '30 days'], /^graygate: --timeout must be a duration above 0/],
    [['canary', 'status', 'v2', '--wait', '--timeout', '597h'], /^graygate: --timeout must be .*, at most 2147483 s/],
    [['weights', 'v1=5', 'v1=0'], /^graygate: "v1" is named twice/],
    [
      ['weights', `v1=${'9'.repeat(400)}`],
      /^graygate: bad weight "v1=9+": use NAME=NUMBER, a number from 0 to 1,000,000/,
    ],
  ];
  for (const [args, expected] of refusals) {
    const refused = await cli(t, args);
    t.equal(refused.code, 64, args.join(' '));
    t.match(refused.stderr, expected, args.join(' '));
  }
  const badAddWeight = await cli(t, ['add', 'v3', '--entry', 'w.js', '--weight', '1e3']);
  t.equal(badAddWeight.code, 64);
  t.match(badAddWeight.stderr, /--weight must be a number from 0 to 1,000,000, got "1e3"/);
  // A bare number would read as seconds, as --step's does: 20 s switches the p99 criteria off.
  const bareMargin = await cli(t, ['canary', 'v2', '--latency-margin', '20']);
  t.equal(bareMargin.code, 64);
  t.match(bareMargin.stderr, /--latency-margin must be a duration with its unit, like 20ms, got "20"/);
  const help = await cli(t, ['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /usage: graygate <command>/);
  for (const documented of [
    'GRAYGATE_ADMIN_URL',
    'GRAYGATE_ADMIN_PORT',
    'GRAYGATE_ADMIN_TOKEN',
    '--admin ADDR',
    '-v, --version',
    '--iterations N',
  ])
    t.ok(help.stdout.includes(documented), `--help documents ${documented}`);
});

t.test('--version and -v print the installed package version and exit 0', async (t) => {
  const { version } = JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string };
  for (const args of [['--version'], ['-v']]) {
    const res = await cli(t, args);
    t.same(res, { code: 0, stdout: `${version}\n`, stderr: '' }, args.join(' '));
  }
});

t.test(
  'the mock upstream run directly: --help is its usage, a flag it does not take one line and exit 64',
  async (t) => {
    // An SDK probe: `node dist/shared/mock-upstream/main.js --help` ended with node's parseArgs stack trace.
    const entry = join(ROOT, 'dist/shared/mock-upstream/main.js');
    const help = await runNode([entry, '--help']).done;
    t.same([help.code, help.stderr], [0, '']);
    t.match(help.stdout, /^usage: node dist\/shared\/mock-upstream\/main\.js \[--port N\]/);
    for (const args of [['--bogus'], ['--port']]) {
      const run = await runNode([entry, ...args]).done;
      t.equal(run.code, 64, args.join(' '));
      t.match(run.stderr, /^mock-upstream: .*\nusage: /, `${args.join(' ')}: one line, then the usage`);
      t.notMatch(run.stderr, /\n\s+at /, 'no stack trace');
    }
    for (const args of [
      ['--tokens', '0'],
      ['--interval-ms', 'soon'],
    ]) {
      const run = await runNode([entry, ...args]).done;
      t.same([run.code, run.stderr.split('\n').length], [64, 2], `${args.join(' ')}: one line, exit 64 (as the CLI)`);
    }
  },
);

t.test('mock-upstream on a port in use: one line naming the flag that moves it, exit 69', async (t) => {
  // A README walk-through got an uncaught EADDRINUSE with node's stack and exit 1.
  const taken = createServer();
  await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
  t.teardown(() => taken.close());
  const port = (taken.address() as { port: number }).port;
  const run = await runCli(t, ['mock-upstream', '--port', String(port)]);
  t.equal(run.code, 69);
  t.equal(run.stderr, `mock-upstream: 127.0.0.1:${port} is in use; choose another with --port\n`);
});

t.test(
  'mock-upstream --interval-ms --tokens: an upstream that streams slower per token, for a canary to catch',
  async (t) => {
    // An SRE probe: the CLI could make a version's upstream fail or start late, not stream slower per token.
    const mock = runNodeInGroup(t, [CLI_BIN, 'mock-upstream', '--interval-ms', '30', '--tokens', '3'], CLEAN_ENV);
    const url = await mock.watch((out) => /listening on (\S+)/.exec(out)?.[1]);
    t.ok(url !== undefined, mock.stderr());
    t.match(mock.stdout(), /\(3 tokens an answer, tokens 30 ms apart\)/, 'the listening line says so');
    const res = await fetch(`${url!}/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'graygate-mock', stream: true, messages: [{ role: 'user', content: 'hi' }] }),
    });
    const text = await res.text();
    t.equal(text.match(/"content":"[^"]+"/g)?.length, 3, 'three tokens');
    for (const flags of [
      ['--interval-ms', 'soon'],
      ['--tokens', '0'],
      // An operator probe: past a timer's range node waited 1 ms (all tokens at once); a port past 65535 was an exit 69
      // naming a --host the CLI has not.
      ['--interval-ms', '99999999999'],
      ['--first-byte-ms', '99999999999'],
      ['--port', '99999'],
    ])
      t.equal((await runCli(t, ['mock-upstream', ...flags])).code, 64, `${flags.join(' ')}: a usage error`);
  },
);
