import t, { type Test } from 'tap';
import {
  appendFileSync,
  mkdirSync,
  symlinkSync,
  mkdtempSync,
  rmSync,
  writeFileSync,
  renameSync,
  unlinkSync,
  utimesSync,
} from 'node:fs';
import { execFileSync } from 'node:child_process';
import { tmpdir } from 'node:os';
import { once } from 'node:events';
import { createServer } from 'node:net';
import { join } from 'node:path';
import { configHash } from '../../master/config-file.js';
import { watchConfigFile, type ConfigChange, type ConfigWatchOptions } from '../../master/config-watch.js';
import { createKubeletVolume } from '../helpers/kubelet-volume.js';
import type { Teardown } from '../helpers/gateway.js';

// master/config-watch.ts on a real directory: every kind of write a config file sees (editor,
// atomic rename, kubelet's `..data` swap). Tests wait for the watch's own callbacks, never for time.

/** Small quiet time keeps the suite fast; bursts below are written synchronously, so they fall inside it. */
const DEBOUNCE_MS = 30;

type Seen =
  { kind: 'change'; change: ConfigChange } | { kind: 'unchanged'; hash: string } | { kind: 'error'; err: Error };

interface Recorded {
  seen: Seen[];
  changes(): string[];
  /** Resolves once `count` callbacks of `kind` have been seen in total. */
  until(kind: Seen['kind'], count: number): Promise<void>;
  close(): void;
}

function record(
  t: Teardown,
  options: Omit<ConfigWatchOptions, 'onChange' | 'onUnchanged' | 'onError'> &
    Partial<Pick<ConfigWatchOptions, 'onChange'>>,
): Recorded {
  const seen: Seen[] = [];
  const waiters: Array<() => void> = [];
  const push = (s: Seen): void => {
    seen.push(s);
    for (const w of waiters.splice(0)) w();
  };
  const watcher = watchConfigFile({
    debounceMs: DEBOUNCE_MS,
    ...options,
    onChange: (change) => {
      push({ kind: 'change', change });
      return options.onChange?.(change);
    },
    onUnchanged: (hash) => push({ kind: 'unchanged', hash }),
    onError: (err) => push({ kind: 'error', err }),
  });
  t.teardown(() => watcher.close());
  const count = (kind: Seen['kind']): number => seen.filter((s) => s.kind === kind).length;
  return {
    seen,
    changes: () => seen.flatMap((s) => (s.kind === 'change' ? [s.change.hash] : [])),
    until: async (kind, n) => {
      while (count(kind) < n) await new Promise<void>((resolve) => waiters.push(resolve));
    },
    close: () => watcher.close(),
  };
}

function tempDir(t: Teardown): string {
  const dir = mkdtempSync(join(tmpdir(), 'graygate-watch-'));
  t.teardown(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const config = (weight: number): string => JSON.stringify({ versions: { v1: { weight } } }, null, 2) + '\n';

t.test('a plain rewrite in place is one change', async (t) => {
  const path = join(tempDir(t), 'graygate.json');
  writeFileSync(path, config(1));
  const w = record(t, { path });
  writeFileSync(path, config(2));
  await w.until('change', 1);
  t.same(w.seen, [{ kind: 'change', change: { hash: configHash(config(2)), previousHash: configHash(config(1)) } }]);
});

t.test('an atomic rename over the file (how editors save) is one change', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'graygate.json');
  writeFileSync(path, config(1));
  const w = record(t, { path });
  writeFileSync(join(dir, '.graygate.json.tmp'), config(2));
  renameSync(join(dir, '.graygate.json.tmp'), path);
  await w.until('change', 1);
  t.same(w.changes(), [configHash(config(2))]);
  // The watch did not go stale with the old inode: a second rename is seen too.
  writeFileSync(join(dir, '.graygate.json.tmp'), config(3));
  renameSync(join(dir, '.graygate.json.tmp'), path);
  await w.until('change', 2);
  t.same(w.changes(), [configHash(config(2)), configHash(config(3))]);
});

