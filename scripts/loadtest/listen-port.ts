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
