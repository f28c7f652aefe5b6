import t from 'tap';
import { Readable } from 'node:stream';
import { readStatusError, retryAfterSeconds } from '../../../worker/upstream/pipeline.js';

// An upstream's 429 or 503 tells the client when to come back (SPEC §4: 4xx/429 kept, with Retry-After).

t.test('Retry-After: delay-seconds or an HTTP-date', async (t) => {
  const now = Date.parse('Wed, 02 Dec 2026 23:30:00 GMT');
  t.equal(retryAfterSeconds('120', now), 120);
  t.equal(retryAfterSeconds(' 0 ', now), 0);
  t.equal(retryAfterSeconds('Wed, 02 Dec 2026 23:31:30 GMT', now), 90, 'an HTTP-date, 90 s ahead');
  t.equal(retryAfterSeconds('Wed, 02 Dec 2026 23:29:00 GMT', now), 0, 'a date in the past: now');
  for (const bad of ['-5', '1.5', '', 'soon', '12abc', undefined, ['1', '2']])
    t.equal(retryAfterSeconds(bad, now), undefined, `not a Retry-After: ${JSON.stringify(bad)}`);
});

t.test('an upstream 429 with an HTTP-date Retry-After keeps it, in seconds', async (t) => {
  const inAnHour = new Date(Date.now() + 3_600_000).toUTCString();
  const err = await readStatusError(
    429,
    { 'retry-after': inAnHour },
    Readable.from([Buffer.from('{"error":{"message":"slow down"}}')]),
    1024,
  );
  t.equal(err.status, 429);
  // Seconds from now, so bounded below loosely: the test may run late, never early.
  t.ok(err.retryAfterS !== undefined && err.retryAfterS > 3000 && err.retryAfterS <= 3600, `${err.retryAfterS} s`);
});