t.test('kubelet’s ..data symlink swap is seen, again and again; other keys changing is no change', async (t) => {
  const volume = createKubeletVolume(tempDir(t), { 'graygate.json': config(1), README: 'a' });
  const w = record(t, { path: volume.path('graygate.json') });
  volume.update({ 'graygate.json': config(2), README: 'a' });
  await w.until('change', 1);
  volume.update({ 'graygate.json': config(3), README: 'a' });
  await w.until('change', 2);
  t.same(w.changes(), [configHash(config(2)), configHash(config(3))]);
  // The ConfigMap's other key changed: kubelet swaps the whole revision, our file's content is the same.
  volume.update({ 'graygate.json': config(3), README: 'b' });
  await w.until('unchanged', 1);
  t.equal(w.changes().length, 2, 'no reload for a swap that left graygate.json as it was');
});

t.test('rapid changes are coalesced into one look at the last content', async (t) => {
  const path = join(tempDir(t), 'graygate.json');
  writeFileSync(path, config(1));
  const w = record(t, { path });
  for (let weight = 2; weight <= 6; weight++) writeFileSync(path, config(weight));
  await w.until('change', 1);
  // A later, separate change: had the burst produced more than one change, it would come before this one.
  writeFileSync(path, config(7));
  await w.until('change', 2);
  t.same(w.changes(), [configHash(config(6)), configHash(config(7))]);
});

t.test('a directory that never goes quiet still has its config change applied', async (t) => {
  // Re-armed at every event, the debounce never fired while something else in the directory (the master's
  // log, a busy /tmp) was written more often than it: a config change then waited for ever.
  const dir = tempDir(t);
  const path = join(dir, 'graygate.json');
  writeFileSync(path, config(1));
  const w = record(t, { path, debounceMs: 100 });
  const busy = setInterval(() => appendFileSync(join(dir, 'busy.log'), 'x'), 5);
  t.teardown(() => clearInterval(busy));
  writeFileSync(path, config(2));
  await w.until('change', 1);
  clearInterval(busy);
  t.same(w.changes(), [configHash(config(2))]);
});

t.test('a touch or an identical rewrite is no change; an invalid file is offered once', async (t) => {
  const path = join(tempDir(t), 'graygate.json');
  writeFileSync(path, config(1));
  const w = record(t, { path });
  const now = new Date();
  utimesSync(path, now, now);
  await w.until('unchanged', 1);
  writeFileSync(path, config(1));
  await w.until('unchanged', 2);
  t.same(w.changes(), []);
  // The module does not judge content: the caller's reload refuses it and logs that once, because
  // the same bytes are never offered again, however often the file is touched.
  writeFileSync(path, '{ not json');
  await w.until('change', 1);
  writeFileSync(path, '{ not json');
  await w.until('unchanged', 3);
  t.same(w.changes(), [configHash('{ not json')]);
});

t.test('a change during a slow onChange is applied after it, never concurrently', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'graygate.json');
  writeFileSync(path, config(1));
  let release: () => void = () => {};
  let running = 0;
  let maxRunning = 0;
  const w = record(t, {
    path,
    onChange: async () => {
      maxRunning = Math.max(maxRunning, ++running);
      await new Promise<void>((resolve) => (release = resolve));
      running--;
    },
  });
  writeFileSync(path, config(2));
  await w.until('change', 1);
  // A witness: a second watch of the same file with the same quiet time. Once it has looked at the next write, and
  // then at a touch after it (a whole further quiet time and read), a watch that did not wait for its onChange would
  // have looked at that write and called onChange again; only then is the absence of that call worth checking.
  // (Checked as soon as a plain fs.watch had heard the write, it passed for a watch that does not wait: its look was
  // still a quiet time away.)
  const witness = record(t, { path });
  writeFileSync(path, config(3));
  await witness.until('change', 1);
  const now = new Date();
  utimesSync(path, now, now);
  await witness.until('unchanged', 1);
  witness.close();
  t.equal(w.changes().length, 1, 'the second change waits for the first onChange');
  release();
  await w.until('change', 2);
  release();
  t.same(w.changes(), [configHash(config(2)), configHash(config(3))]);
  t.equal(maxRunning, 1);
});

