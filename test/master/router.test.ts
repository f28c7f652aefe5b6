import t from 'tap';
import {
  chooseVersion,
  needsStickyKey,
  stickyCookieValue,
  type RoutingFacts,
  type RoutingTable,
} from '../../master/router.js';
import { chooseWeighted } from '../../master/weighted-choice.js';

const routing = { default: 'v1', unknownVersion: 'reject' as const, stickyCookie: 'graygate_uid' };
const table = (weights: Record<string, number>, unknownVersion: 'reject' | 'fallback' = 'reject'): RoutingTable => ({
  routing: { ...routing, unknownVersion },
  versions: Object.entries(weights).map(([name, weight]) => ({ name, weight })),
});
const facts = (f: Partial<RoutingFacts>): RoutingFacts => ({
  queryVersion: undefined,
  headerVersion: undefined,
  stickyHeader: undefined,
  stickyCookie: undefined,
  freshId: 'fresh-1',
  ...f,
});

const keys = Array.from({ length: 10_000 }, (_, i) => `user-${i}`);

t.test('every routing branch', async (t) => {
  const tbl = table({ v1: 90, v2: 10, dark: 0 });
  const cases: Array<[string, Partial<RoutingFacts>, RoutingTable, Record<string, unknown>]> = [
    [
      'query wins over header',
      { queryVersion: 'v2', headerVersion: 'v1' },
      tbl,
      { ok: true, version: 'v2', reason: 'query' },
    ],
    ['header', { headerVersion: 'v2' }, tbl, { ok: true, version: 'v2', reason: 'header' }],
    [
      'weight 0 reachable by query (dark launch)',
      { queryVersion: 'dark' },
      tbl,
      { ok: true, version: 'dark', reason: 'query' },
    ],
    ['weight 0 reachable by header', { headerVersion: 'dark' }, tbl, { ok: true, version: 'dark', reason: 'header' }],
    ['unknown version rejected', { queryVersion: 'v9' }, tbl, { ok: false, code: 'unknown_version' }],
    ['unknown header version rejected', { headerVersion: 'v9' }, tbl, { ok: false, code: 'unknown_version' }],
    ['malformed name is 400 in reject mode', { queryVersion: 'V1!' }, tbl, { ok: false, code: 'invalid_request' }],
    [
      'malformed name is 400 in fallback mode',
      { headerVersion: '../etc' },
      table({ v1: 1 }, 'fallback'),
      { ok: false, code: 'invalid_request' },
    ],
    ['empty query value is malformed', { queryVersion: '' }, tbl, { ok: false, code: 'invalid_request' }],
    [
      'unknown version falls back to weighted',
      { queryVersion: 'v9', stickyHeader: 'u1' },
      table({ v1: 1 }, 'fallback'),
      { ok: true, version: 'v1', reason: 'sticky-header' },
    ],
    [
      // SPEC §3: "fallback" → step 3, the weighted choice; the header (step 2) is not consulted after an unknown query.
      'an unknown query version falls back to weighted, not to the header',
      { queryVersion: 'v9', headerVersion: 'v2', stickyHeader: 'u1' },
      table({ v1: 1, v2: 0 }, 'fallback'),
      { ok: true, version: 'v1', reason: 'sticky-header' },
    ],
    [
      'sticky header',
      { stickyHeader: 'alice' },
      table({ v1: 1 }),
      { ok: true, version: 'v1', reason: 'sticky-header' },
    ],
    ['sticky cookie', { stickyCookie: 'abc' }, table({ v1: 1 }), { ok: true, version: 'v1', reason: 'sticky-cookie' }],
    [
      'header beats cookie as key',
      { stickyHeader: 'alice', stickyCookie: 'abc' },
      table({ v1: 1 }),
      { reason: 'sticky-header' },
    ],
    [
      'cookie beats the body user',
      { stickyCookie: 'abc', stickyBody: 'bob' },
      table({ v1: 1 }),
      { reason: 'sticky-cookie' },
    ],
    [
      'the body user keys the choice, no cookie set',
      { stickyBody: 'bob' },
      table({ v1: 1 }),
      { ok: true, version: 'v1', reason: 'sticky-body', setCookie: undefined },
    ],
    [
      'fresh id sets the cookie',
      {},
      table({ v1: 1 }),
      { ok: true, version: 'v1', reason: 'fresh', setCookie: stickyCookieValue('graygate_uid', 'fresh-1') },
    ],
    [
      'only weight-0 versions: the default',
      { stickyHeader: 'x' },
      table({ v1: 0, v2: 0 }),
      { ok: true, version: 'v1', reason: 'default' },
    ],
  ];
  for (const [name, f, tb, want] of cases) t.match(chooseVersion(facts(f), tb), want, name);
  t.notOk(
    (chooseVersion(facts({ stickyHeader: 'x' }), tbl) as { setCookie?: string }).setCookie,
    'no cookie when a sticky key exists',
  );
  const byBody = keys.slice(0, 500).map((k) => chooseVersion(facts({ stickyBody: k }), tbl));
  const byHeader = keys.slice(0, 500).map((k) => chooseVersion(facts({ stickyHeader: k }), tbl));
  t.same(
    byBody.map((d) => (d.ok ? d.version : '')),
    byHeader.map((d) => (d.ok ? d.version : '')),
    'a body user lands where the same x-user-id would',
  );
  const versionOf = (d: ReturnType<typeof chooseVersion>): string => (d.ok ? d.version : '');
  const withCookie = keys
    .slice(0, 500)
    .map((k) => chooseVersion(facts({ stickyHeader: k, stickyCookie: `c-${k}` }), tbl));
  t.same(
    withCookie.map(versionOf),
    byHeader.map(versionOf),
    'with a cookie too, the x-user-id keys the choice (not only the reason)',
  );
  t.equal(stickyCookieValue('graygate_uid', 'id'), 'graygate_uid=id; Path=/; HttpOnly; SameSite=Lax; Max-Age=31536000');
});

