import type { Gateway } from './gateway.js';

// Waiting on what the master writes (its log lines): each new output is the event to look again on, never a sleep.

/** Waits until `find` finds something in the gateway's output. */
export async function untilOutput<T>(gw: Gateway, find: () => T | undefined): Promise<T> {
  for (;;) {
    const found = find();
    if (found !== undefined) return found;
    await nextOutput(gw);
  }
}

/** Waits until the gateway's output holds `text`. */
export function untilOutputHas(gw: Gateway, text: string): Promise<true> {
  return untilOutput(gw, () => (gw.output().includes(text) ? true : undefined));
}

/** The master's next output, on stdout or stderr (both listeners removed after). */
function nextOutput(gw: Gateway): Promise<void> {
  const { stdout, stderr } = gw.child;
  return new Promise((resolve) => {
    const onData = (): void => {
      stdout!.off('data', onData);
      stderr!.off('data', onData);
      resolve();
    };
    stdout!.on('data', onData);
    stderr!.on('data', onData);
  });
}
