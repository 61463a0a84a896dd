/**
 * A compact hash table of ASCII names to small integers, built for suffix lookups: the hash
 * runs from the end of a name to its start, so one pass over a name yields the hash of every
 * suffix at a label boundary (`a.b.example` -> `example`, `b.example`, `a.b.example`) without
 * slicing strings. Names live back to back in one byte array; the table holds entry ids.
 * Memory: 13 bytes per entry, 16-32 bytes per entry of table, plus the names' bytes.
 */

/** Most labels in a name: a 253-octet name has at most 127. */
const MAX_LABELS = 128;

/** Longest name stored or looked up, in octets (RFC 1035, without the trailing dot). */
export const MAX_TABLE_NAME = 253;

/**
 * Suffix hashes of the last name given to suffixHashes: entries [0, count) from the last
 * label to the whole name; `starts[i]` is where suffix i begins. Overwritten by the next call.
 */
export const suffixes = {
  count: 0,
  hashes: new Int32Array(MAX_LABELS),
  starts: new Int32Array(MAX_LABELS),
};

function finish(h: number): number {
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  return h ^ (h >>> 16);
}

/**
 * Fills `suffixes` for a name of at most MAX_TABLE_NAME characters. With `plain`, it also
 * checks the name is a lowercase DNS name (labels of 1-63 of a-z 0-9 _ -, no hyphen at either
 * end, as src/protocols/names.ts accepts them) and returns false, leaving `suffixes`
 * unusable, when it is not.
 */
export function suffixHashes(name: string, plain: boolean): boolean {
  const length = name.length;
  if (length === 0 || length > MAX_TABLE_NAME) return false;
  let h = 0x811c9dc5 | 0;
  let n = 0;
  let label = 0;
  for (let i = length - 1; i >= 0; i--) {
    const c = name.charCodeAt(i);
    if (c === 0x2e) {
      if (plain && (label === 0 || name.charCodeAt(i + 1) === 0x2d)) return false;
      if (n < MAX_LABELS - 1) {
        suffixes.hashes[n] = finish(h);
        suffixes.starts[n] = i + 1;
        n++;
      }
      label = 0;
    } else if (plain) {
      const letter = (c >= 0x61 && c <= 0x7a) || (c >= 0x30 && c <= 0x39) || c === 0x5f;
      if (!letter && (c !== 0x2d || label === 0)) return false;
      if (++label > 63) return false;
    }
    h = Math.imul(h ^ c, 0x01000193);
  }
  if (plain && (label === 0 || name.charCodeAt(0) === 0x2d)) return false;
  suffixes.hashes[n] = finish(h);
  suffixes.starts[n] = 0;
  suffixes.count = n + 1;
  return true;
}

/** The hash of a whole name (the last suffix of suffixHashes). */
export function hashName(name: string): number {
  let h = 0x811c9dc5 | 0;
  for (let i = name.length - 1; i >= 0; i--) h = Math.imul(h ^ name.charCodeAt(i), 0x01000193);
  return finish(h);
}

/** See the module comment. Values are non-negative integers below 2^31. */
export class NameTable {
  #count = 0;
  #slots = new Int32Array(64); // pairs [entry id + 1 (0 = free), hash]
  #hashes = new Int32Array(16);
  #offsets = new Uint32Array(16);
  #lengths = new Uint8Array(16);
  #values = new Int32Array(16);
  #bytes = new Uint8Array(256);
  #used = 0;

  /** Number of names held. */
  get size(): number {
    return this.#count;
  }

  /** The value of `name.slice(start)` (whose hash is `hash`), or -1. */
  get(name: string, start: number, hash: number): number {
    const id = this.#find(name, start, hash);
    return id < 0 ? -1 : this.#values[id]!;
  }

  /** Sets the value of a name (hash from hashName). */
  set(name: string, hash: number, value: number): void {
    const found = this.#find(name, 0, hash);
    if (found >= 0) this.#values[found] = value;
    else this.insert(name, hash, value);
  }

  /** The id of a name held (for valueOf/setValue), or -1. */
  idOf(name: string, hash: number): number {
    return this.#find(name, 0, hash);
  }

  /** The value of an entry by id. */
  valueOf(id: number): number {
    return this.#values[id]!;
  }

  /** Changes the value of an entry by id. */
  setValue(id: number, value: number): void {
    this.#values[id] = value;
  }

  /** Adds a name the caller knows is not held yet (see idOf); saves a search. */
  insert(name: string, hash: number, value: number): void {
    if (name.length > MAX_TABLE_NAME) throw new RangeError('name too long');
    if (this.#count === this.#hashes.length) this.#growEntries();
    if ((this.#count + 1) * 4 > this.#slots.length) this.#growSlots();
    if (this.#used + name.length > this.#bytes.length) {
      const bytes = new Uint8Array(Math.max(this.#bytes.length * 2, this.#used + name.length));
      bytes.set(this.#bytes.subarray(0, this.#used));
      this.#bytes = bytes;
    }
    const id = this.#count++;
    const bytes = this.#bytes;
    const offset = this.#used;
    for (let i = 0; i < name.length; i++) bytes[offset + i] = name.charCodeAt(i);
    this.#used += name.length;
    this.#hashes[id] = hash;
    this.#offsets[id] = offset;
    this.#lengths[id] = name.length;
    this.#values[id] = value;
    this.#place(id);
  }

  /** Gives back the spare room left by growth (call once the table is complete). */
  trim(): void {
    const n = this.#count;
    this.#hashes = this.#hashes.slice(0, n);
    this.#offsets = this.#offsets.slice(0, n);
    this.#lengths = this.#lengths.slice(0, n);
    this.#values = this.#values.slice(0, n);
    this.#bytes = this.#bytes.slice(0, this.#used);
  }

  #find(name: string, start: number, hash: number): number {
    const slots = this.#slots;
    const mask = (slots.length >>> 1) - 1;
    const length = name.length - start;
    for (let i = hash & mask; ; i = (i + 1) & mask) {
      const slot = slots[i * 2]!;
      if (slot === 0) return -1;
      if (slots[i * 2 + 1] !== hash) continue;
      const id = slot - 1;
      if (this.#lengths[id] === length && this.#equal(id, name, start)) return id;
    }
  }

  #equal(id: number, name: string, start: number): boolean {
    const bytes = this.#bytes;
    const offset = this.#offsets[id]!;
    const length = this.#lengths[id]!;
    for (let i = 0; i < length; i++) if (bytes[offset + i] !== name.charCodeAt(start + i)) return false;
    return true;
  }

  #place(id: number): void {
    const slots = this.#slots;
    const mask = (slots.length >>> 1) - 1;
    const hash = this.#hashes[id]!;
    let i = hash & mask;
    while (slots[i * 2] !== 0) i = (i + 1) & mask;
    slots[i * 2] = id + 1;
    slots[i * 2 + 1] = hash;
  }

  #growEntries(): void {
    const size = Math.max(16, this.#hashes.length * 2);
    const grow = <T extends Int32Array | Uint32Array | Uint8Array>(old: T, make: (n: number) => T): T => {
      const next = make(size);
      next.set(old);
      return next;
    };
    this.#hashes = grow(this.#hashes, (n) => new Int32Array(n));
    this.#offsets = grow(this.#offsets, (n) => new Uint32Array(n));
    this.#lengths = grow(this.#lengths, (n) => new Uint8Array(n));
    this.#values = grow(this.#values, (n) => new Int32Array(n));
  }

  #growSlots(): void {
    this.#slots = new Int32Array(this.#slots.length * 2);
    for (let id = 0; id < this.#count; id++) this.#place(id);
  }
}
