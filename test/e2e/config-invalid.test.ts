import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { createServer } from 'node:net';
import { once } from 'node:events';
import { mkdtempSync, writeFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { nodeLaunch, runNodeInGroup } from '../helpers/child-env.js';
import { configText, MASTER_ENTRY, ROOT, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { hasPrlimit } from '../helpers/file-limit.js';

/**
 * The master on `config`, in a process group of its own that the test's teardown ends: a regression that let it start
 * would otherwise serve on past the test, with its workers.
 */
async function runMaster(
  t: Test,
  config: string,
  env: Record<string, string> = {},
): Promise<{ code: number | null; stderr: string }> {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-cfg-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  const path = join(dir, 'graygate.json');
  writeFileSync(path, config);
  const master = runNodeInGroup(t, [MASTER_ENTRY, '--config', path], env);
  return { code: await master.closed, stderr: master.stderr() };
}

/** For a config without `listen` or `admin`: loopback and ports 0, not the defaults (0.0.0.0:8000, :9000). */
const LOCAL_PORTS = { HOST: '127.0.0.1', PORT: '0', GRAYGATE_ADMIN_PORT: '0' };

t.test('invalid config files exit 78 with one line per problem naming the field', async (t) => {
  const cases: Array<[string, string, Record<string, string>, RegExp[]]> = [
    [
      'bad values',
      JSON.stringify({
        versions: { v1: { weight: 90 }, v2: { weight: -1, upstream: { format: 'grpc', url: 'mock:' } } },
        limits: { queueTimeoutMs: 'soon' },
      }),
      {},
      [
        /versions\.v2\.weight: must be ≥ 0/,
        /versions\.v2\.upstream\.format: must be one of/,
        /limits\.queueTimeoutMs: /,
      ],
    ],
    [
      'unknown and renamed keys',
      JSON.stringify({ versions: { v1: { weight: 1, timeoutMs: 5 } }, extra: true }),
      {},
      [/versions\.v1\.timeoutMs: is not supported, use timeouts\.totalMs/, /extra: is not supported \(unknown key\)/],
    ],
    [
      'bad version name and default',
      JSON.stringify({ routing: { default: 'v9' }, versions: { 'V1!': { weight: 1 } } }),
      {},
      [/versions\.V1!: version names must match/, /routing\.default: must name a configured version/],
    ],
    ['not JSON', '{ "versions": ', {}, [/invalid JSON/]],
    [
      'all weights zero',
      JSON.stringify({ versions: { v1: { weight: 0 } } }),
      {},
      [/versions: at least one version needs a weight > 0/],
    ],
    [
      'open admin without token',
      JSON.stringify({ admin: { host: '0.0.0.0' }, versions: { v1: { weight: 1 } } }),
      { GRAYGATE_ADMIN_TOKEN: '' },
      [/admin\.host: binding admin to a non-loopback host needs GRAYGATE_ADMIN_TOKEN/],
    ],
    // A token no client can send locked the admin API (every call 401) without a word; its value is never printed.
    [
      'an admin token read with its trailing newline',
      JSON.stringify({ versions: { v1: { weight: 1 } } }),
      { GRAYGATE_ADMIN_TOKEN: 'tok-5b1e\n' },
      [/GRAYGATE_ADMIN_TOKEN: has a character an HTTP header cannot carry/],
    ],
    [
      'an admin token with a space at its end',
      JSON.stringify({ versions: { v1: { weight: 1 } } }),
      { GRAYGATE_ADMIN_TOKEN: 'tok-5b1e ' },
      [/GRAYGATE_ADMIN_TOKEN: starts or ends with a space or tab/],
    ],
    [
      'bad PORT env',
      JSON.stringify({ versions: { v1: { weight: 1 } } }),
      { PORT: 'eighty' },
      [/PORT: must be a port number/],
    ],
  ];
  for (const [name, config, env, patterns] of cases) {
    const { code, stderr } = await runMaster(t, config, { ...LOCAL_PORTS, ...env });
    t.equal(code, 78, `${name}: exit 78`);
    for (const p of patterns) t.match(stderr, p, `${name}: ${p}`);
    t.notOk(stderr.includes('tok-5b1e'), `${name}: no token printed`);
  }
});

t.test('a busy port ends start-up with one line naming what moves it, exit 69, and no worker left', async (t) => {
  const busy = createServer();
  busy.listen(0, '127.0.0.1');
  await once(busy, 'listening');
  t.teardown(() => busy.close());
  const port = (busy.address() as { port: number }).port;
  const base = {
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    versions: { v1: { weight: 1, entry: 'dist/test/fixtures/test-worker.js' } },
  };
  const cases: Array<[string, string, Record<string, string>, RegExp]> = [
    [
      'main port from the file',
      JSON.stringify({ ...base, listen: { host: '127.0.0.1', port } }),
      {},
      /127\.0\.0\.1:\d+ is in use; choose another with listen\.port in the config or PORT/,
    ],
    [
      'admin port from GRAYGATE_ADMIN_PORT',
      JSON.stringify(base),
      { GRAYGATE_ADMIN_PORT: String(port) },
      /is in use; choose another with admin\.port in the config or GRAYGATE_ADMIN_PORT/,
    ],
  ];
  for (const [name, config, env, pattern] of cases) {
    const { code, stderr } = await runMaster(t, config, { ...env, LOG_LEVEL: 'silent' });
    t.equal(code, 69, `${name}: exit 69`);
    t.match(stderr, pattern, name);
    t.notMatch(stderr, /\n\s+at /, `${name}: no stack trace`);
  }
  const bad = await runMaster(t, JSON.stringify(base), { GRAYGATE_ADMIN_PORT: '99999' });
  t.equal(bad.code, 78);
  t.match(bad.stderr, /GRAYGATE_ADMIN_PORT: must be a port number/);
});

t.test('a version whose workers do not start ends start-up (exit 1) with a line naming it and its build', async (t) => {
  const config = JSON.stringify({
    listen: { host: '127.0.0.1', port: 0 },
    admin: { host: '127.0.0.1', port: 0 },
    versions: {
      v1: { weight: 1, entry: 'dist/test/fixtures/test-worker.js' },
      v2: { weight: 1, entry: 'dist/test/fixtures/no-such-worker.js' },
    },
  });
  const { code, stderr } = await runMaster(t, config, { LOG_LEVEL: 'silent' });
  t.equal(code, 1);
  t.match(stderr, /graygate: a worker did not start: version v2 \(\S*no-such-worker\.js\): /);
  // What the worker said last is in that line, as in a deploy's failure (a probe: a build of another IPC protocol said
  // `protocol mismatch` only in the echoed lines above it).
  t.match(stderr, /graygate: a worker did not start: .*; last stderr: .*Error: Cannot find module/);
});

t.test('--config without a file is a usage error (64), not the default config started on its ports', async (t) => {
  for (const args of [['--config'], ['--config', '--other'], ['--config=']]) {
    const master = runNodeInGroup(t, [MASTER_ENTRY, ...args], { ...LOCAL_PORTS, LOG_LEVEL: 'info' });
    // A master that starts anyway is seen (its listening line) and ended by the teardown, not waited on.
    const started = await master.watch((out) => (out.includes('"msg":"graygate listening"') ? 'started' : undefined));
    t.equal(started ?? (await master.closed), 64, args.join(' '));
    t.match(master.stderr(), /^graygate: --config=? needs a file/);
  }
});

t.test(
  'an argument the master does not know is a usage error (64), not the default config started without it',
  async (t) => {
    // A README walk-through: `--cofig F` (a typo) started the default config's gateway on its ports without a word. Its
    // own group and ports 0 here, so a master that starts anyway is seen (its listening line) and ended, not waited on.
    for (const args of [['--cofig', 'x.json'], ['--config', 'config/graygate.json', '--port', '8001'], ['start']]) {
      const master = runNodeInGroup(t, [MASTER_ENTRY, ...args], {
        PORT: '0',
        GRAYGATE_ADMIN_PORT: '0',
        LOG_LEVEL: 'info',
      });
      const started = await master.watch((out) => (out.includes('"msg":"graygate listening"') ? 'started' : undefined));
      const outcome = started ?? (await master.closed);
      t.equal(outcome, 64, args.join(' '));
      t.match(
        master.stderr(),
        /^graygate: unknown argument "(--cofig|--port|start)": the gateway takes --config FILE only/,
      );
    }
  },
);

t.test(
  'an open-file limit below what the config admits is a warn line at start',
  { skip: hasPrlimit() ? false : 'needs util-linux prlimit, to start the master under a file limit' },
  async (t) => {
    // 1 worker × maxSocketsPerWorker 1024 admitted, and a limit of 1024 leaves room for 398 client connections
    // (file-limit.ts): the main port holds those, and says so at start. nginx warns of the same.
    const dir = mkdtempSync(join(tmpdir(), 'graygate-cfg-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const path = join(dir, 'graygate.json');
    writeFileSync(path, configText({ versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 } } }));
    const node = nodeLaunch({ LOG_LEVEL: 'info' });
    const child = spawn(
      'prlimit',
      ['--nofile=1024:1024', node.command, ...node.prefix, MASTER_ENTRY, '--config', path],
      // Its own process group, ended whole: the master's workers too, whatever the test asserts.
      { cwd: ROOT, env: node.env, stdio: ['ignore', 'pipe', 'pipe'], detached: true },
    );
    t.teardown(() => {
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        // the group is gone
      }
    });
    let output = '';
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d));
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d));
    while (!output.includes('"msg":"graygate listening"')) await once(child.stdout, 'data');
    const line = JSON.parse(output.split('\n').find((l) => l.includes('open-file limit below'))!) as Record<
      string,
      unknown
    >;
    t.same(
      { fileLimit: line['fileLimit'], maxClientConnections: line['maxClientConnections'], admitted: line['admitted'] },
      { fileLimit: 1024, maxClientConnections: 398, admitted: 1024 },
    );
    child.kill('SIGTERM');
    const [code] = (await once(child, 'close')) as [number | null];
    t.equal(code, 0, 'and the master runs as before');
  },
);
