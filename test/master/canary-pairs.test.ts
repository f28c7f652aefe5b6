import t from 'tap';
import { CanaryPairs, pairLabel } from '../../master/canary-pairs.js';

// What a reload's answer says of the pairs it dissolved (README, Canary: "Users").

t.test('a dissolved pair is named by its versions, and by the name its users came by once that one left', async (t) => {
  const pairs = new CanaryPairs();
  pairs.pair('v2', 'v1');
  t.same(
    pairs.clear().map(([group, versions]) => pairLabel(group, versions)),
    ['v1+v2'],
  );
  // Promoted, then the old baseline removed: the canary keeps the pair's users, routed as v1.
  pairs.pair('v2', 'v1');
  pairs.leave('v1');
  t.same(pairs.clear(), [['v1', ['v2']]]);
  t.equal(pairLabel('v1', ['v2']), 'v2 (routed as v1)', 'not "the canary pair v2", a pair of one');
  // A canary of the promoted one joins the pair under its first name.
  pairs.pair('v2', 'v1');
  pairs.pair('v3', 'v2');
  pairs.leave('v2');
  t.same(
    pairs.clear().map(([group, versions]) => pairLabel(group, versions)),
    ['v1+v3'],
  );
});
