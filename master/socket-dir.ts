import { once } from 'node:events';
import { lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect, createServer, type Server } from 'node:net';
import { join } from 'node:path';
import type { Logger } from '../shared/log.js';
import { isRefusal } from './proxy.js';

// Workers listen on unix sockets in a directory only this user can enter, made at start and removed when the master
// exits. A master killed with SIGKILL (the OOM killer, a process manager's last resort) cannot remove it: the next
// start removes such leftovers. The master listens on a sentinel socket in its directory for its whole life, so a
// directory is a dead master's only if its sentinel is there and refuses a connection, it holds nothing but sockets
// that all refuse, this user owns it and no process has the PID in its name. Never another live master's (its
// sentinel answers, even from another PID namespace sharing /tmp, even while its workers' sockets are gone in a
// restart's backoff; one so new it has no sentinel yet is left alone), another user's, or anything a person put there.

const PREFIX = 'graygate-';
const LEFTOVER = /^graygate-(\d+)-[A-Za-z0-9]{6}$/;
/** The master's own socket in its directory: listening while it lives. */
const SENTINEL = 'master.sock';

/**
 * The longest unix socket path every platform takes: `sun_path` holds 108 bytes on Linux and 104 on macOS, its NUL
 * included. Past it, libuv cuts the path short, and two sockets of one directory can end up at the same cut path.
 */
const MAX_SOCKET_PATH = 103;
/** The longest name a socket gets in the directory: a worker's `w<n>.sock`, `n` counting every worker started. */
const LONGEST_NAME = 'w4294967295.sock';

/** This master's socket directory, and its sentinel (closed only by tests: the master's lives as long as it does). */
export interface SocketDir {
  path: string;
  sentinel: Server;
}

/**
 * This master's socket directory in the first of `parents` (the system's temporary directory, then /tmp) that can hold
 * one: a directory this user can make, whose sockets' paths fit in `sun_path`. None (a deep `TMPDIR` with no /tmp, a
 * read-only one): undefined, and the master does not start (main.ts). Each parent passed over is a warn line.
 */
export async function openSocketDir(parents: readonly string[], log: Logger): Promise<SocketDir | undefined> {
  for (const parent of new Set(parents)) {
    // mkdtemp adds six characters; a PID has at most seven digits (pid_max is at most 2^22).
    const longest = join(parent, `${PREFIX}4194304-XXXXXX`, LONGEST_NAME);
    if (Buffer.byteLength(longest) > MAX_SOCKET_PATH) {
      log.warn(
        { parent, bytes: Buffer.byteLength(longest), maxBytes: MAX_SOCKET_PATH },
        'temporary directory too deep for unix socket paths; not using it',
      );
      continue;
    }
    try {
      return await makeSocketDir(parent);
    } catch (err) {
      log.warn({ parent, err }, 'cannot make a socket directory in the temporary directory; not using it');
    }
  }
  return undefined;
}

/** Makes this master's socket directory in `parent` (the system's temporary directory), removing dead masters'. */
export async function makeSocketDir(parent: string): Promise<SocketDir> {
  await Promise.all(
    leftovers(parent).map(async ({ dir, sockets }) => {
      // Every one, its sentinel among them, refuses a connection: nobody listens on it.
      if (!(await Promise.all(sockets.map(refuses))).every(Boolean)) return;
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // Another master starting at the same moment removed it first, or it is not ours to remove.
      }
    }),
  );
  const dir = mkdtempSync(join(parent, `${PREFIX}${process.pid}-`));
  // Removed when this process exits, from now (a signal while the sentinel starts listening included).
  process.once('exit', () => rmSync(dir, { recursive: true, force: true }));
  // Connections come only from other masters' checks: closed at once. Without a sentinel (listen failed) the
  // directory is simply never taken for a leftover.
  const sentinel = createServer((socket) => socket.destroy()).on('error', () => undefined);
  sentinel.listen(join(dir, SENTINEL));
  sentinel.unref();
  await Promise.race([once(sentinel, 'listening'), once(sentinel, 'close')]);
  return { path: dir, sentinel };
}

/** Directories of `parent` that look like a dead master's (a sentinel, sockets only, a PID no process has). */
function leftovers(parent: string): Array<{ dir: string; sockets: string[] }> {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return [];
  }
  const uid = process.getuid?.();
  return names.flatMap((name) => {
    const pid = LEFTOVER.exec(name)?.[1];
    // This process's own PID names no directory of its own yet: a former life's (PID 1 in a restarted container).
    if (pid === undefined || (Number(pid) !== process.pid && isRunning(Number(pid)))) return [];
    const dir = join(parent, name);
    try {
      const stat = lstatSync(dir);
      if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid)) return [];
      const entries = readdirSync(dir);
      const sockets = entries.map((entry) => join(dir, entry));
      const isSockets = sockets.every((path) => lstatSync(path).isSocket());
      return entries.includes(SENTINEL) && isSockets ? [{ dir, sockets }] : [];
    } catch {
      return []; // gone meanwhile, or not ours to read: left as it is
    }
  });
}

/** A unix socket's connect answers at once: refused (or gone) when nobody listens, accepted or EAGAIN otherwise. */
function refuses(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(isRefusal(err)));
  });
}

function isRunning(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: a process of another user has that PID.
    return (err as NodeJS.ErrnoException).code !== 'ESRCH';
  }
}
