import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import t from 'tap';
import { ROOT } from '../../helpers/gateway.js';

// A benchmark script asked for --help lists its flags; a flag it does not know is a usage error (exit 64, one line
// and the list), not a stack trace (a new user's walk through the README hit one with every script).

const run = promisify(execFile);
const script = join(ROOT, 'dist/scripts/bench/per-call.js');

t.test('--help lists the flags with their defaults', async (t) => {
  const { stdout } = await run(process.execPath, [script, '--help']);
  t.equal(stdout, 'usage: node dist/scripts/bench/per-call.js [--baseline-root VALUE] [--rounds 3] [--calls 100000]\n');
});

t.test('an unknown flag: exit 64, the message and the usage, no stack', async (t) => {
  const err = await run(process.execPath, [script, '--bogus']).then(
    () => undefined,
    (e: unknown) => e as { code: number; stderr: string },
  );
  t.equal(err?.code, 64);
  t.match(err?.stderr, /^Unknown option '--bogus'.*\nusage: node dist\/scripts\/bench\/per-call\.js /s);
  t.notMatch(err?.stderr, /\n\s+at /, 'no stack trace');
});

t.test(
  'a script of positional counts: --help lists them with their defaults, a bad one is exit 64 naming it',
  async (t) => {
    const firstToken = join(ROOT, 'dist/scripts/bench/first-token.js');
    const { stdout } = await run(process.execPath, [firstToken, '--help']);
    t.equal(stdout, 'usage: node dist/scripts/bench/first-token.js [streams=1000] [concurrency=10] [rounds=3]\n');
    for (const [args, message] of [
      [['x'], /^streams: expected a number ≥ 1, got x\nusage: /],
      [['10', '0'], /^concurrency: expected a number ≥ 1, got 0\n/],
      [['1', '2', '3', '4'], /^at most 3 arguments, got 4\n/],
    ] as const) {
      const err = await run(process.execPath, [firstToken, ...args]).then(
        () => undefined,
        (e: unknown) => e as { code: number; stderr: string },
      );
      t.equal(err?.code, 64, args.join(' '));
      t.match(err?.stderr, message, args.join(' '));
    }
  },
);
