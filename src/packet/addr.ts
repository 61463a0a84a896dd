/**
 * IP address text <-> bytes. Formatting is on the decoder's hot path: no regexes, no arrays,
 * table lookups for digits, and a small cache of recent addresses. The text is what Node's `net` module prints (libuv `uv_inet_ntop`):
 * lowercase, the first longest run of two or more zero groups compressed to `::`, and the
 * last 32 bits in dotted form for `::ffff:a.b.c.d` (IPv4-mapped) and `::a.b.c.d` (IPv4-compatible).
 */

/** Lowercase hex of 0..255 without leading zeros ("0", "a", "ff"). */
const HEX: string[] = [];
/** Lowercase hex of 0..255, two digits ("00", "0a", "ff"). */
const HEX2: string[] = [];
for (let i = 0; i < 256; i++) {
  HEX.push(i.toString(16));
  HEX2.push(i < 16 ? '0' + i.toString(16) : i.toString(16));
}

/** Decimal text of 0..255. */
const DEC: string[] = [];
for (let i = 0; i < 256; i++) DEC.push(String(i));

/**
 * Entries kept by each of the two address-text caches before they are emptied (entries).
 * Flows reuse a few addresses, so a cache hit is the common case; it also hands out the same
 * (flat, hash-cached) string every time, which is cheaper to use as a map key.
 */
export const ADDRESS_CACHE_ENTRIES = 4096;

const v4Cache = new Map<number, string>();

interface V6Entry {
  w0: number;
  w1: number;
  w2: number;
  w3: number;
  text: string;
}
const v6Cache = new Map<number, V6Entry>();

function be32(b: Uint8Array, o: number): number {
  return (b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3];
}

/** Dotted-quad text of the 4 bytes at `off` ("192.0.2.1"). The caller checks the bounds. */
export function formatIpv4(b: Uint8Array, off: number): string {
  const key = be32(b, off);
  let text = v4Cache.get(key);
  if (text === undefined) {
    if (v4Cache.size >= ADDRESS_CACHE_ENTRIES) v4Cache.clear();
    text = dotted(b, off);
    v4Cache.set(key, text);
  }
  return text;
}

/** Text of the 16-byte IPv6 address at `off`, exactly as Node prints it. The caller checks the bounds. */
export function formatIpv6(b: Uint8Array, off: number): string {
  const w0 = be32(b, off);
  const w1 = be32(b, off + 4);
  const w2 = be32(b, off + 8);
  const w3 = be32(b, off + 12);
  const key = (Math.imul(w0 ^ w1, 0x9e3779b1) ^ Math.imul(w2 ^ (w3 >>> 7), 0x85ebca6b) ^ w3) | 0;
  const hit = v6Cache.get(key);
  if (hit !== undefined && hit.w0 === w0 && hit.w1 === w1 && hit.w2 === w2 && hit.w3 === w3) return hit.text;
  if (v6Cache.size >= ADDRESS_CACHE_ENTRIES) v6Cache.clear();
  const text = ipv6Text(b, off);
  v6Cache.set(key, { w0, w1, w2, w3, text });
  return text;
}

/** Dotted-quad text, uncached. */
function dotted(b: Uint8Array, off: number): string {
  return DEC[b[off]] + '.' + DEC[b[off + 1]] + '.' + DEC[b[off + 2]] + '.' + DEC[b[off + 3]];
}

/** One 16-bit group of an IPv6 address as text, without leading zeros. */
function group(b: Uint8Array, off: number): string {
  const hi = b[off];
  return hi === 0 ? HEX[b[off + 1]] : HEX[hi] + HEX2[b[off + 1]];
}

