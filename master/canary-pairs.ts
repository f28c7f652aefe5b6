// Canary pairs routed in two levels (SPEC §3, §11; weighted-choice.ts): while a
// canary runs, and after it until a weight changes another way or a reload,
// its pair is chosen as one candidate named after the baseline, then one of
// the two, so a user the pair had keeps to it at every step. A canary of a
// promoted canary joins that pair's group: its users came by that name.
// version-registry.ts owns one and rebuilds its routing table after each change.

export class CanaryPairs {
  /** version → its group's name at the top level (the first baseline's). */
  readonly #groups = new Map<string, string>();

  /** The group `version` is routed under, if any. */
  groupOf(version: string): string | undefined {
    return this.#groups.get(version);
  }

  /** `canary` joins `baseline`'s group (or makes one named after it), leaving any other pair it was in. */
  pair(canary: string, baseline: string): void {
    const group = this.#groups.get(baseline) ?? baseline;
    if (this.#groups.get(canary) !== group) this.#unpair(canary);
    this.#groups.set(baseline, group);
    this.#groups.set(canary, group);
  }

  /**
   * `name`'s weight changes another way than by its canary: its pair, and a pair named like it that outlived its
   * namesake (the two would hash alike), are versions like any other again.
   */
  ungroup(name: string): void {
    this.#unpair(name);
    this.dissolve(name);
  }

  /** The group named `group` is versions like any other again. */
  dissolve(group: string): void {
    for (const [version, g] of this.#groups) if (g === group) this.#groups.delete(version);
  }

  /** `name` leaves routing (removed); the others keep the pair's name, by which their users came. */
  leave(name: string): void {
    this.#groups.delete(name);
  }

  /** Dissolves every pair (a reload: routing is the file's alone); returns each as its group and versions. */
  clear(): Array<[group: string, versions: string[]]> {
    const pairs = new Map<string, string[]>();
    for (const [version, group] of this.#groups) pairs.set(group, [...(pairs.get(group) ?? []), version]);
    this.#groups.clear();
    return [...pairs];
  }

  /** The canary pair (group) `name` is in, if any, is versions like any other again. */
  #unpair(name: string): void {
    const group = this.#groups.get(name);
    if (group !== undefined) this.dissolve(group);
  }
}

/**
 * A dissolved pair as a reload's answer names it: its versions, and the name its users were routed by when that
 * version has left it (a promoted canary whose old baseline was removed: `v2 (routed as v1)`, not a pair of one).
 */
export function pairLabel(group: string, versions: readonly string[]): string {
  const members = versions.join('+');
  return versions.includes(group) ? members : `${members} (routed as ${group})`;
}