t.test('initialHash: a change made before the watch started is not lost', async (t) => {
  const path = join(tempDir(t), 'graygate.json');
  writeFileSync(path, config(2));
  const stale = record(t, { path, initialHash: configHash(config(1)) });
  await stale.until('change', 1);
  t.same(stale.seen, [
    { kind: 'change', change: { hash: configHash(config(2)), previousHash: configHash(config(1)) } },
  ]);
  const current = record(t, { path, initialHash: configHash(config(2)) });
  await current.until('unchanged', 1);
  t.same(current.changes(), []);
});

t.test('a missing file is reported once, and its return with new content is a change', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'graygate.json');
  writeFileSync(path, config(1));
  const w = record(t, { path });
  unlinkSync(path);
  await w.until('error', 1);
  writeFileSync(join(dir, 'unrelated'), 'x'); // more events while the file is still missing
  writeFileSync(join(dir, 'unrelated'), 'y');
  writeFileSync(path, config(2));
  await w.until('change', 1);
  const errors = w.seen.flatMap((s) => (s.kind === 'error' ? [(s.err as NodeJS.ErrnoException).code] : []));
  t.same(errors, ['ENOENT']);
  t.same(w.changes(), [configHash(config(2))]);
});

/** A watch on `conf/graygate.json` in a temporary directory, recording the watch's re-watches. */
function watchedSubdir(t: Teardown): { parent: string; dir: string; path: string; w: Recorded; rewatched: string[] } {
  const parent = tempDir(t);
  const dir = join(parent, 'conf');
  mkdirSync(dir);
  const path = join(dir, 'graygate.json');
  writeFileSync(path, config(1));
  const rewatched: string[] = [];
  const w = record(t, { path, onRewatch: (d) => rewatched.push(d) });
  return { parent, dir, path, w, rewatched };
}

/** Makes the directory again with the file, then edits it: two changes, the second heard only by a new watch. */
async function madeAgainAndEdited(t: Test, dir: string, path: string, w: Recorded): Promise<void> {
  mkdirSync(dir);
  writeFileSync(path, config(2));
  await w.until('change', 1);
  writeFileSync(path, config(3)); // heard only by a watch on the new directory
  await w.until('change', 2);
  t.same(w.changes(), [configHash(config(2)), configHash(config(3))]);
}

t.test('a directory removed and made again is watched again: its later edits are changes too', async (t) => {
  const { dir, path, w, rewatched } = watchedSubdir(t);
  rmSync(dir, { recursive: true });
  await w.until('error', 1); // the file is gone
  await madeAgainAndEdited(t, dir, path, w);
  t.same(rewatched, [dir], 'said so');
});

t.test('a directory that cannot be watched again for a moment is tried again until it can', async (t) => {
  // A probe: the master at its file limit as the directory was replaced, and the watch stopped for good. Here the
  // name is a unix socket for a moment (opening it fails, as at EMFILE), then a directory again.
  const { dir, path, w, rewatched } = watchedSubdir(t);
  // The watch's retries are unref'd timers (a master's servers keep it alive): this process needs a handle meanwhile.
  const alive = setInterval(() => undefined, 60_000);
  t.teardown(() => clearInterval(alive));
  rmSync(dir, { recursive: true });
  const socket = createServer();
  socket.listen(dir);
  await once(socket, 'listening');
  await w.until('error', 1);
  while (!w.seen.some((s) => s.kind === 'error' && /cannot be watched again for now/.test(s.err.message)))
    await w.until('error', w.seen.filter((s) => s.kind === 'error').length + 1);
  await new Promise((resolve) => socket.close(resolve));
  rmSync(dir, { force: true });
  await madeAgainAndEdited(t, dir, path, w);
  t.same(rewatched, [dir], 'watched again');
  t.equal(
    w.seen.filter((s) => s.kind === 'error' && /cannot be watched again/.test(s.err.message)).length,
    1,
    'said once, however often it was tried',
  );
});

