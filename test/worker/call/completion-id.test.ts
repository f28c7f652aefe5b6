import t from 'tap';
import { completionId } from '../../../worker/call/handler.js';

// Completion ids (OpenAI's `chatcmpl-…`) come 12 random bytes at a time from a buffer refilled every 128 ids.

t.test('every id is chatcmpl- and 16 base64url characters, and none repeats across refills', (t) => {
  const ids = new Set<string>();
  // 1,000 ids: seven refills of the 128-id buffer, and a part of the eighth.
  for (let i = 0; i < 1000; i++) {
    const id = completionId();
    if (!/^chatcmpl-[A-Za-z0-9_-]{16}$/.test(id)) t.fail(`malformed id ${id}`);
    ids.add(id);
  }
  t.equal(ids.size, 1000, 'all distinct');
  t.end();
});
