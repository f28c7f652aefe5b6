import t, { type Test } from 'tap';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { request as httpRequest, createServer as createHttpServer, type Server } from 'node:http';
import { connect, createServer, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { collectOutput, nodeLaunch, type NodeRun } from '../helpers/child-env.js';
import { CLEAN_ENV, CLI_BIN, runCli } from '../helpers/cli.js';
import { admin, startGateway, TEST_WORKER_ENTRY } from '../helpers/gateway.js';
import { DEAD_PORT } from '../helpers/dead-port.js';

// Issue 12 part 6: `graygate top` and the CLI's output against a real
// gateway without a token, run as the built CLI: EPIPE, an admin API that is
// gone at start or goes away, a removed version, a 403 with its hint.

/** `script` in sh with $NODE, $BIN and `env`: a real shell pipeline, real pipes. */
function shell(script: string, env: Record<string, string>): Promise<NodeRun> {
  return collectOutput(
    spawn('sh', ['-c', script], {
      env: { ...process.env, ...CLEAN_ENV, NODE: process.execPath, BIN: CLI_BIN, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
    }),
  );
}

interface Frame {
  time: string;
  versions?: Array<{ version: string }>;
  error?: string;
}

/**
 * `graygate top --json …` running: `nextFrame` reads its frames
 * as they come; `result` has them all. Stopped at teardown.
 */
function startTop(
  t: Test,
  args: string[],
): { nextFrame(what: string): Promise<Frame>; result: Promise<NodeRun>; stop(): void } {
  const node = nodeLaunch(CLEAN_ENV);
  const child = spawn(node.command, [...node.prefix, CLI_BIN, 'top', '--json', ...args], {
    env: node.env,
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d));
  const lines: string[] = [];
  const unread: string[] = [];
  const readers: Array<(line: string | undefined) => void> = [];
  let isEnded = false;
  const input = createInterface({ input: child.stdout });
  input.on('line', (line) => {
    lines.push(line);
    const reader = readers.shift();
    if (reader === undefined) unread.push(line);
    else reader(line);
  });
  input.on('close', () => {
    isEnded = true;
    for (const reader of readers.splice(0)) reader(undefined);
  });
  const nextFrame = async (what: string): Promise<Frame> => {
    const line =
      unread.shift() ?? (isEnded ? undefined : await new Promise<string | undefined>((r) => readers.push(r)));
    if (line === undefined) throw new Error(`top ended before ${what}: ${stderr}`);
    return JSON.parse(line) as Frame;
  };
  const result = new Promise<NodeRun>((resolve) =>
    child.on('close', (code) => resolve({ code, stdout: lines.map((l) => `${l}\n`).join(''), stderr })),
  );
  const stop = (): void => {
    if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
  };
  t.teardown(async () => {
    stop();
    await result;
  });
  return { nextFrame, result, stop };
}

const names = (frame: Frame): string[] => (frame.versions ?? []).map((v) => v.version);

/** A TCP relay to `port` on 127.0.0.1 that can be taken away, as if the admin API went down. */
async function startRelay(t: Test, port: number): Promise<{ url: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(port, '127.0.0.1');
    for (const s of [client, upstream]) {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
      s.on('error', () => undefined); // the other side is destroyed with it
    }
    client.pipe(upstream).pipe(client);
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  const close = async (): Promise<void> => {
    const closed = new Promise((r) => server.close(r));
    for (const s of sockets) s.destroy();
    await closed;
  };
  t.teardown(() => (server.listening ? close() : undefined));
  return { url: `http://127.0.0.1:${(server.address() as { port: number }).port}`, close };
}

/** An HTTP proxy to `target` that sends its own Host, like nginx with `proxy_set_header Host $host`. */
async function startHostRewritingProxy(t: Test, target: string): Promise<string> {
  const { port, hostname } = new URL(target);
  const server: Server = createHttpServer((req, res) => {
    const headers = { ...req.headers, host: `admin.example:${port}` };
    const upstream = httpRequest({ host: hostname, port, method: req.method, path: req.url, headers }, (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    });
    upstream.on('error', () => res.destroy());
    req.pipe(upstream);
  }).listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  t.teardown(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });
  return `127.0.0.1:${(server.address() as { port: number }).port}`;
}

t.test('top and CLI output against a gateway without a token', async (t) => {
  // v2 (weight 0) is the one removed while top runs; the last subtest removes it.
  const gw = await startGateway(t, {
    versions: { v1: { entry: TEST_WORKER_ENTRY, weight: 1 }, v2: { entry: TEST_WORKER_ENTRY, weight: 0 } },
  });

  t.test('top | head -n 1: top exits 141 without a word when head leaves', async (t) => {
    const res = await shell(
      '{ "$NODE" "$BIN" top --admin "$ADMIN" --interval 0.02; echo "graygate exited $?" >&2; } | head -n 1',
      { ADMIN: gw.adminUrl },
    );
    t.equal(res.code, 0, "head's status");
    t.match(
      res.stdout,
      /^graygate top — http:\/\/127\.0\.0\.1:\d+ — .+ — every 0\.02 s, Ctrl-C to quit\n$/,
      'the first line',
    );
    t.equal(res.stderr, 'graygate exited 141\n', 'no stack trace, the exit code of a writer stopped by SIGPIPE');
  });

  t.test('status into a pipe whose reader has already gone: 141 without a word', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'graygate-cli-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    // The reader closes its end, then lets the writer start: the first write meets no reader, every time.
    const script = [
      'mkfifo "$DIR/go"',
      '{ read go < "$DIR/go"; "$NODE" "$BIN" status --admin "$ADMIN"; echo "graygate exited $?" >&2; } | { exec 0<&-; echo go > "$DIR/go"; }',
    ].join('\n');
    const res = await shell(script, { ADMIN: gw.adminUrl, DIR: dir });
    t.equal(res.stderr, 'graygate exited 141\n');
  });

  t.test('top exits 69 with one line when the admin API is unreachable at start, like status', async (t) => {
    const port = DEAD_PORT;
    const [top, status] = await Promise.all([
      runCli(t, ['top', '--admin', `:${port}`]),
      runCli(t, ['status', '--admin', `:${port}`]),
    ]);
    const line = `graygate: admin API unreachable at http://127.0.0.1:${port} (ECONNREFUSED); is graygate running? (address from --admin)\n`;
    t.same(top, { code: 69, stdout: '', stderr: line });
    t.same(status, { code: 69, stdout: '', stderr: line });
  });

  t.test('top shows an admin API that went away for 5 refreshes, then exits 69 with one line', async (t) => {
    const relay = await startRelay(t, Number(new URL(gw.adminUrl).port));
    const top = startTop(t, ['--admin', relay.url, '--interval', '0.02']);
    t.same(names(await top.nextFrame('a first frame')), ['v1', 'v2']);
    await relay.close();
    const res = await top.result;
    t.equal(res.code, 69);
    t.match(
      res.stderr,
      new RegExp(
        `^graygate: admin API unreachable at ${relay.url.replace(/\./g, '\\.')} \\([^)]+\\); is graygate running\\? \\(address from --admin\\)\\n$`,
      ),
      'one line',
    );
    const frames = res.stdout
      .trimEnd()
      .split('\n')
      .map((l) => JSON.parse(l) as Frame);
    const failed = frames.slice(-5);
    t.same(
      failed.map((f) => /; retrying \((\d)\/5\)$/.exec(f.error ?? '')?.[1]),
      ['1', '2', '3', '4', '5'],
      'the last five frames say so, counting',
    );
    t.ok(
      frames.slice(0, -5).every((f) => f.versions !== undefined),
      'every frame before them showed versions',
    );
  });

  t.test('a 403 forbidden ends status and top with a one-line hint', async (t) => {
    const proxy = await startHostRewritingProxy(t, gw.adminUrl);
    const [status, top] = await Promise.all([
      runCli(t, ['status', '--admin', proxy]),
      runCli(t, ['top', '--admin', proxy, '--interval', '0.02']),
    ]);
    for (const [what, res] of [
      ['status', status],
      ['top', top],
    ] as const) {
      t.equal(res.code, 1, what);
      t.equal(res.stdout, '', what);
      t.match(
        res.stderr,
        /^graygate: 403 forbidden: [^\n]*loopback[^\n]*; hint: graygate itself sends a loopback Host and Content-Type: application\/json; if a proxy forwards to the admin port, make it pass both through unchanged[^\n]*\n$/,
        what,
      );
    }
  });

  t.test('a version removed while top runs leaves its output', async (t) => {
    const top = startTop(t, ['--admin', gw.adminUrl, '--interval', '0.05']);
    t.same(names(await top.nextFrame('a first frame')), ['v1', 'v2']);
    const removed = await admin(gw, 'DELETE', '/admin/versions/v2');
    t.equal(removed.status, 200, 'v2 removed');
    // Frames already on their way may still list v2; the first one that does not is the removal.
    // Bounded, so a top that keeps the row fails here rather than at the suite's timeout.
    let frame = await top.nextFrame('v2 left');
    for (let i = 0; names(frame).includes('v2') && i < 400; i++) frame = await top.nextFrame('v2 left');
    t.same(names(frame), ['v1'], 'v2 is gone, v1 stays');
    for (let i = 0; i < 3; i++) t.same(names(await top.nextFrame('more frames')), ['v1'], 'and it does not come back');
    top.stop();
    t.equal((await top.result).code, 0, 'Ctrl-C ends top with 0');
  });
});
