import t from 'tap';
import { addressKey } from '../../master/address-key.js';

// Whose connection it is, for limits.maxClientConnectionsPerAddress: an IPv4 address however it is written, an IPv6
// client by its /64 (a host picks any address in it).

const TABLE: ReadonlyArray<readonly [address: string, key: string, why: string]> = [
  ['127.0.0.1', '127.0.0.1', 'IPv4 as it is'],
  ['203.0.113.9', '203.0.113.9', 'IPv4 as it is'],
  ['::ffff:203.0.113.9', '203.0.113.9', 'IPv4-mapped, as a dual-stack listener sees it'],
  ['::FFFF:203.0.113.9', '203.0.113.9', 'IPv4-mapped in capitals'],
  ['::ffff:cb00:7109', '203.0.113.9', 'IPv4-mapped in hex'],
  ['0:0:0:0:0:ffff:cb00:7109', '203.0.113.9', 'IPv4-mapped written out'],
  ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64', 'IPv6: its /64'],
  ['2001:db8:1:2:ffff:ffff:ffff:ffff', '2001:db8:1:2::/64', 'another address of the same /64'],
  ['2001:DB8:0001:0002::9', '2001:db8:1:2::/64', 'capitals and leading zeros'],
  ['2001:db8::1', '2001:db8:0:0::/64', 'a gap in the prefix'],
  ['2001:db8:0:3::1', '2001:db8:0:3::/64', 'another /64'],
  ['::1', '0:0:0:0::/64', 'loopback'],
  ['::', '0:0:0:0::/64', 'the unspecified address'],
  ['fe80::1%eth0', 'fe80:0:0:0::/64', 'a zone names the link, not the client'],
  ['fe80::1%2', 'fe80:0:0:0::/64', 'a numbered zone'],
  ['64:ff9b::203.0.113.9', '64:ff9b:0:0::/64', 'NAT64: the /64, not the IPv4 inside'],
  ['::203.0.113.9', '0:0:0:0::/64', 'IPv4-compatible (deprecated) is IPv6'],
  ['not an address', 'not an address', 'anything else is its own key'],
];

for (const [address, key, why] of TABLE) {
  t.test(`${address} → ${key}: ${why}`, async (t) => {
    t.equal(addressKey(address), key);
  });
}
