import t from 'tap';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { ROOT, startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';

const BIN = join(ROOT, 'bin/graygate.js');

function cli(args: string[], env: Record<string, string> = {}): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [BIN, ...args], { env: { ...process.env, GRAYGATE_ADMIN_TOKEN: '', ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d));
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

t.test('CLI against a running gateway', async (t) => {
  const gw = await startGateway(t, { versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 90 }, v2: { entry: TEST_WORKER_ENTRY, weight: 10 } } }, { env: { GRAYGATE_ADMIN_TOKEN: 'tok' } });
  const env = { GRAYGATE_ADMIN_TOKEN: 'tok' };
  const a = ['--admin', gw.adminUrl];

  const human = await cli(['status', ...a], env);
  t.equal(human.code, 0);
  t.match(human.stdout, /^VERSION\s+WEIGHT\s+ENTRY\s+UPSTREAM\s+PID\s+STATE/);
  t.match(human.stdout, /\nv1\s+90\s+\S+test-worker\.js\s+openai mock:\s+\d+\s+ready/);

  const json = await cli(['status', '--json', ...a], env);
  t.equal(json.code, 0);
  t.equal(JSON.parse(json.stdout).versions.v2.weight, 10, '--json is the admin API body');

  const weights = await cli(['weights', 'v1=50', 'v2=50', '--json', ...a], env);
  t.equal(weights.code, 0);
  t.equal(JSON.parse(weights.stdout).versions.v1.weight, 50);

  const unauthorized = await cli(['status', ...a], { GRAYGATE_ADMIN_TOKEN: 'nope' });
  t.equal(unauthorized.code, 1);
  t.equal(unauthorized.stderr, 'graygate: 401 unauthorized: missing or wrong bearer token\n', 'one-line reason');

  const unknown = await cli(['rollback', 'v9', ...a], env);
  t.equal(unknown.code, 1);
  t.match(unknown.stderr, /^graygate: 404 unknown_version: unknown version "v9"/);

  const conflict = await cli(['rollback', 'v1', ...a], env);
  t.equal(conflict.code, 1);
  t.match(conflict.stderr, /409 no_previous_build/);

  const invalid = await cli(['weights', 'v1=-3', ...a], env);
  t.equal(invalid.code, 64, 'usage error before any call');

  const added = await cli(['add', 'v3', '--entry', TEST_WORKER_ENTRY, '--weight', '0', ...a], env);
  t.equal(added.code, 0);
  t.equal(added.stdout, 'added v3\n');
  const removed = await cli(['remove', 'v3', ...a], env);
  t.equal(removed.code, 0);

  const deployed = await cli(['deploy', 'v2', ...a], env);
  t.equal(deployed.code, 0);
  t.match(deployed.stdout, /^deployed v2: \S+ \(pids \d+\) in \d+ ms\n$/);
  const rolled = await cli(['rollback', 'v2', ...a], env);
  t.equal(rolled.code, 0);

  const reload = await cli(['reload', ...a], env);
  t.equal(reload.code, 0);
  t.match(reload.stdout, /weights v1=90 v2=10/, 'the file still says 90/10');
});

t.test('CLI errors without a gateway', async (t) => {
  // A port that was just free: nothing listens there.
  const { createServer } = await import('node:net');
  const server = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const port = (server.address() as { port: number }).port;
  await new Promise((r) => server.close(r));
  const down = await cli(['status', '--admin', `http://127.0.0.1:${port}`]);
  t.equal(down.code, 69);
  t.match(down.stderr, /^graygate: admin API unreachable at http:\/\/127\.0\.0\.1:\d+ \(ECONNREFUSED\)/);
  t.equal((await cli(['frobnicate'])).code, 64);
  t.equal((await cli(['status', '--bogus'])).code, 64);
  const help = await cli(['--help']);
  t.equal(help.code, 0);
  t.match(help.stdout, /usage: graygate <command>/);
});