t.test('sticky: the same key gets the same version every time', async (t) => {
  const tbl = table({ v1: 90, v2: 10 });
  const first = keys.map((k) => chooseVersion(facts({ stickyHeader: k }), tbl));
  const again = keys.map((k) => chooseVersion(facts({ stickyHeader: k }), table({ v2: 10, v1: 90 })));
  t.same(again, first, 'stable across calls and candidate order');
});

t.test('the same user lands on the same version across releases: the hash is pinned', async (t) => {
  // sha256(name NUL key), as every release since the first computed it: a cheaper hash, or the same one fed otherwise,
  // would move users between versions when a gateway is upgraded (and disagree with instances not yet upgraded).
  const candidates = [
    { name: 'v1', weight: 50 },
    { name: 'v2', weight: 30 },
    { name: 'v3', weight: 20 },
  ];
  t.same(
    Array.from({ length: 16 }, (_, i) => chooseWeighted(`user-${i}`, candidates)),
    ['v3', 'v3', 'v2', 'v1', 'v1', 'v1', 'v1', 'v2', 'v2', 'v2', 'v2', 'v2', 'v1', 'v3', 'v1', 'v3'],
  );
});

t.test('raising v2 from 10 to 20 moves keys only from v1 to v2', async (t) => {
  const before = keys.map((k) =>
    chooseWeighted(k, [
      { name: 'v1', weight: 90 },
      { name: 'v2', weight: 10 },
    ]),
  );
  const after = keys.map((k) =>
    chooseWeighted(k, [
      { name: 'v1', weight: 90 },
      { name: 'v2', weight: 20 },
    ]),
  );
  let moved = 0;
  for (let i = 0; i < keys.length; i++) {
    if (before[i] === after[i]) continue;
    moved++;
    if (before[i] !== 'v1' || after[i] !== 'v2') t.fail(`key ${keys[i]} moved ${before[i]} → ${after[i]}`);
  }
  t.ok(moved > 0, `${moved} keys moved, all v1 → v2`);
});

