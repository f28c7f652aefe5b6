import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

// Whether code lets go of an object (issue 10: a held stream must not keep its prompt): V8's gc(),
// exposed in the test process that imports this and nowhere else (node's own tests do the same).
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/**
 * Weak references to `buffer` and to its memory (a slice kept somewhere keeps the ArrayBuffer alone).
 * Make them in the same function that drops the last strong reference the test holds.
 */
export function watch(buffer: Buffer): Array<WeakRef<object>> {
  return [new WeakRef(buffer), new WeakRef(buffer.buffer)];
}

/**
 * Whether every target is gone after a full GC, run in a later job: a WeakRef's target lives until
 * the end of the job that made it.
 */
export async function isCollected(refs: ReadonlyArray<WeakRef<object>>): Promise<boolean> {
  await new Promise((resolve) => setImmediate(resolve));
  gc();
  return refs.every((ref) => ref.deref() === undefined);
}
