// Values by id for entries that come and go at request rate (the IPC calls in
// one worker process, worker-direct.ts). An id names a slot and its use: the
// storage is one array of slots, grown to the most entries held at once and
// reused, never replaced. A Map there, an entry set and deleted per call, made
// each call's objects (its context, request and response, ~16 KB) outlive
// young-generation GCs until a full one: V8 replaces a Map's hash table every
// few dozen changes and links the replaced table to the next, so a table that
// had reached the old generation held the later ones and what they held.
// Scavenges took 4–7 ms instead of ~1 and the master ran a full GC about every
// second under small requests (docs/BENCHMARKS.md, "Objects that outlived
// their request").

/** Slots an id can name: more entries than one process has descriptors for (a call holds a client connection). */
const SLOTS = 2 ** 20;
/**
 * Ids stay below this (a multiple of SLOTS), so a slot's uses cycle through 1,024 ids: V8 keeps them small integers,
 * and the busiest slot (the last freed is reused first, so one worker's calls one at a time all take slot 0) never
 * runs out of them. An id comes back after 1,024 later uses of its slot: a report of a call that ended so long before
 * cannot arrive (the channel is in order, and a call's last report ends it).
 */
const ID_LIMIT = 2 ** 30;

interface Slot<V> {
  /** The id of the slot's current (or last) use: its index plus SLOTS × the use's number, modulo ID_LIMIT. */
  id: number;
  value: V | undefined;
  isUsed: boolean;
}

export class SlotTable<V extends object> {
  readonly #slots: Slot<V>[] = [];
  /** Indexes of unused slots; the last freed is reused first. */
  readonly #free: number[] = [];

  /** Entries held. */
  get size(): number {
    return this.#slots.length - this.#free.length;
  }

  /** A new id, held with no value yet (`set` gives it one); not one of the last 1,023 ids its slot had. */
  open(): number {
    const index = this.#free.pop();
    let slot: Slot<V>;
    if (index === undefined) {
      if (this.#slots.length === SLOTS) throw new RangeError(`more than ${SLOTS} entries`);
      slot = { id: this.#slots.length, value: undefined, isUsed: true };
      this.#slots.push(slot);
    } else {
      slot = this.#slots[index]!;
      slot.id = (slot.id + SLOTS) % ID_LIMIT;
      slot.isUsed = true;
    }
    return slot.id;
  }

  /** Gives entry `id` its value; nothing when it is gone. */
  set(id: number, value: V): void {
    const slot = this.#slot(id);
    if (slot !== undefined) slot.value = value;
  }

  get(id: number): V | undefined {
    return this.#slot(id)?.value;
  }

  /** Ends entry `id`: its slot lets go of the value at once. */
  delete(id: number): void {
    const slot = this.#slot(id);
    if (slot === undefined) return;
    slot.value = undefined;
    slot.isUsed = false;
    this.#free.push(id % SLOTS);
  }

  /** Ends every entry; their values, in slot order (not the order they came in). */
  clear(): V[] {
    const values: V[] = [];
    for (const slot of this.#slots) {
      if (!slot.isUsed) continue;
      if (slot.value !== undefined) values.push(slot.value);
      this.delete(slot.id);
    }
    return values;
  }

  #slot(id: number): Slot<V> | undefined {
    if (!Number.isInteger(id) || id < 0 || id >= ID_LIMIT) return undefined;
    const slot = this.#slots[id % SLOTS];
    return slot !== undefined && slot.isUsed && slot.id === id ? slot : undefined;
  }
}
