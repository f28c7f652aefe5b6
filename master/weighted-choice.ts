import { hash } from 'node:crypto';

// Weighted rendezvous hashing (SPEC §3): every candidate scores the key as
// -weight / ln(u), u a stable hash of (key, candidate) in (0, 1); the highest
// score wins. P(candidate) = weight / Σweights. Raising one weight only raises
// that candidate's score, so keys move only onto it; the hash is stable across
// processes and restarts, so every gateway instance agrees.
//
// A canary's pair (SPEC §11) is chosen in two levels: the pair first, as one
// candidate named after its baseline with the pair's summed weight, then one
// of its two versions, under hashes of their own. A step moves weight inside
// the pair only, so the top level never changes while the canary runs or once
// it is promoted: its users come from the baseline's users alone, and no user
// of another version moves (one level would move users of every other
// version both ways at each step).

export interface WeightedCandidate {
  name: string;
  weight: number;
  /** In a canary's pair: the pair's name at the top level (its baseline's). */
  pair?: string | undefined;
}

/** Prefix of the names a pair's two versions are hashed under inside the pair (no version name has a NUL). */
const PAIR_SALT = '\0pair\0';

/** A uniform float in (0, 1) from the first 52 bits of sha256(key, name). */
function hashUnit(key: string, name: string): number {
  // One-shot: the same digest as createHash(…).update(name).update('\0').update(key), at 0.6× its cost (it runs once
  // per version per routed request).
  const digest = hash('sha256', `${name}\0${key}`, 'buffer');
  // 52 bits fit a double exactly; +0.5 keeps u strictly inside (0, 1).
  const high = digest.readUInt32BE(0) & 0xfffff; // 20 bits
  const low = digest.readUInt32BE(4); // 32 bits
  return (high * 2 ** 32 + low + 0.5) / 2 ** 52;
}

/** The candidate the key lands on, or undefined when no candidate has a weight > 0. */
export function chooseWeighted(key: string, candidates: readonly WeightedCandidate[]): string | undefined {
  const levels = levelsOf(candidates);
  if (levels === null) return chooseFlat(key, candidates);
  const chosen = chooseFlat(key, levels.top);
  const members = chosen === undefined ? undefined : levels.pairs.get(chosen);
  // Inside the pair, hashes of their own: the keys that chose the pair are those whose baseline hash scored high, so
  // the same hash would favour the baseline again (a review measured a 50 % step giving the canary 34 %).
  return members === undefined ? chosen : chooseFlat(key, members, PAIR_SALT);
}

/** The two levels of a candidate list with pairs: the top one (each pair as one candidate), and each pair's own. */
interface Levels {
  top: readonly WeightedCandidate[];
  pairs: ReadonlyMap<string, readonly WeightedCandidate[]>;
}

/**
 * Built once per candidate list, not per request: the routing table's list is a new array at every weight change
 * (version-registry.ts), so it keys the cache. null: no pair with weight, one level.
 */
const levelsCache = new WeakMap<readonly WeightedCandidate[], Levels | null>();

function levelsOf(candidates: readonly WeightedCandidate[]): Levels | null {
  const cached = levelsCache.get(candidates);
  if (cached !== undefined) return cached;
  const pairs = new Map<string, WeightedCandidate[]>();
  const top: WeightedCandidate[] = [];
  for (const c of candidates) {
    if (c.pair === undefined) {
      top.push(c);
      continue;
    }
    const members = pairs.get(c.pair);
    if (members === undefined) pairs.set(c.pair, [c]);
    else members.push(c);
  }
  for (const [name, members] of pairs) top.push({ name, weight: members.reduce((sum, m) => sum + m.weight, 0) });
  const levels = [...pairs.values()].some((m) => m.some((c) => c.weight > 0)) ? { top, pairs } : null;
  levelsCache.set(candidates, levels);
  return levels;
}

function chooseFlat(key: string, candidates: readonly WeightedCandidate[], salt = ''): string | undefined {
  // One version with weight: the answer needs no hash (issue 10: sha256 per candidate per request).
  let only: string | undefined;
  let weighted = 0;
  for (const { name, weight } of candidates) {
    if (weight > 0) {
      weighted++;
      only = name;
    }
  }
  if (weighted <= 1) return only;
  let best: string | undefined;
  let bestScore = -Infinity;
  for (const { name, weight } of candidates) {
    if (!(weight > 0)) continue;
    const score = -weight / Math.log(hashUnit(key, salt + name));
    if (score > bestScore) {
      bestScore = score;
      best = name;
    }
  }
  return best;
}