t.test('a canary’s steps move keys only from its baseline to it; no other version’s key moves', async (t) => {
  // SPEC §11 (a helper's repro: one-level hashing moved 24 % of v4's users onto the canary v2 at its first step, and
  // 33 of v1's onto v4). The pair is one candidate named v1, with the pair's weight, then one of its two.
  const choose = (v1: number, v2: number, paired: boolean): Array<string | undefined> =>
    keys.map((k) =>
      chooseWeighted(k, [
        { name: 'v1', weight: v1, pair: paired ? 'v1' : undefined },
        { name: 'v2', weight: v2, pair: paired ? 'v1' : undefined },
        { name: 'v4', weight: 40 },
      ]),
    );
  const before = choose(60, 0, false);
  const steps = [choose(60, 0, true), choose(54, 6, true), choose(30, 30, true), choose(0, 60, true)];
  t.same(steps[0], before, 'pairing at the canary’s start moves nobody');
  for (let s = 1; s < steps.length; s++) {
    let moved = 0;
    for (let i = 0; i < keys.length; i++) {
      const [from, to] = [steps[s - 1]![i], steps[s]![i]];
      if (from === to) continue;
      moved++;
      if (from !== 'v1' || to !== 'v2') t.fail(`step ${s}: key ${keys[i]} moved ${from} → ${to}`);
    }
    t.ok(moved > 0, `step ${s}: ${moved} keys moved, all v1 → v2`);
  }
  const v4 = (choice: Array<string | undefined>): number => choice.filter((v) => v === 'v4').length;
  t.equal(v4(steps[3]!), v4(before), 'v4 keeps exactly its users, the promotion included');
});

t.test('inside a canary’s pair the split is its weights’, whatever the other versions weigh', async (t) => {
  // The pair's two are hashed apart from the top level: with the same hash, the keys that chose the pair favoured the
  // baseline again (a review: a 50 % step beside an equal third version gave the canary 34 %).
  for (const [other, pairWeight, percent] of [
    [50, 50, 50],
    [50, 50, 5],
    [90, 10, 25],
    [10, 90, 75],
  ] as const) {
    const canary = (pairWeight * percent) / 100;
    const chosen = keys.map((k) =>
      chooseWeighted(k, [
        { name: 'v1', weight: pairWeight - canary, pair: 'v1' },
        { name: 'v2', weight: canary, pair: 'v1' },
        { name: 'v4', weight: other },
      ]),
    );
    const inPair = chosen.filter((v) => v !== 'v4').length;
    const share = (chosen.filter((v) => v === 'v2').length / inPair) * 100;
    // ±3 points: the pair gets 10–90 % of 10,000 keys, so 1,000 at the least.
    t.ok(
      Math.abs(share - percent) <= 3,
      `other ${other}, pair ${pairWeight}, step ${percent} %: canary got ${share.toFixed(1)} %`,
    );
    t.ok(Math.abs((inPair / keys.length) * 100 - pairWeight) <= 2, 'and the pair its own weight');
  }
});

t.test('observed split over 10,000 keys is within ±2 points of the weights', async (t) => {
  for (const weights of [
    { v1: 90, v2: 10 },
    { v1: 50, v2: 50 },
    { v1: 70, v2: 20, v3: 10 },
  ] as Array<Record<string, number>>) {
    const candidates = Object.entries(weights).map(([name, weight]) => ({ name, weight }));
    const counts: Record<string, number> = {};
    for (const k of keys) {
      const v = chooseWeighted(k, candidates)!;
      counts[v] = (counts[v] ?? 0) + 1;
    }
    const total = Object.values(weights).reduce((a, b) => a + b, 0);
    for (const [name, w] of Object.entries(weights)) {
      const observed = ((counts[name] ?? 0) / keys.length) * 100;
      const expected = (w / total) * 100;
      t.ok(
        Math.abs(observed - expected) <= 2,
        `${JSON.stringify(weights)}: ${name} got ${observed.toFixed(2)}%, expected ${expected}%`,
      );
    }
  }
});

t.test('weight 0 receives no weighted traffic', async (t) => {
  const got = new Set(
    keys.map((k) =>
      chooseWeighted(k, [
        { name: 'v1', weight: 1 },
        { name: 'dark', weight: 0 },
      ]),
    ),
  );
  t.same([...got], ['v1']);
});

t.test('needsStickyKey: only a weighted request without header or cookie key', async (t) => {
  t.ok(needsStickyKey(facts({})));
  t.notOk(needsStickyKey(facts({ stickyHeader: 'a' })));
  t.notOk(needsStickyKey(facts({ stickyCookie: 'a' })));
  t.notOk(needsStickyKey(facts({ queryVersion: 'v1' })));
  t.notOk(needsStickyKey(facts({ headerVersion: 'v1' })));
});
