import t from 'tap';
import { MAX_STARTS_PER_TURN, startsDue } from '../../../scripts/loadtest/open-loop.js';

t.test('an open loop starts what is due, never more than a bounded number in one turn', async (t) => {
  const cases: Array<[string, { elapsedMs: number; rate: number; sent: number }, number]> = [
    ['nothing due yet', { elapsedMs: 5, rate: 100, sent: 0 }, 0],
    ['on schedule', { elapsedMs: 1000, rate: 100, sent: 99 }, 1],
    ['ahead (sent more than due)', { elapsedMs: 1000, rate: 100, sent: 150 }, 0],
    // --rate 1e9: one turn had millions to start and the process never handled SIGTERM.
    ['far behind', { elapsedMs: 2000, rate: 1e9, sent: 0 }, MAX_STARTS_PER_TURN],
    ['at the --rate bound, one 2 ms turn', { elapsedMs: 2, rate: 100_000, sent: 0 }, 200],
  ];
  for (const [name, facts, want] of cases) t.equal(startsDue(facts), want, name);
});