t.test('a directory renamed away and made again: the new one is watched', async (t) => {
  const { parent, dir, path, w, rewatched } = watchedSubdir(t);
  renameSync(dir, join(parent, 'conf.old'));
  mkdirSync(dir);
  writeFileSync(path, config(2));
  writeFileSync(join(parent, 'conf.old', 'graygate.json'), config(9)); // the old one's events: a look, no change
  await w.until('change', 1);
  writeFileSync(path, config(3));
  await w.until('change', 2);
  t.same(w.changes(), [configHash(config(2)), configHash(config(3))]);
  t.same(rewatched, [dir]);
});

t.test(
  'a directory reached through a symlink that is swapped (a release `current`): the new one is watched',
  async (t) => {
    const parent = tempDir(t);
    for (const [name, weight] of [
      ['r1', 1],
      ['r2', 2],
    ] as const) {
      mkdirSync(join(parent, name));
      writeFileSync(join(parent, name, 'graygate.json'), config(weight));
    }
    symlinkSync('r1', join(parent, 'current'));
    const rewatched: string[] = [];
    const w = record(t, { path: join(parent, 'current', 'graygate.json'), onRewatch: (d) => rewatched.push(d) });
    symlinkSync('r2', join(parent, 'current.tmp'));
    renameSync(join(parent, 'current.tmp'), join(parent, 'current')); // what `ln -sfn r2 current.tmp && mv -T` does
    await w.until('change', 1);
    writeFileSync(join(parent, 'r2', 'graygate.json'), config(3)); // heard only by a watch on r2
    await w.until('change', 2);
    t.same(w.changes(), [configHash(config(2)), configHash(config(3))]);
    t.same(rewatched, [join(parent, 'current')]);
  },
);

t.test('close() disposes the watcher and the timer, is idempotent, and stops changes', async (t) => {
  const dir = tempDir(t);
  const path = join(dir, 'graygate.json');
  writeFileSync(path, config(1));
  const resources = (name: string): number => process.getActiveResourcesInfo().filter((r) => r === name).length;
  // libuv releases a closed handle in its close phase, a loop turn later: let the previous tests'
  // watchers go first (bounded), here and after close() below.
  const released = async (atMost: number): Promise<void> => {
    for (let i = 0; i < 100 && resources('FSEventWrap') > atMost; i++) await new Promise((r) => setImmediate(r));
  };
  await released(0);
  const timersBefore = resources('Timeout');
  const watchersBefore = resources('FSEventWrap');
  // initialHash makes the watch schedule a look at once: a timer is pending when close() runs.
  const closed = watchConfigFile({
    path,
    initialHash: 'stale',
    debounceMs: DEBOUNCE_MS,
    onChange: () => void t.fail('closed watch called onChange'),
  });
  t.equal(resources('Timeout'), timersBefore + 1, 'a pending look');
  t.equal(resources('FSEventWrap'), watchersBefore + 1, 'a directory watcher');
  closed.close();
  closed.close();
  t.equal(resources('Timeout'), timersBefore, 'the pending look is cancelled');
  await released(watchersBefore);
  t.equal(resources('FSEventWrap'), watchersBefore, 'the directory watcher is released');

  // An open watch on the same directory sees the next change, so the closed one had its chance.
  const open = record(t, { path });
  writeFileSync(path, config(2));
  await open.until('change', 1);
});

t.test('an AbortSignal closes the watch; an aborted one refuses to start', async (t) => {
  const path = join(tempDir(t), 'graygate.json');
  writeFileSync(path, config(1));
  const reason = new Error('shutting down');
  t.throws(() => watchConfigFile({ path, onChange: () => {}, signal: AbortSignal.abort(reason) }), reason);

  const controller = new AbortController();
  const aborted = record(t, { path, signal: controller.signal });
  controller.abort();
  const open = record(t, { path });
  writeFileSync(path, config(2));
  await open.until('change', 1);
  t.same(aborted.seen, []);
  t.throws(() => watchConfigFile({ path, onChange: () => {}, debounceMs: -1 }), RangeError);
});

