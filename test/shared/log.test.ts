import t from 'tap';
import { spawn, spawnSync } from 'node:child_process';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { createLogger, MAX_WAITING_BYTES, REDACTED } from '../../shared/log.js';
import { ROOT, type Teardown } from '../helpers/gateway.js';
import { nodeLaunch } from '../helpers/child-env.js';

// SPEC §9: secrets never reach a log line. Checked the pino way (STYLE §31):
// real lines written to a sink, parsed back as JSON.

function sink(): { stream: Writable; lines: () => Array<Record<string, unknown>>; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const text = (): string => chunks.join('');
  return {
    stream,
    text,
    lines: () =>
      text()
        .split('\n')
        .filter((l) => l !== '')
        .map((l) => JSON.parse(l) as Record<string, unknown>),
  };
}

/** A child's stdout as the JSON lines it wrote (of the shape the test reads). */
function jsonLines<T>(stdout: string): T[] {
  return stdout
    .trim()
    .split('\n')
    .map((l) => JSON.parse(l) as T);
}

t.test('authorization headers and API keys are redacted wherever they sit', async (t) => {
  const out = sink();
  const log = createLogger({ role: 'worker', version: 'v1', level: 'info', destination: out.stream });
  const cases: Array<[string, Record<string, unknown>]> = [
    ['req.headers.authorization', { req: { headers: { authorization: 'Bearer SECRET-A', accept: '*/*' } } }],
    ['req.headers x-api-key', { req: { headers: { 'x-api-key': 'SECRET-B' } } }],
    ['req.headers proxy-authorization', { req: { headers: { 'proxy-authorization': 'Basic SECRET-C' } } }],
    ['headers.cookie', { headers: { cookie: 'session=SECRET-D' } }],
    [
      'an upstream call: request.headers',
      { request: { headers: { authorization: 'Bearer SECRET-E', 'x-api-key': 'SECRET-F', 'api-key': 'SECRET-G' } } },
    ],
    ['config apiKey', { upstream: { apiKey: 'SECRET-H', url: 'https://api.example' } }],
    ['top-level apiKey', { apiKey: 'SECRET-I' }],
  ];
  for (const [, obj] of cases) log.info(obj, 'line');
  const lines = out.lines();
  t.equal(lines.length, cases.length);
  t.notMatch(out.text(), /SECRET-/, 'no secret in any line');
  t.equal((lines[0]!['req'] as { headers: Record<string, string> }).headers['authorization'], REDACTED);
  t.equal((lines[0]!['req'] as { headers: Record<string, string> }).headers['accept'], '*/*', 'other headers are kept');
  t.equal(
    (lines[5]!['upstream'] as Record<string, string>)['url'],
    'https://api.example',
    'other config fields are kept',
  );
  t.match(lines[0], { role: 'worker', version: 'v1', pid: process.pid, msg: 'line' }, 'root bindings');
});

t.test('the level comes from the option, else LOG_LEVEL', async (t) => {
  const out = sink();
  const log = createLogger({ role: 'master', level: 'warn', destination: out.stream });
  log.info('hidden');
  log.warn('shown');
  t.same(
    out.lines().map((l) => l['msg']),
    ['shown'],
  );

  const previous = process.env['LOG_LEVEL'];
  process.env['LOG_LEVEL'] = 'error';
  t.teardown(() => (previous === undefined ? delete process.env['LOG_LEVEL'] : (process.env['LOG_LEVEL'] = previous)));
  t.equal(createLogger({ role: 'master', destination: sink().stream }).level, 'error');
});

t.test('stdout that is not a TTY gets JSON lines', async (t) => {
  // A real process with piped stdout, as under a log collector; pino-pretty is for terminals only.
  const script = `import { createLogger } from './dist/shared/log.js'; createLogger({ role: 'cli' }).info({ headers: { authorization: 'Bearer SECRET-Z' } }, 'hello');`;
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, LOG_LEVEL: 'info' },
  });
  t.equal(run.status, 0, run.stderr);
  const line = JSON.parse(run.stdout.trim()) as Record<string, unknown>;
  t.match(line, { role: 'cli', msg: 'hello', headers: { authorization: REDACTED } });
});

