import { closeSync, fstatSync, lstatSync, openSync, watch, statSync, type FSWatcher, type Stats } from 'node:fs';
import { open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { CONFIG_OPEN_FLAGS, configFileProblem, configHash, readConfigText } from './config-file.js';

// SPEC §13, issue 14 part 3: `config.watch: true` applies a changed config file by itself.
//
// Why the DIRECTORY is watched, not the file: kubelet never rewrites a mounted ConfigMap file. It
// writes the new data into a fresh `..<timestamp>` directory, points a `..data_tmp` symlink at it and
// renames that over `..data`; `graygate.json` is a symlink to `..data/graygate.json`. A watch on the
// file (an inode) keeps watching the old, deleted copy; editors that save by rename do the same to
// a plain file. Every event in the directory therefore only means "look again": the file is re-read
// through its path and its content hash decides whether anything changed, so a touch, an editor's
// backup file or kubelet's bookkeeping never cause a reload. (A ConfigMap mounted with `subPath` is
// never updated at all, kubernetes #50345: mount it as a directory.)
//
// What a change does is the caller's business: the master runs its reload path
// (Operations.reload), which refuses an invalid file and keeps the old config. The watch calls
// onChange once per distinct content, so an invalid file is reported once, not on every event;
// a content whose onChange rejected (not applied, e.g. a deploy was running) is offered again after
// a backoff (retryMs, doubling up to 32×), never on the next event: the directory may be the one the
// master logs into, and every failed try may fork a worker.

/** The default quiet time before a burst of events is looked at. */
const DEFAULT_CONFIG_DEBOUNCE_MS = 250;
// The longest wait after a burst's first event, as lodash's debounce maxWait: a directory that never goes
// quiet (the master's log, a busy /tmp) re-armed the quiet time for ever and a change was never applied.
// 4× the quiet time, at least 1 s, so an editor's save or kubelet's swap is still read once, whole.
const MAX_WAIT_FACTOR = 4;
const MIN_MAX_WAIT_MS = 1_000;
/** The default wait before content that could not be applied is offered again; it doubles up to 32×. */
const DEFAULT_RETRY_MS = 10_000;
/** How often a watch whose directory is gone looks for it again, ms. */
const DIR_POLL_MS = 1000;
const MAX_RETRY_FACTOR = 32;

export interface ConfigChange {
  /** configHash of the text just read. It equals LoadedConfig.hash when the caller reloads it. */
  hash: string;
  /** The hash the watch held before: `initialHash`, the content at start, or the last change's. */
  previousHash: string | undefined;
}

export interface ConfigWatchOptions {
  /**
   * The config file. It may be a symlink (kubelet's `graygate.json`
   * → `..data/graygate.json`); its directory is watched.
   */
  path: string;
  /**
   * Called once per real change of the file's content (never for a touch or an identical rewrite).
   * If it returns a promise, the watch waits for it before it looks again, so a change that arrives
   * during a slow reload (a deploy) is applied after it, never folded into it. Resolving means the
   * content was dealt with (applied, or refused for good: an invalid file is not offered again
   * until it changes). A rejection means it was not applied and nothing changed (a deploy was
   * running, a build did not start): it goes to onError, and the same content is offered again
   * after retryMs (then 2×, 4× … up to 32×), unless the file changes first. The watch goes on.
   */
  onChange: (change: ConfigChange) => void | Promise<void>;
  /**
   * Problems of the watch itself: the file cannot be read (reported once until it can be read
   * again), onChange rejected, or the directory watcher failed (the watch has then stopped).
   * Default: ignored.
   */
  onError?: (err: Error) => void;
  /**
   * Called when events led to a look that found the same content (a touch,
   * an identical rewrite). Default: nothing. For debug logs.
   */
  onUnchanged?: (hash: string) => void;
  /** The file's directory was replaced (removed and made again, renamed away) and the new one is watched now. */
  onRewatch?: (dir: string) => void;
  /**
   * Quiet time after the last event before the file is read, in ms. Default 250: spans an editor's
   * save or kubelet's swap (a few syscalls), short next to kubelet's own delay (up to about a minute).
   * Events that never stop do not postpone the read past max(4 × debounceMs, 1000 ms) after the first.
   */
  debounceMs?: number;
  /**
   * The hash of the config the caller already applied (LoadedConfig.hash). Given, the watch looks
   * once at start, so a change between the caller's load and the watch's start is not lost.
   * Omitted, the file's content at start is the baseline (read synchronously).
   */
  initialHash?: string;
  /** Wait before content whose onChange rejected is offered again, ms; it doubles up to 32×. Default 10 000. */
  retryMs?: number;
  /** Aborting it closes the watch. */
  signal?: AbortSignal;
}

export interface ConfigWatch {
  /** Stops watching and disposes the directory watcher, the pending timer and the signal listener. Idempotent. */
  close(): void;
}

/** Starts watching; throws `signal.reason` if the signal is already aborted. */
export function watchConfigFile(options: ConfigWatchOptions): ConfigWatch {
  const { path, onChange, signal } = options;
  const onError = options.onError ?? ((): void => {});
  const debounceMs = options.debounceMs ?? DEFAULT_CONFIG_DEBOUNCE_MS;
  if (!Number.isFinite(debounceMs) || debounceMs < 0)
    throw new RangeError(`debounceMs: must be a number ≥ 0, got ${debounceMs}`);
  signal?.throwIfAborted();

  let current = options.initialHash ?? hashNow(path);
  let timer: NodeJS.Timeout | undefined;
  const maxWaitMs = Math.max(MAX_WAIT_FACTOR * debounceMs, MIN_MAX_WAIT_MS);
  let burstStartMs: number | undefined; // when the first event not yet looked at arrived
  const retryMs = options.retryMs ?? DEFAULT_RETRY_MS;
  let retryTimer: NodeJS.Timeout | undefined;
  let retries = 0; // rejected tries of failedHash
  let failedHash: string | undefined;
  let isLooking = false; // a read or an onChange is running
  let isDirty = false; // events arrived while looking
  let isClosed = false;
  let lastErrorKey: string | undefined;
  const reads = new AbortController(); // cancels a read in flight at close()

  const schedule = (): void => {
    if (isClosed) return;
    if (isLooking) {
      isDirty = true;
      return;
    }
    const nowMs = performance.now();
    burstStartMs ??= nowMs;
    clearTimeout(timer);
    // A throwing onUnchanged or onError is the caller's bug; it is reported, never an unhandled rejection.
    timer = setTimeout(
      () => void look().catch((err: unknown) => onError(err instanceof Error ? err : new Error(String(err)))),
      Math.max(0, Math.min(debounceMs, burstStartMs + maxWaitMs - nowMs)),
    );
  };

  const look = async (): Promise<void> => {
    timer = undefined;
    burstStartMs = undefined;
    rewatchIfReplaced();
    isLooking = true;
    try {
      let text: string;
      try {
        text = await readBounded(path, reads.signal);
      } catch (err) {
        if (isClosed) return;
        // Once per kind of failure: a missing file stays one report, however many events follow.
        const key = (err as NodeJS.ErrnoException).code ?? String(err);
        if (key !== lastErrorKey) onError(err as Error);
        lastErrorKey = key;
        return;
      }
      lastErrorKey = undefined;
      if (isClosed) return;
      const hash = configHash(text);
      if (hash === current) {
        options.onUnchanged?.(hash);
        return;
      }
      const previousHash = current;
      // Recorded before onChange runs: a file it refuses is not offered again until it changes.
      current = hash;
      clearTimeout(retryTimer);
      if (hash !== failedHash) retries = 0;
      try {
        await onChange({ hash, previousHash });
        retries = 0;
      } catch (err) {
        if (isClosed) return;
        onError(err instanceof Error ? err : new Error(String(err)));
        // Not applied: offered again after a backoff, if the file still holds it then.
        failedHash = hash;
        const delayMs = retryMs * Math.min(MAX_RETRY_FACTOR, 2 ** retries);
        retries++;
        retryTimer = setTimeout(() => {
          if (current !== hash) return;
          current = previousHash;
          schedule();
        }, delayMs);
        retryTimer.unref();
      }
    } finally {
      isLooking = false;
      if (isDirty) {
        isDirty = false;
        schedule();
      }
    }
  };

  const dir = dirname(path);
  /**
   * The watched directory, held open: once its name leads elsewhere (removed and made again, renamed away, a symlink
   * swapped), its device and inode are not the name's (held, its inode cannot be another's).
   */
  let dirFd: number | undefined;
  let dirPoll: NodeJS.Timeout | undefined;
  /** The last try to watch the directory again failed (said once, until one succeeds). */
  let isRewatchFailing = false;
  const startWatcher = (): FSWatcher => {
    const fd = openSync(dir, 'r');
    let next: FSWatcher;
    try {
      // Every event means "look again": kubelet's names (`..data`, `..2026_…`) are not the file's.
      next = watch(dir, () => schedule());
    } catch (err) {
      closeSync(fd);
      throw err;
    }
    if (dirFd !== undefined) closeSync(dirFd);
    dirFd = fd;
    next.on('error', (err) => {
      close();
      onError(
        new Error(`config watch stopped: the directory of ${path} cannot be watched: ${err.message}`, { cause: err }),
      );
    });
    return next;
  };
  let watcher: FSWatcher;
  try {
    watcher = startWatcher();
  } catch (err) {
    throw new Error(`cannot watch the directory of ${path}: ${(err as Error).message}`, { cause: err });
  }
  // A directory reached through a symlink (a release directory `current` → `r2`) is swapped in its parent, which the
  // directory's own watch never hears: the parent is watched too, each event a look (which follows the swap).
  const linkWatcher = isSymlink(dir) ? watchQuietly(dirname(dir), schedule) : undefined;
  /**
   * At each look: if the directory is gone or another one now, the watch on the old one hears nothing more (inotify
   * watches an inode), so it is watched again once it exists, and looked at.
   */
  const rewatchIfReplaced = (): void => {
    if (isClosed || dirPoll !== undefined || dirFd === undefined) return;
    const held = fstatSync(dirFd);
    const named = statOf(dir);
    if (named !== undefined && named.ino === held.ino && named.dev === held.dev) return;
    if (named === undefined) {
      dirPoll = setTimeout(() => {
        dirPoll = undefined;
        rewatchIfReplaced();
      }, DIR_POLL_MS);
      dirPoll.unref();
      return;
    }
    watcher.close();
    try {
      watcher = startWatcher();
    } catch (err) {
      // Out of descriptors or inotify watches for a moment (EMFILE, ENFILE, ENOSPC), or the name not a directory
      // yet: tried again every DIR_POLL_MS, said once. Given up on, one moment at the file limit turned the watch off
      // for good, with nothing in /admin/status to say so (a probe).
      if (!isRewatchFailing)
        onError(
          new Error(
            `config watch: ${dir} cannot be watched again for now (${(err as Error).message}): trying every second`,
          ),
        );
      isRewatchFailing = true;
      dirPoll = setTimeout(() => {
        dirPoll = undefined;
        rewatchIfReplaced();
      }, DIR_POLL_MS);
      dirPoll.unref();
      return;
    }
    isRewatchFailing = false;
    options.onRewatch?.(dir);
    schedule();
  };

  const close = (): void => {
    if (isClosed) return;
    isClosed = true;
    watcher.close();
    clearTimeout(timer);
    clearTimeout(retryTimer);
    clearTimeout(dirPoll);
    linkWatcher?.close();
    if (dirFd !== undefined) closeSync(dirFd);
    dirFd = undefined;
    timer = undefined;
    reads.abort();
    signal?.removeEventListener('abort', close);
  };
  signal?.addEventListener('abort', close, { once: true });
  if (options.initialHash !== undefined) schedule();
  return { close };
}

function isSymlink(path: string): boolean {
  try {
    return lstatSync(path).isSymbolicLink();
  } catch {
    return false;
  }
}

/** A watch that is a help, not a need: undefined if it cannot start, closed (and silent) if it fails later. */
function watchQuietly(dir: string, onEvent: () => void): FSWatcher | undefined {
  try {
    const watcher = watch(dir, onEvent);
    watcher.on('error', () => watcher.close());
    return watcher;
  } catch {
    return undefined;
  }
}

function statOf(dir: string): Stats | undefined {
  try {
    return statSync(dir);
  } catch {
    return undefined;
  }
}

/** The file's text, refused unread as loadConfig refuses it (config-file.ts configFileProblem). */
async function readBounded(path: string, signal: AbortSignal): Promise<string> {
  const file = await open(path, CONFIG_OPEN_FLAGS);
  try {
    const problem = configFileProblem(await file.stat());
    if (problem !== undefined) throw new Error(`${path}: ${problem}`);
    return await file.readFile({ encoding: 'utf8', signal });
  } finally {
    await file.close();
  }
}

/** The baseline when the caller gives none; an unreadable file has none (its first readable content is a change). */
function hashNow(path: string): string | undefined {
  try {
    return configHash(readConfigText(path));
  } catch {
    return undefined;
  }
}
