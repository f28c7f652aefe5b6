import { isIPv4, isIPv6 } from 'node:net';

// Whose connection is it, for limits.maxClientConnectionsPerAddress (client-connections.ts; HAProxy's src_conn_cur,
// nginx's limit_conn keyed on $binary_remote_addr): an IPv4 address is one client, written as an IPv4-mapped IPv6
// address too ('::ffff:192.0.2.1', how a dual-stack listener sees it); an IPv6 client is its /64, since a host picks
// any address in its /64 (per address, one host would open a connection from each). A /64 is often a whole LAN (its
// hosts share one share, as a NAT's do an IPv4 address), and a network given a /56 or a /48 has many: README says so.

/** The key of a connection's remote address: the IPv4 address, or an IPv6 /64 as `a:b:c:d::/64`. */
export function addressKey(address: string): string {
  if (isIPv4(address)) return address;
  const zone = address.indexOf('%'); // fe80::1%eth0: the zone names the link, not the client
  const ip = zone === -1 ? address : address.slice(0, zone);
  if (!isIPv6(ip)) return address;
  const groups = expandIPv6(ip.toLowerCase());
  if (groups[0] === 0 && groups[1] === 0 && groups[2] === 0 && groups[3] === 0 && groups[4] === 0) {
    // ::ffff:a.b.c.d, an IPv4 client on a dual-stack socket
    if (groups[5] === 0xffff) return `${groups[6]! >> 8}.${groups[6]! & 0xff}.${groups[7]! >> 8}.${groups[7]! & 0xff}`;
  }
  return `${groups[0]!.toString(16)}:${groups[1]!.toString(16)}:${groups[2]!.toString(16)}:${groups[3]!.toString(16)}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (isIPv6), a trailing dotted IPv4 part read as two. */
function expandIPv6(ip: string): number[] {
  const parts = (half: string): number[] => {
    if (half === '') return [];
    const groups: number[] = [];
    for (const part of half.split(':')) {
      if (part.includes('.')) {
        const [a, b, c, d] = part.split('.').map(Number) as [number, number, number, number];
        groups.push((a << 8) | b, (c << 8) | d);
      } else groups.push(parseInt(part, 16));
    }
    return groups;
  };
  const gap = ip.indexOf('::');
  if (gap === -1) return parts(ip);
  const head = parts(ip.slice(0, gap));
  const tail = parts(ip.slice(gap + 2));
  return [...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail];
}