t.test(
  "a worker's lines relayed by the master: whole, and the rest of one over 1 MiB dropped, not lines of its own",
  async (t) => {
    const script = [
      `import { PassThrough } from 'node:stream';`,
      `import { relayLogLines } from './dist/shared/log.js';`,
      `const worker = new PassThrough(); relayLogLines(worker);`,
      `worker.write('{"a":1}\\n{"b":'); worker.write('2}\\n');`,
      `worker.write('x'.repeat(3 << 20)); worker.write('yyy'); worker.write('zzz\\n{"c":3}\\n');`,
      `worker.end('{"d":4}');`,
    ].join('\n');
    const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
      cwd: ROOT,
      encoding: 'utf8',
      maxBuffer: 16 << 20,
    });
    t.equal(run.status, 0, run.stderr);
    const lines = run.stdout.split('\n');
    t.same(lines.slice(0, 2), ['{"a":1}', '{"b":2}'], 'a line split across chunks is one');
    t.equal(lines[2]!.length, 3 << 20, 'the long line, ended where it was cut');
    t.same(lines.slice(3), ['{"c":3}', '{"d":4}', ''], 'its rest (yyyzzz) dropped; the last line ended at the end');
  },
);

t.test('stdout lines of two loggers keep their order across loop turns, and none is lost at exit', async (t) => {
  // Two loggers share one batch: three lines in one turn, one in the next, and one
  // logged just before process.exit, which only the exit handler can still write.
  const script = [
    `import { createLogger } from './dist/shared/log.js';`,
    `const a = createLogger({ role: 'master' }); const b = createLogger({ role: 'worker', version: 'v1' });`,
    `a.info('one'); b.info('two'); a.info('three');`,
    `setImmediate(() => { b.info('four'); setImmediate(() => { a.error('five'); process.exit(3); }); });`,
  ].join('\n');
  const run = spawnSync(process.execPath, ['--input-type=module', '-e', script], {
    cwd: ROOT,
    encoding: 'utf8',
    env: { ...process.env, LOG_LEVEL: 'info' },
  });
  t.equal(run.status, 3, run.stderr);
  const lines = jsonLines<Record<string, unknown>>(run.stdout);
  t.same(
    lines.map((l) => l['msg']),
    ['one', 'two', 'three', 'four', 'five'],
  );
  t.match(lines[1], { role: 'worker', version: 'v1' });
});

/**
 * Runs a script whose stdout nobody reads until it has said each of `markers` on stderr (its event
 * loop ran on while stdout was full); then reads all of stdout, ends its stdin (the scripts exit on
 * it) and resolves once it has closed. `viaPipe`: stdout is a pipe through `| cat`, not the socket
 * Node's `stdio: 'pipe'` gives. Run in its own process group, which the teardown ends.
 */
async function runUnread(
  t: Teardown,
  args: string[],
  markers: string[],
  viaPipe = false,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  // Without tap's processinfo hooks, which every process a test starts would pass on to the next.
  const launch = nodeLaunch({ LOG_LEVEL: 'info' });
  const nodeArgs = [...launch.prefix, ...args];
  const child = spawn(
    viaPipe ? '/bin/sh' : launch.command,
    viaPipe ? ['-c', '"$0" "$@" | cat', launch.command, ...nodeArgs] : nodeArgs,
    { cwd: ROOT, env: launch.env, stdio: ['pipe', 'pipe', 'pipe'], detached: true },
  );
  t.teardown(() => {
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      // all gone
    }
  });
  child.stdout.pause();
  let stderr = '';
  child.stderr.setEncoding('utf8');
  await new Promise<void>((resolve, reject) => {
    child.stderr.on('data', (chunk: string) => {
      stderr += chunk;
      if (markers.every((m) => stderr.includes(m))) resolve();
    });
    child.on('exit', (code) => reject(new Error(`child exited (${code}) before logging: ${stderr}`)));
  });
  const chunks: Buffer[] = [];
  child.stdout.on('data', (c: Buffer) => chunks.push(c)).resume();
  child.stdin.end();
  const [code] = (await once(child, 'close')) as [number | null];
  return { code, stdout: Buffer.concat(chunks).toString('utf8'), stderr };
}

