/**
 * IPv4 and IPv6 addresses and CIDR blocks for the `clients` matcher: parse, print, contains.
 * Addresses are held as unsigned 32-bit words (one for IPv4, four for IPv6, most significant
 * first). No dependency beyond the language.
 */

/** A parsed address. `words` has 1 entry (IPv4) or 4 entries (IPv6). */
export interface IpAddress {
  family: 4 | 6;
  words: number[];
}

/** One CIDR block; host bits are always zero. `text` is its canonical spelling. */
export interface Cidr {
  family: 4 | 6;
  words: number[];
  prefix: number;
  text: string;
}

/** Result of parsing a CIDR or a bare address (a /32 or /128 block). */
export type CidrParse = { ok: true; cidr: Cidr } | { ok: false; reason: string };

const V4_PART = /^(?:0|[1-9]\d{0,2})$/;
const V6_GROUP = /^[0-9a-fA-F]{1,4}$/;

/** Parses a dotted-quad IPv4 address; leading zeros are refused (they read as octal elsewhere). */
export function parseIPv4(text: string): IpAddress | null {
  const parts = text.split('.');
  if (parts.length !== 4) return null;
  let value = 0;
  for (const part of parts) {
    if (!V4_PART.test(part)) return null;
    const n = Number(part);
    if (n > 255) return null;
    value = value * 256 + n;
  }
  return { family: 4, words: [value >>> 0] };
}

/** Parses an IPv6 address (with `::` and an optional dotted IPv4 tail); zone ids are refused. */
export function parseIPv6(text: string): IpAddress | null {
  if (text.length < 2 || text.length > 45) return null;
  const halves = text.split('::');
  if (halves.length > 2) return null;
  const groups: number[] = [];
  const sides: number[][] = [];
  for (let h = 0; h < halves.length; h++) {
    const half = halves[h]!;
    const side: number[] = [];
    const pieces = half.length === 0 ? [] : half.split(':');
    for (let i = 0; i < pieces.length; i++) {
      const piece = pieces[i]!;
      if (i === pieces.length - 1 && piece.includes('.')) {
        if (h !== halves.length - 1) return null;
        const v4 = parseIPv4(piece);
        if (v4 === null) return null;
        side.push(v4.words[0]! >>> 16, v4.words[0]! & 0xffff);
      } else if (V6_GROUP.test(piece)) {
        side.push(parseInt(piece, 16));
      } else {
        return null;
      }
    }
    sides.push(side);
  }
  if (sides.length === 1) {
    if (sides[0]!.length !== 8) return null;
    groups.push(...sides[0]!);
  } else {
    const missing = 8 - sides[0]!.length - sides[1]!.length;
    if (missing < 1) return null;
    groups.push(...sides[0]!, ...new Array<number>(missing).fill(0), ...sides[1]!);
  }
  const words: number[] = [];
  for (let i = 0; i < 8; i += 2) words.push(((groups[i]! << 16) | groups[i + 1]!) >>> 0);
  return { family: 6, words };
}

/** Parses an IPv4 or IPv6 address (IPv6 may be in brackets). */
export function parseIp(text: string): IpAddress | null {
  if (text.startsWith('[') && text.endsWith(']')) return parseIPv6(text.slice(1, -1));
  return text.includes(':') ? parseIPv6(text) : parseIPv4(text);
}

/** The IPv4 address inside an IPv4-mapped IPv6 address (::ffff:a.b.c.d), or null. */
export function unmapIPv4(addr: IpAddress): IpAddress | null {
  if (addr.family !== 6) return null;
  const [a, b, c, d] = addr.words;
  return a === 0 && b === 0 && c === 0xffff ? { family: 4, words: [d!] } : null;
}

function maskWord(prefix: number, index: number): number {
  const bits = prefix - index * 32;
  if (bits >= 32) return 0xffffffff;
  if (bits <= 0) return 0;
  return (0xffffffff << (32 - bits)) >>> 0;
}

/** Prints an address canonically (RFC 5952 for IPv6: lowercase, longest zero run as `::`). */
export function formatIp(addr: IpAddress): string {
  if (addr.family === 4) {
    const w = addr.words[0]!;
    return [w >>> 24, (w >>> 16) & 255, (w >>> 8) & 255, w & 255].join('.');
  }
  const groups: number[] = [];
  for (const w of addr.words) groups.push(w >>> 16, w & 0xffff);
  let bestStart = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLen) {
      bestStart = i;
      bestLen = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart < 0) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLen).join(':')}`;
}

/**
 * Parses `ADDRESS` or `ADDRESS/PREFIX`. A block with host bits set is refused, with the block
 * it probably meant in the reason (`10.0.0.1/8` -> `10.0.0.0/8`).
 */
export function parseCidr(text: string): CidrParse {
  const slash = text.indexOf('/');
  const addrText = slash < 0 ? text : text.slice(0, slash);
  const addr = parseIp(addrText);
  if (addr === null) return { ok: false, reason: `"${addrText}" is not an IPv4 or IPv6 address` };
  const max = addr.family === 4 ? 32 : 128;
  let prefix = max;
  if (slash >= 0) {
    const prefixText = text.slice(slash + 1);
    if (!/^\d{1,3}$/.test(prefixText) || Number(prefixText) > max) {
      return { ok: false, reason: `prefix length must be 0-${max}` };
    }
    prefix = Number(prefixText);
  }
  const words = addr.words.map((w, i) => (w & maskWord(prefix, i)) >>> 0);
  const network = { family: addr.family, words };
  const canonical = `${formatIp(network)}/${prefix}`;
  if (words.some((w, i) => w !== addr.words[i])) {
    return { ok: false, reason: `host bits are set; did you mean ${canonical}?` };
  }
  return { ok: true, cidr: { family: addr.family, words, prefix, text: canonical } };
}

/** Whether `addr` lies inside `cidr` (same family only). */
export function cidrContains(cidr: Cidr, addr: IpAddress): boolean {
  if (cidr.family !== addr.family) return false;
  for (let i = 0; i < cidr.words.length; i++) {
    const mask = maskWord(cidr.prefix, i);
    if (mask === 0) return true;
    if (((addr.words[i]! & mask) >>> 0) !== cidr.words[i]) return false;
  }
  return true;
}

/**
 * A set of CIDR blocks, scanned in order (client lists are short). IPv4-mapped IPv6 addresses
 * also match the IPv4 blocks.
 */
export class CidrSet {
  readonly #blocks: readonly Cidr[];

  constructor(blocks: readonly Cidr[]) {
    this.#blocks = blocks;
  }

  /** The first block containing the address, or null (also for an unparsable address). */
  match(address: string): Cidr | null {
    const addr = parseIp(address);
    if (addr === null) return null;
    const mapped = unmapIPv4(addr);
    for (const block of this.#blocks) {
      if (cidrContains(block, addr) || (mapped !== null && cidrContains(block, mapped))) return block;
    }
    return null;
  }

  /** Whether any block contains the address. */
  contains(address: string): boolean {
    return this.match(address) !== null;
  }
}
