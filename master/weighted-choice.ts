import { createHash } from 'node:crypto';

// Weighted rendezvous hashing (SPEC §3): every candidate scores the key as
// -weight / ln(u), u a stable hash of (key, candidate) in (0, 1); the highest
// score wins. P(candidate) = weight / Σweights. Raising one weight only raises
// that candidate's score, so keys move only onto it; the hash is stable across
// processes and restarts, so every gateway instance agrees.

export interface WeightedCandidate {
  name: string;
  weight: number;
}

/** A uniform float in (0, 1) from the first 52 bits of sha256(key, name). */
function hashUnit(key: string, name: string): number {
  const digest = createHash('sha256').update(name).update('\0').update(key).digest();
  // 52 bits fit a double exactly; +0.5 keeps u strictly inside (0, 1).
  const high = digest.readUInt32BE(0) & 0xfffff; // 20 bits
  const low = digest.readUInt32BE(4); // 32 bits
  return (high * 2 ** 32 + low + 0.5) / 2 ** 52;
}

/** The candidate the key lands on, or undefined when no candidate has a weight > 0. */
export function chooseWeighted(key: string, candidates: readonly WeightedCandidate[]): string | undefined {
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
    const score = -weight / Math.log(hashUnit(key, name));
    if (score > bestScore) {
      bestScore = score;
      best = name;
    }
  }
  return best;
}