/** Formats an IPv6 address (see the module comment for the rules). */
function ipv6Text(b: Uint8Array, off: number): string {
  // Longest run of zero groups (first one wins a tie), without building an array.
  let bestStart = -1;
  let bestLen = 0;
  let runStart = -1;
  for (let g = 0; g < 8; g++) {
    const p = off + 2 * g;
    if (b[p] === 0 && b[p + 1] === 0) {
      if (runStart < 0) runStart = g;
      const len = g - runStart + 1;
      if (len > bestLen) {
        bestLen = len;
        bestStart = runStart;
      }
    } else {
      runStart = -1;
    }
  }
  if (bestLen < 2) bestStart = -1;
  // libuv prints an embedded IPv4 address for ::a.b.c.d and ::ffff:a.b.c.d.
  if (bestStart === 0) {
    if (bestLen === 6) return '::' + dotted(b, off + 12);
    if (bestLen === 5 && b[off + 10] === 0xff && b[off + 11] === 0xff) {
      return '::ffff:' + dotted(b, off + 12);
    }
  }
  let s = '';
  for (let g = 0; g < 8; g++) {
    if (g === bestStart) {
      s += '::';
      g += bestLen - 1;
      continue;
    }
    if (s.length > 0 && g !== bestStart + bestLen) s += ':';
    s += group(b, off + 2 * g);
  }
  return s;
}

/** Parses dotted-quad IPv4 text into 4 bytes, or null when it is not exactly that. */
export function parseIpv4(text: string): Uint8Array | null {
  const out = new Uint8Array(4);
  let part = 0;
  let value = 0;
  let digits = 0;
  for (let i = 0; i <= text.length; i++) {
    const c = i < text.length ? text.charCodeAt(i) : 0x2e;
    if (c === 0x2e) {
      if (digits === 0 || part > 3) return null;
      out[part++] = value;
      value = 0;
      digits = 0;
    } else if (c >= 0x30 && c <= 0x39) {
      if (digits > 0 && value === 0) return null; // no leading zeros (ambiguous octal)
      value = value * 10 + (c - 0x30);
      if (++digits > 3 || value > 255) return null;
    } else {
      return null;
    }
  }
  return part === 4 ? out : null;
}

/** Parses IPv6 text (with `::` and an optional dotted IPv4 tail) into 16 bytes, or null. */
export function parseIpv6(text: string): Uint8Array | null {
  const out = new Uint8Array(16);
  const dbl = text.indexOf('::');
  if (dbl >= 0 && text.indexOf('::', dbl + 1) >= 0) return null;
  const head = dbl >= 0 ? text.slice(0, dbl) : text;
  const tail = dbl >= 0 ? text.slice(dbl + 2) : '';
  const headGroups = parseGroups(head, dbl < 0);
  const tailGroups = dbl >= 0 ? parseGroups(tail, true) : [];
  if (headGroups === null || tailGroups === null) return null;
  const total = headGroups.length + tailGroups.length;
  if (dbl < 0 ? total !== 8 : total > 7) return null;
  headGroups.forEach((g, i) => {
    out[2 * i] = g >> 8;
    out[2 * i + 1] = g & 0xff;
  });
  const start = 8 - tailGroups.length;
  tailGroups.forEach((g, i) => {
    out[2 * (start + i)] = g >> 8;
    out[2 * (start + i) + 1] = g & 0xff;
  });
  return out;
}

/** Colon-separated hex groups; a dotted IPv4 tail (when allowed) counts as two groups. */
function parseGroups(text: string, allowV4Tail: boolean): number[] | null {
  if (text === '') return [];
  const parts = text.split(':');
  const groups: number[] = [];
  for (let i = 0; i < parts.length; i++) {
    const p = parts[i];
    if (allowV4Tail && i === parts.length - 1 && p.includes('.')) {
      const v4 = parseIpv4(p);
      if (v4 === null) return null;
      groups.push((v4[0] << 8) | v4[1], (v4[2] << 8) | v4[3]);
      continue;
    }
    if (p.length === 0 || p.length > 4) return null;
    let v = 0;
    for (let j = 0; j < p.length; j++) {
      const d = hexDigit(p.charCodeAt(j));
      if (d < 0) return null;
      v = v * 16 + d;
    }
    groups.push(v);
  }
  return groups;
}

function hexDigit(c: number): number {
  if (c >= 0x30 && c <= 0x39) return c - 0x30;
  if (c >= 0x61 && c <= 0x66) return c - 0x61 + 10;
  if (c >= 0x41 && c <= 0x46) return c - 0x41 + 10;
  return -1;
}

/** Parses IPv4 or IPv6 text into 4 or 16 bytes, or null when it is neither. */
export function parseIp(text: string): Uint8Array | null {
  return text.includes(':') ? parseIpv6(text) : parseIpv4(text);
}
