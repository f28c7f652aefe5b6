import type { Teardown } from './gateway.js';

// Work counted, not timed (STYLE: no timing assertions): a queue taken out with Array.prototype.shift copies what is
// left each time, so the length of the arrays it is called on tells a quadratic drain from a linear one.

/** Watches Array.prototype.shift until `stop()` (or the test's end): the longest array it was called on. */
export function watchShift(t: Teardown): { stop: () => number } {
  let longest = 0;
  const shift = Array.prototype.shift;
  Array.prototype.shift = function <T>(this: T[]): T | undefined {
    longest = Math.max(longest, this.length);
    return shift.call(this) as T | undefined;
  };
  const restore = (): void => {
    Array.prototype.shift = shift;
  };
  t.teardown(restore);
  return {
    stop: () => {
      restore();
      return longest;
    },
  };
}
