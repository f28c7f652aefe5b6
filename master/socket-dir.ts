import { lstatSync, mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { connect } from 'node:net';
import { join } from 'node:path';

// Workers listen on unix sockets in a directory only this user can enter, made at start and removed when the master
// exits. A master killed with SIGKILL (the OOM killer, a process manager's last resort) cannot remove it: the next
// start removes such leftovers, told apart by the master's PID in the name. A directory is removed only if this user
// owns it, no process has that PID (kill(pid, 0) is ESRCH), it has not changed for a minute, it holds nothing but
// sockets and every one of them refuses a connection: never another live master's (one in another PID namespace
// sharing /tmp has a PID this one cannot see), another user's, or anything a person put there.

const PREFIX = 'graygate-';
const LEFTOVER = /^graygate-(\d+)-[A-Za-z0-9]{6}$/;
/** A directory changed less than this long ago is left alone, ms. */
const SETTLED_MS = 60_000;

/** Makes this master's socket directory in `parent` (the system's temporary directory), removing dead masters'. */
export async function makeSocketDir(parent: string): Promise<string> {
  await Promise.all(
    leftovers(parent).map(async (dir) => {
      if (!(await isDead(dir))) return;
      try {
        rmSync(dir, { recursive: true, force: true });
      } catch {
        // Another master starting at the same moment removed it first, or it is not ours to remove.
      }
    }),
  );
  return mkdtempSync(join(parent, `${PREFIX}${process.pid}-`));
}

/** Directories of `parent` that look like a dead master's: sockets only, named after a PID no process has. */
function leftovers(parent: string): string[] {
  let names: string[];
  try {
    names = readdirSync(parent);
  } catch {
    return [];
  }
  const uid = process.getuid?.();
  return names.flatMap((name) => {
    const pid = LEFTOVER.exec(name)?.[1];
    if (pid === undefined || isRunning(Number(pid))) return [];
    const dir = join(parent, name);
    try {
      const stat = lstatSync(dir);
      if (!stat.isDirectory() || (uid !== undefined && stat.uid !== uid)) return [];
      // Changed a moment ago: a master still starting its workers (in a PID namespace this one cannot see).
      if (Date.now() - stat.mtimeMs < SETTLED_MS) return [];
      return readdirSync(dir).every((entry) => lstatSync(join(dir, entry)).isSocket()) ? [dir] : [];
    } catch {
      return []; // gone meanwhile, or not ours to read: left as it is
    }
  });
}

/** Whether every socket in `dir` refuses a connection (nobody listens on it), or it has none. */
async function isDead(dir: string): Promise<boolean> {
  try {
    const sockets = readdirSync(dir).map((entry) => join(dir, entry));
    const refused = await Promise.all(sockets.map(refuses));
    return refused.every(Boolean);
  } catch {
    return false;
  }
}

/** A unix socket's connect answers at once: refused (or gone) when nobody listens, accepted or EAGAIN otherwise. */
function refuses(path: string): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect(path);
    socket.once('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.once('error', (err: NodeJS.ErrnoException) => resolve(err.code === 'ECONNREFUSED' || err.code === 'ENOENT'));
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
