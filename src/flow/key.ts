/** Direction-independent flow keys: both directions of a connection map to one key. */
import { formatIpv4, formatIpv6 } from '../packet/addr.js';
import { u32 } from '../packet/decode.js';
import type { TcpPacket } from '../packet/types.js';

/**
 * True when the packet's source is the lower endpoint of its connection, the one its key names
 * first: lower address, then lower port (both when a host talks to itself on one port).
 */
export function srcIsLow(tcp: TcpPacket): boolean {
  const b = tcp.ip;
  if (tcp.family === 4) {
    const s = u32(b, 12);
    const d = u32(b, 16);
    return s < d || (s === d && tcp.sport <= tcp.dport);
  }
  // IPv6: source at 8, destination at 24; compare as big-endian 128-bit numbers, then ports.
  let cmp = 0;
  for (let i = 0; i < 16 && cmp === 0; i++) cmp = b[8 + i] - b[24 + i];
  return cmp < 0 || (cmp === 0 && tcp.sport <= tcp.dport);
}

/**
 * The key of the connection a packet belongs to, whichever way it travels: the two endpoints'
 * address and port bytes as 16-bit character codes, lower endpoint first (6 characters for
 * IPv4, 18 for IPv6). Built straight from the header bytes, with no address text, because it
 * is computed for every packet; it is a map key, and the flow reads its endpoints back from it
 * (see {@link keyAddr}, {@link keyPort}) rather than keeping copies.
 */
export function flowKey(tcp: TcpPacket, low = srcIsLow(tcp)): string {
  const b = tcp.ip;
  const { sport, dport } = tcp;
  if (tcp.family === 4) {
    const s = u32(b, 12);
    const d = u32(b, 16);
    return low ? String.fromCharCode(s >>> 16, s & 0xffff, sport, d >>> 16, d & 0xffff, dport)
      : String.fromCharCode(d >>> 16, d & 0xffff, dport, s >>> 16, s & 0xffff, sport);
  }
  return low ? v6Key(b, 8, sport, 24, dport) : v6Key(b, 24, dport, 8, sport);
}

/** Characters of one endpoint in a key: an IPv4 key has 6 (3 each), an IPv6 key 18. */
function half(key: string): number {
  return key.length >> 1;
}

/** Address bytes of an endpoint read back from a key, for the decoder's formatters. */
const scratch = new Uint8Array(16);

/**
 * The address text of one endpoint of a key (the lower one when `low`), exactly as the decoder
 * gives a packet's `src` and `dst`: the same bytes go through the same formatter.
 */
export function keyAddr(key: string, low: boolean): string {
  const at = low ? 0 : half(key);
  const words = half(key) - 1;
  for (let i = 0; i < words; i++) {
    const c = key.charCodeAt(at + i);
    scratch[2 * i] = c >>> 8;
    scratch[2 * i + 1] = c & 0xff;
  }
  return words === 2 ? formatIpv4(scratch, 0) : formatIpv6(scratch, 0);
}

/** The port of one endpoint of a key (the lower one when `low`). */
export function keyPort(key: string, low: boolean): number {
  return key.charCodeAt(low ? half(key) - 1 : key.length - 1);
}

function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

function v6Key(b: Uint8Array, a: number, ap: number, c: number, cp: number): string {
  return String.fromCharCode(
    u16(b, a), u16(b, a + 2), u16(b, a + 4), u16(b, a + 6), u16(b, a + 8), u16(b, a + 10), u16(b, a + 12),
    u16(b, a + 14), ap,
    u16(b, c), u16(b, c + 2), u16(b, c + 4), u16(b, c + 6), u16(b, c + 8), u16(b, c + 10), u16(b, c + 12),
    u16(b, c + 14), cp,
  );
}
