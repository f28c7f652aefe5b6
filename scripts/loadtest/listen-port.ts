import { readFileSync, readdirSync, readlinkSync } from 'node:fs';

// The TCP port a process listens on, from /proc (Linux): its socket inodes in
// /proc/<pid>/fd matched against LISTEN rows of /proc/net/tcp{,6}. graygate
// does not publish its workers' ports, and `compare` must send the "direct"
// load to the very worker graygate forwards to.

const TCP_LISTEN = '0A';

function socketInodes(pid: number): Set<string> {
  const inodes = new Set<string>();
  for (const fd of readdirSync(`/proc/${pid}/fd`)) {
    try {
      const link = readlinkSync(`/proc/${pid}/fd/${fd}`);
      if (link.startsWith('socket:[')) inodes.add(link.slice(8, -1));
    } catch {
      // the fd closed while we looked
    }
  }
  return inodes;
}

/** Ports `pid` listens on (TCP, IPv4 or IPv6), ascending. Empty when /proc is unavailable. */
export function listeningPorts(pid: number): number[] {
  let inodes: Set<string>;
  try {
    inodes = socketInodes(pid);
  } catch {
    return [];
  }
  const ports = new Set<number>();
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    let text = '';
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    for (const line of text.split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== TCP_LISTEN || !inodes.has(f[9]!)) continue;
      ports.add(parseInt(f[1]!.split(':')[1]!, 16));
    }
  }
  return [...ports].sort((a, b) => a - b);
}

// __SO_ACCEPTCON in /proc/net/unix's Flags column: the socket is listening.
const UNIX_ACCEPTCON = 0x10000;

/**
 * Paths of the unix domain sockets `pid` listens on (a worker may
 * serve the master over one). Empty when none or no /proc.
 */
function listeningUnixPaths(pid: number): string[] {
  let inodes: Set<string>;
  let text: string;
  try {
    inodes = socketInodes(pid);
    text = readFileSync('/proc/net/unix', 'utf8');
  } catch {
    return [];
  }
  const paths: string[] = [];
  // "Num RefCount Protocol Flags Type St Inode Path"
  for (const line of text.split('\n').slice(1)) {
    const f = line.trim().split(/\s+/);
    if (f.length < 8 || (parseInt(f[3]!, 16) & UNIX_ACCEPTCON) === 0 || !inodes.has(f[6]!)) continue;
    paths.push(f.slice(7).join(' '));
  }
  return paths.filter((p) => p.startsWith('/'));
}

/** Where a worker can be reached directly: its TCP port, else its unix socket; undefined if neither is found. */
export type WorkerAddress = { kind: 'tcp'; url: string; hostPort: string } | { kind: 'unix'; socketPath: string };

export function workerAddress(pid: number): WorkerAddress | undefined {
  const port = listeningPorts(pid)[0];
  if (port !== undefined) return { kind: 'tcp', url: `http://127.0.0.1:${port}`, hostPort: `127.0.0.1:${port}` };
  const socketPath = listeningUnixPaths(pid)[0];
  return socketPath === undefined ? undefined : { kind: 'unix', socketPath };
}
