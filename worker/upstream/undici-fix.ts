import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

// undici 7 asserts that its HTTP/1.1 parser is not paused when a connection
// that closes after its answer (`Connection: close`, HTTP/1.0, a body ended by
// the connection's end) ends or is reset: an AssertionError thrown from a
// socket listener, which kills the worker with every stream on it (undici issue
// #5360). A slow client pauses the parser; an upstream that then closes or dies
// crashed the worker. undici 8 fixed it (PR #5474) but needs Node 22.19, and
// graygate runs on Node 20. patches/undici+7.30.2.patch is that fix as undici's
// maintainers backported it to 7.x (branch backport-5474-to-v7.x, unreleased);
// `npm ci` applies it (postinstall: patch-package). Without it (an install with
// --ignore-scripts), the worker says so at start and reads such answers ahead
// of a slow client as undici's request() did (upstream-body.ts).

/** A line of the fix, in the patched client-h1.js. */
const FIX_MARK = 'Backpressure is advisory here';

/** The installed undici finishes a paused HTTP/1.1 parser when its connection ends, instead of throwing. */
export const UNDICI_FINISHES_PAUSED_PARSERS = hasTheFix();

/** Said once at a worker's start when the fix is missing. */
export const MISSING_FIX_WARNING =
  'undici is not patched (patches/undici+7.30.2.patch, applied by `npm ci`; --ignore-scripts skips it): an answer ' +
  'whose upstream connection closes after it is read 64 KiB ahead of a slow client, and one that ends under a ' +
  "client that far behind makes undici throw and this worker exit (undici issue #5360)";

function hasTheFix(): boolean {
  try {
    const entry = createRequire(import.meta.url).resolve('undici');
    return readFileSync(join(dirname(entry), 'lib/dispatcher/client-h1.js'), 'utf8').includes(FIX_MARK);
  } catch {
    return false;
  }
}
