/** Direction-independent flow keys: both directions of a connection map to one key. */
import { u32 } from '../packet/decode.js';
import type { TcpPacket } from '../packet/types.js';

/**
 * The key of the connection a packet belongs to, whichever way it travels: the two endpoints'
 * address and port bytes as 16-bit character codes, lower endpoint first (6 characters for
 * IPv4, 18 for IPv6). Built straight from the header bytes, with no address text, because it
 * is computed for every packet; it is an opaque map key, never shown.
 */
export function flowKey(tcp: TcpPacket): string {
  const b = tcp.ip;
  const { sport, dport } = tcp;
  if (tcp.family === 4) {
    const s = u32(b, 12);
    const d = u32(b, 16);
    if (s < d || (s === d && sport <= dport)) {
      return String.fromCharCode(s >>> 16, s & 0xffff, sport, d >>> 16, d & 0xffff, dport);
    }
    return String.fromCharCode(d >>> 16, d & 0xffff, dport, s >>> 16, s & 0xffff, sport);
  }
  // IPv6: source at 8, destination at 24; compare as big-endian 128-bit numbers, then ports.
  let cmp = 0;
  for (let i = 0; i < 16 && cmp === 0; i++) cmp = b[8 + i] - b[24 + i];
  if (cmp === 0) cmp = sport - dport;
  return cmp <= 0 ? v6Key(b, 8, sport, 24, dport) : v6Key(b, 24, dport, 8, sport);
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