t.test('a rejected onChange is reported and the watch goes on', async (t) => {
  const path = join(tempDir(t), 'graygate.json');
  writeFileSync(path, config(1));
  const refused = new Error('config not reloaded');
  const w = record(t, {
    path,
    onChange: (change) => (change.hash === configHash(config(2)) ? Promise.reject(refused) : undefined),
  });
  writeFileSync(path, config(2));
  await w.until('error', 1);
  writeFileSync(path, config(3));
  await w.until('change', 2);
  t.same(
    w.seen.map((s) => s.kind),
    ['change', 'error', 'change'],
  );
  t.equal(w.seen[1]?.kind === 'error' && w.seen[1].err, refused);
});

t.test('content whose onChange rejected is not offered again at the next event', async (t) => {
  // Retried at every event, a reload whose build crashes re-ran (and forked a worker) each time the master wrote
  // its log into the config's directory: 13 times in 8 s, for ever.
  const path = join(tempDir(t), 'graygate.json');
  writeFileSync(path, config(1));
  const w = record(t, { path, retryMs: 600_000, onChange: () => Promise.reject(new Error('not applied')) });
  writeFileSync(path, config(2));
  await w.until('error', 1);
  const now = new Date();
  utimesSync(path, now, now); // an unrelated event: the content counts as seen
  await w.until('unchanged', 1);
  t.same(w.changes(), [configHash(config(2))], 'not re-run by the event');
});

t.test('content whose onChange rejected is offered again after a backoff, until it applies', async (t) => {
  const path = join(tempDir(t), 'graygate.json');
  writeFileSync(path, config(1));
  let tries = 0;
  const w = record(t, {
    path,
    retryMs: 20,
    // A reload that could not apply (a deploy running) rejects twice; the same bytes then apply.
    onChange: () => (++tries < 3 ? Promise.reject(new Error('not applied')) : undefined),
  });
  writeFileSync(path, config(2));
  await w.until('change', 3);
  t.same(w.changes(), [configHash(config(2)), configHash(config(2)), configHash(config(2))], 'the same content');
  t.same(
    w.seen.map((s) => s.kind),
    ['change', 'error', 'change', 'error', 'change'],
  );
});

t.test(
  'a file missing at start has no baseline: its first content is a change; a missing directory throws',
  async (t) => {
    const dir = tempDir(t);
    const path = join(dir, 'graygate.json');
    const w = record(t, { path });
    writeFileSync(path, config(1));
    await w.until('change', 1);
    t.same(w.seen, [{ kind: 'change', change: { hash: configHash(config(1)), previousHash: undefined } }]);
    t.throws(() => watchConfigFile({ path: join(dir, 'nope', 'graygate.json'), onChange: () => {} }), {
      message: /cannot watch the directory of/,
      cause: { code: 'ENOENT' },
    });
  },
);

t.test(
  'a file grown past the bound is reported unread, never offered; its return to a config is a change',
  async (t) => {
    // A 300 MB file written over a watched config was read whole (the master 70 MB → 1.2 GB, its port stalled).
    const path = join(tempDir(t), 'graygate.json');
    writeFileSync(path, config(1));
    const w = record(t, { path });
    writeFileSync(path, Buffer.alloc(16 * 1024 * 1024 + 1, 0x20));
    await w.until('error', 1);
    writeFileSync(path, config(2));
    await w.until('change', 1);
    const errors = w.seen.flatMap((s) => (s.kind === 'error' ? [s.err.message] : []));
    t.match(errors, [/graygate\.json: 16777217 bytes, over the 16 MiB a config file may hold$/]);
    t.same(w.changes(), [configHash(config(2))]);
  },
);

t.test(
  'with no baseline given, a FIFO at the path is not read (it would hold the loop): the file put there is a change',
  async (t) => {
    // The baseline's read (hashNow) was unbounded and blocking: a FIFO with no writer held the thread for good.
    const dir = tempDir(t);
    const path = join(dir, 'graygate.json');
    execFileSync('mkfifo', [path]);
    const w = record(t, { path });
    writeFileSync(join(dir, 'next.json'), config(3));
    renameSync(join(dir, 'next.json'), path);
    await w.until('change', 1);
    t.same(w.changes(), [configHash(config(3))]);
  },
);
