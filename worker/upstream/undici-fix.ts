import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

// undici 7 asserts that its HTTP/1.1 parser is not paused when a connection
// that closes after its answer (`Connection: close`, HTTP/1.0, a body ended by
// the connection's end) ends or is reset: an AssertionError thrown from a
// socket listener, which kills the worker with every stream on it (undici issue
// #5360). A slow client pauses the parser; an upstream that then closes or dies
// crashed the worker. undici 8 fixed it (PRs #5389, which drops the assertion,
// and #5474, which drains a paused parser at the end) but needs Node 22.19, and
// graygate runs on Node 20. patches/undici+7.30.2.patch is both, making 7.30.2's
// Parser.finish() undici 8's (the 7.x backport branch, unreleased, has #5474
// only, and still throws). `npm ci` applies it (postinstall: patch-package).
// Without it (an install with --ignore-scripts) the worker says so at start.

/** A line of #5474, in the patched client-h1.js. */
const DRAIN_MARK = 'Backpressure is advisory here';

/** The installed undici finishes a paused HTTP/1.1 parser when its connection ends, instead of throwing. */
export const UNDICI_FINISHES_PAUSED_PARSERS = hasTheFix();

/** Said once at a worker's start when the fix is missing. */
export const MISSING_FIX_WARNING =
  'undici is not patched (patches/undici+7.30.2.patch, applied by `npm ci`; --ignore-scripts skips it): an upstream ' +
  'connection that closes after its answer and ends or resets while a slow client holds the answer paused makes ' +
  'undici throw and this worker exit (undici issue #5360)';

function hasTheFix(): boolean {
  try {
    const entry = createRequire(import.meta.url).resolve('undici');
    return finishesPausedParsers(readFileSync(join(dirname(entry), 'lib/dispatcher/client-h1.js'), 'utf8'));
  } catch {
    return false;
  }
}

/** `source` (undici's client-h1.js) drains a paused parser at its end (#5474) and no longer asserts it (#5389). */
export function finishesPausedParsers(source: string): boolean {
  const start = source.indexOf('  finish () {');
  const asserts = start < 0 ? '' : source.slice(start, source.indexOf('const { llhttp } = this', start));
  return source.includes(DRAIN_MARK) && asserts !== '' && !asserts.includes('assert(!this.paused)');
}