/**
 * A child that logs `perTurn` lines (`n` numbered from 0, padded to ~`pad` bytes) a turn for `turns` turns, says
 * `logged` on stderr, and exits when its stdin ends: run with runUnread, its parent reads nothing until then.
 * `prelude`: statements run before the logger is imported.
 */
function stalledLogger(options: { turns: number; perTurn: number; pad: number; prelude?: string[] }): string {
  const { turns, perTurn, pad, prelude = [] } = options;
  return [
    ...prelude,
    `const { createLogger } = await import('./dist/shared/log.js');`,
    `const log = createLogger({ role: 'cli' }); const pad = 'x'.repeat(${pad}); let turn = 0;`,
    `const more = () => {`,
    `  for (let i = 0; i < ${perTurn}; i++) log.info({ n: turn * ${perTurn} + i, ...(pad ? { pad } : {}) }, 'line');`,
    `  if (++turn < ${turns}) return setImmediate(more);`,
    `  process.stderr.write('logged\\n');`,
    `  process.stdin.on('end', () => process.exit(0)).resume();`,
    `};`,
    `more();`,
  ].join('\n');
}

t.test('a full stdout pipe does not block the event loop, and no line is lost or reordered', async (t) => {
  // 500 lines of ~1 KiB in five turns, far more than the pipe and the parent's
  // buffer hold while the parent does not read. The child says so on stderr
  // (its loop is running) and waits for stdin to end; only then does the parent read.
  const script = stalledLogger({ turns: 5, perTurn: 100, pad: 1000 });
  const run = await runUnread(t, ['--input-type=module', '-e', script], ['logged']);
  t.equal(run.code, 0, run.stderr);
  const numbers = jsonLines<{ n: number }>(run.stdout).map((l) => l.n);
  t.same(
    numbers,
    Array.from({ length: 500 }, (_, i) => i),
  );
});

t.test('lines a stdout that is not read cannot take are bounded, dropped in whole turns and counted', async (t) => {
  // Every request writes a line: a stalled log collector must not let clients grow the
  // process. 1.5 × the bound in 1 KiB lines, 1,000 a turn, while the parent does not read.
  const total = Math.ceil((1.5 * MAX_WAITING_BYTES) / 1024 / 1000) * 1000;
  const script = stalledLogger({ turns: total / 1000, perTurn: 1000, pad: 1000 });
  const run = await runUnread(t, ['--input-type=module', '-e', script], ['logged']);
  t.equal(run.code, 0, run.stderr);
  const lines = jsonLines<{ n?: number; droppedLines?: number; level: number }>(run.stdout);
  const numbers = lines.flatMap((l) => (l.n === undefined ? [] : [l.n]));
  const notices = lines.filter((l) => l.droppedLines !== undefined);
  t.equal(notices.length, 1, 'one line says how many were dropped');
  t.equal(notices[0]?.level, 40);
  t.ok((notices[0]?.droppedLines ?? 0) >= 1000, 'whole turns were dropped');
  t.equal(numbers.length + (notices[0]?.droppedLines ?? 0), total, 'every line is written or counted');
  t.ok(
    numbers.every((n, i) => i === 0 || n > numbers[i - 1]!),
    'what was written is in order',
  );
  const written = new Set(numbers);
  t.ok(
    numbers.every((n) => n % 1000 !== 0 || written.has(n + 999)),
    'turns are written or dropped whole',
  );
});

