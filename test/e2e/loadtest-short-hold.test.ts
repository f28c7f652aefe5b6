import t from 'tap';
import { smoke } from '../helpers/loadtest-smoke.js';

// A hold too short to measure printed contradictory figures (the load-script probe): "first tokens 0" at the hold
// beside a note of a first-token p50 of streams answered after it, and a negative RSS per stream. It says "not
// measured" instead. --hold sends a token every 2 s: a ramp and hold of 1 s end before any first token is due.

t.test('streams --hold shorter than a token interval: first token and RSS per stream are "not measured"', async (t) => {
  const report = await smoke(t, 'streams', ['--hold', '--streams', '5', '--ramp-s', '0.5', '--hold-s', '0.5']);
  const notes = report.notes.join('\n');
  t.match(notes, /First token: none by the end of the hold, so not measured/);
  t.notMatch(notes, /First token: \d+ streams, p50/, 'no percentile of streams answered after the hold');
  const { perStreamKb } = (report.results as { rss: { perStreamKb: number | null } }).rss;
  t.ok(perStreamKb === null || perStreamKb > 0, `RSS per stream is measured or null, never negative: ${perStreamKb}`);
});
