import t from 'tap';
import { parseArgs } from 'node:util';
import { parseArgsProblem } from '../../scripts/parse-args-problem.js';

// parseArgs' own errors, as node raises them, in one line that names the flag (a README walk-through: `--cofig` was
// told to put a positional argument after `--`, `--weight -1` that it was "ambiguous").
const refusal = (args: string[]): unknown => {
  try {
    parseArgs({ args, allowPositionals: true, options: { weight: { type: 'string' }, json: { type: 'boolean' } } });
  } catch (err) {
    return err;
  }
  throw new Error(`parseArgs took ${args.join(' ')}`);
};

t.test('each parseArgs refusal, named by its flag', async (t) => {
  const cases: Array<[string[], string]> = [
    [['--cofig', 'x'], 'unknown flag --cofig (--help lists the flags)'],
    [['-x'], 'unknown flag -x (--help lists the flags)'],
    [
      ['--weight', '-1'],
      '--weight needs a value, and one that starts with a dash reads as a flag: write --weight=VALUE',
    ],
    [['--weight'], '--weight needs a value'],
    [['--json=1'], '--json takes no value'],
  ];
  for (const [args, expected] of cases) t.equal(parseArgsProblem(refusal(args)), expected, args.join(' '));
});

t.test('anything else is not a parseArgs refusal', async (t) => {
  t.equal(parseArgsProblem(new Error('boom')), undefined);
  t.equal(parseArgsProblem(null), undefined);
  t.equal(parseArgsProblem(Object.assign(new Error('x'), { code: 'ENOENT' })), undefined);
  const odd = Object.assign(new Error('a new wording\nsecond line'), { code: 'ERR_PARSE_ARGS_SOMETHING' });
  t.equal(parseArgsProblem(odd), 'a new wording', 'a wording it does not know: its first line');
});
