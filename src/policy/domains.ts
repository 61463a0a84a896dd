/**
 * Compiled domain sets for the `domains` and `lists` matchers. An entry matches its name and
 * every name below it on label boundaries (`ads.example` matches `x.ads.example`, never
 * `badads.example`); an `=name` entry, and any IP literal, matches only itself. Names compare
 * lowercase without a trailing dot; IDN entries are stored as A-labels (EVASION.md 23, 24).
 *
 * Layout: a NameTable from the entry's name to a small number (source index * 2 + suffix
 * flag); a lookup hashes the asked name once and probes once per label.
 */
import { domainToASCII } from 'node:url';
import { normalizeAuthority, normalizeName, type NormalizedHost } from '../protocols/names.js';
import { formatIp, parseIPv6 } from './cidr.js';
import { hashName, NameTable, suffixes, suffixHashes } from './name-table.js';

/** A parsed domain entry, or why it is not one. */
export type DomainEntry = { ok: true; name: string; exact: boolean } | { ok: false; reason: string };

/** Which entry matched a name, and where it came from (a list file path, or `domains`). */
export interface DomainMatch {
  /** The entry as stored: the A-label name, with `=` in front for exact-only entries. */
  entry: string;
  source: string;
}

// eslint-disable-next-line no-control-regex
const NON_ASCII = /[^\x00-\x7f]/;

/**
 * Parses one domain entry as written in a config or list file: `name`, `=name`, a U-label IDN
 * (converted to A-labels), an IPv4 or IPv6 literal (exact only, brackets allowed).
 */
export function parseDomainEntry(raw: string): DomainEntry {
  let text = raw;
  let exact = false;
  if (text.startsWith('=')) {
    exact = true;
    text = text.slice(1);
  }
  const lastCode = text.charCodeAt(text.length - 1);
  if ((lastCode < 0x30 || lastCode > 0x39) && suffixHashes(text, true)) {
    return { ok: true, name: text, exact };
  }
  if (text.startsWith('*.')) {
    return { ok: false, reason: `write "${text.slice(2)}": an entry already matches every name below it` };
  }
  if (/^[^:[\]]+:\d+$/.test(text)) return { ok: false, reason: 'a domain entry takes no port (use the rule\'s ports)' };
  if (text.startsWith('[') && text.endsWith(']')) text = text.slice(1, -1);
  if (NON_ASCII.test(text)) {
    const ascii = domainToASCII(text);
    if (ascii === '') return { ok: false, reason: 'not a valid internationalised domain name' };
    text = ascii;
  }
  const result = normalizeName(text);
  if (!result.ok) return result;
  return { ok: true, name: canonical(result), exact: exact || result.kind !== 'dns' };
}

/** IPv6 literals have many spellings; store and look them up in RFC 5952 form. */
function canonical(host: NormalizedHost & { ok: true }): string {
  if (host.kind !== 'ipv6') return host.name;
  const addr = parseIPv6(host.name);
  return addr === null ? host.name : formatIp(addr);
}

/**
 * Turns a name seen on the wire (SNI, Host, CONNECT target) into the form entries are stored
 * in, or null when it is malformed: raw UTF-8 never matches, ports and brackets are dropped.
 */
export function lookupName(raw: string): string | null {
  if (suffixHashes(raw, true)) return raw;
  let result = normalizeName(raw);
  if (!result.ok && raw.includes(':')) result = normalizeAuthority(raw);
  return result.ok ? canonical(result) : null;
}

/** Whether a lookup name may only match exactly: an IP literal, or a numeric last label. */
function exactOnly(name: string): boolean {
  if (name.includes(':')) return true;
  const c = name.charCodeAt(name.length - 1);
  return c >= 0x30 && c <= 0x39 && /(?:^|\.)\d+$/.test(name);
}

/**
 * A set of domain entries from one or more sources. Built once with `add`, then only read;
 * immutable in use (a reload builds a new one).
 */
export class DomainSet {
  readonly #entries = new NameTable();
  readonly #sources: string[] = [];
  readonly #sourceIndex = new Map<string, number>();

  /** Number of distinct names held. */
  get size(): number {
    return this.#entries.size;
  }

  /**
   * Adds a normalised name (as parseDomainEntry returns it). A name present both exact and as
   * a suffix keeps the wider, suffix form.
   */
  add(name: string, exact: boolean, source: string): void {
    this.addWithId(name, exact, this.sourceId(source));
  }

  /** A small number standing for `source`, for addWithId (saves a lookup per entry). */
  sourceId(source: string): number {
    let index = this.#sourceIndex.get(source);
    if (index === undefined) {
      index = this.#sources.length;
      this.#sources.push(source);
      this.#sourceIndex.set(source, index);
    }
    return index;
  }

  /** Like add, with a source from sourceId. */
  addWithId(name: string, exact: boolean, index: number): void {
    const entries = this.#entries;
    const hash = hashName(name);
    const value = index * 2 + (exact ? 0 : 1);
    const id = entries.idOf(name, hash);
    if (id < 0) entries.insert(name, hash, value);
    else if (!exact && (entries.valueOf(id) & 1) === 0) entries.setValue(id, value);
  }

  /** Gives back memory left over from building; call once every entry is in. */
  seal(): void {
    this.#entries.trim();
  }

  /** The entry matching a name already passed through lookupName, most specific first. */
  matchLookupName(name: string): DomainMatch | null {
    if (!suffixHashes(name, false)) return null;
    return this.#probe(name, exactOnly(name));
  }

  /** Probes the suffixes in `suffixes` (filled for `name`), whole name first. */
  #probe(name: string, wholeOnly: boolean): DomainMatch | null {
    const entries = this.#entries;
    const last = suffixes.count - 1;
    const whole = entries.get(name, 0, suffixes.hashes[last]!);
    if (whole >= 0) return this.#result(name, whole);
    if (wholeOnly) return null;
    for (let i = last - 1; i >= 0; i--) {
      const start = suffixes.starts[i]!;
      const value = entries.get(name, start, suffixes.hashes[i]!);
      if (value >= 0 && (value & 1) === 1) return this.#result(name.slice(start), value);
    }
    return null;
  }

  /** The entry matching a wire name (any case, trailing dot, port), or null. */
  match(raw: string): DomainMatch | null {
    return matchDomainSets([this], raw);
  }

  /** Like matchLookupName, reusing the suffix hashes already computed for `name`. */
  static matchPrepared(set: DomainSet, name: string, wholeOnly: boolean): DomainMatch | null {
    return set.#probe(name, wholeOnly);
  }

  #result(name: string, value: number): DomainMatch {
    return { entry: (value & 1) === 1 ? name : `=${name}`, source: this.#sources[value >>> 1]! };
  }
}

/** Matches a wire name against several sets in order; the first set with a match answers. */
export function matchDomainSets(sets: readonly DomainSet[], raw: string): DomainMatch | null {
  let name = raw;
  // The common case, a name already normalised, is checked and hashed in one pass.
  if (!suffixHashes(raw, true)) {
    const normalized = lookupName(raw);
    if (normalized === null || !suffixHashes(normalized, false)) return null;
    name = normalized;
  }
  const wholeOnly = exactOnly(name);
  for (const set of sets) {
    const found = DomainSet.matchPrepared(set, name, wholeOnly);
    if (found !== null) return found;
  }
  return null;
}
