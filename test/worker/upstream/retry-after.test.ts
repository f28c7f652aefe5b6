import t from 'tap';
import { readStatusError, retryAfterSeconds } from '../../../worker/upstream/pipeline.js';

/** An upstream body of these bytes, as readStatusError reads one. */
const bodyOf = (text: string): { readAll(): Promise<Buffer> } => ({
  readAll: () => Promise.resolve(Buffer.from(text)),
});

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
    bodyOf('{"error":{"message":"slow down"}}'),
    1024,
  );
  t.equal(err.status, 429);
  // Seconds from now, so bounded below loosely: the test may run late, never early.
  t.ok(err.retryAfterS !== undefined && err.retryAfterS > 3000 && err.retryAfterS <= 3600, `${err.retryAfterS} s`);
});

t.test("a hostile upstream's retry hints are capped at a day, never echoed", async (t) => {
  const now = Date.parse('Wed, 02 Dec 2026 23:30:00 GMT');
  t.equal(retryAfterSeconds('999999999', now), 86_400);
  t.equal(retryAfterSeconds('1' + '0'.repeat(400), now), undefined, 'not a number this side of Infinity');
  t.equal(retryAfterSeconds('Fri, 01 Jan 9999 00:00:00 GMT', now), 86_400);
  const hinted = async (headers: Record<string, string>): Promise<number | undefined> =>
    (await readStatusError(429, headers, bodyOf('{}'), 1024)).retryAfterS;
  t.equal(await hinted({ 'retry-after-ms': '1500' }), 2, 'retry-after-ms, rounded up to seconds');
  t.equal(await hinted({ 'retry-after-ms': '1' + '0'.repeat(400) }), undefined);
  t.equal(await hinted({ 'retry-after-ms': String(10 ** 15) }), undefined, 'beyond 12 digits: not taken');
  t.equal(await hinted({ 'retry-after-ms': '999999999999' }), 86_400);
  t.equal(await hinted({ 'retry-after': '3', 'retry-after-ms': '9000' }), 3, 'Retry-After wins');
});