t.test('lines of many turns waiting for a stalled reader are written out with no shift() through them', async (t) => {
  // A probe: a reader that stalls while ~70,000 turns each log a line let them all wait (one entry a turn), and
  // shifting them out one by one held the loop 1.6 s once it read again. The child counts the longest array
  // Array.prototype.shift was called on (work counted, not timed) and says it on stderr at exit.
  const turns = 20_000;
  const script = stalledLogger({
    turns,
    perTurn: 1,
    pad: 0,
    prelude: [
      `let longest = 0; const shift = Array.prototype.shift;`,
      `Array.prototype.shift = function () { longest = Math.max(longest, this.length); return shift.call(this); };`,
      `process.on('exit', () => process.stderr.write('longest ' + longest + '\\n'));`,
    ],
  });
  const run = await runUnread(t, ['--input-type=module', '-e', script], ['logged']);
  t.equal(run.code, 0, run.stderr);
  const numbers = jsonLines<{ n: number }>(run.stdout).map((l) => l.n);
  t.equal(numbers.length, turns, 'every line written');
  t.ok(
    numbers.every((n, i) => n === i),
    'in order',
  );
  const longest = Number(/longest (\d+)/.exec(run.stderr)?.[1]);
  t.ok(longest < 1000, `shift() on ${longest} entries at most`);
});

// stdio 'pipe' gives a child a Unix socket (so does journald); a shell pipeline, Docker and most log
// shippers give it a pipe: both kinds, the pipe through `| cat`, which stops reading when we do.
for (const kind of ['socket', 'pipe'] as const) {
  t.test(`two processes sharing a stdout ${kind} that fills up never cut into each other’s lines`, async (t) => {
    // A master and its workers share stdout. Each of these two processes logs 400 lines of ~1 KiB in
    // four turns while the parent does not read: every write but the first finds stdout full or
    // nearly so. Each says on stderr when its turns are done; the parent then reads, and every line
    // it gets must be whole JSON, each process's lines all there and in order.
    const script = [
      `import { spawn } from 'node:child_process';`,
      `import { createLogger } from './dist/shared/log.js';`,
      `const name = process.argv[1] ?? 'a';`,
      `const peer = name === 'a' ? spawn(process.execPath, ['--input-type=module', '-e', process.argv[2], 'b', process.argv[2]], { stdio: ['pipe', 'inherit', 'inherit'] }) : undefined;`,
      `const log = createLogger({ role: 'cli' }); const pad = name.repeat(1000); let turn = 0;`,
      `const more = () => {`,
      `  for (let i = 0; i < 100; i++) log.info({ name, n: turn * 100 + i, pad }, 'line');`,
      `  if (++turn < 4) return setImmediate(more);`,
      `  process.stderr.write('logged-' + name + '\\n');`,
      `  process.stdin.on('end', () => {`,
      `    if (peer === undefined) return process.exit(0);`,
      `    peer.on('exit', (code) => process.exit(code ?? 1)).stdin.end();`,
      `  }).resume();`,
      `};`,
      `more();`,
    ].join('\n');
    const run = await runUnread(
      t,
      ['--input-type=module', '-e', script, 'a', script],
      ['logged-a', 'logged-b'],
      kind === 'pipe',
    );
    t.equal(run.code, 0, run.stderr);
    const parsed = run.stdout
      .trim()
      .split('\n')
      .map((l) => {
        try {
          return JSON.parse(l) as { name: string; n: number };
        } catch {
          return l.slice(0, 60);
        }
      });
    t.same(
      parsed.filter((l) => typeof l === 'string'),
      [],
      'every line is whole JSON',
    );
    for (const name of ['a', 'b']) {
      t.same(
        parsed.flatMap((l) => (typeof l !== 'string' && l.name === name ? [l.n] : [])),
        Array.from({ length: 400 }, (_, i) => i),
        `process ${name}: every line, in order`,
      );
    }
  });
}
