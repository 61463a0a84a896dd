/**
 * Internet checksums (RFC 1071) for IPv4 headers and TCP over IPv4/IPv6 (RFC 9293 3.1,
 * RFC 8200 8.1). Sums 16-bit big-endian words in a plain loop: no allocation, no DataView.
 */
import type { TcpPacket } from './types.js';

/**
 * Adds the bytes `buf[start..end)` as big-endian 16-bit words to `sum` (an odd last byte is
 * padded with zero) and returns the unfolded sum. Chain calls over several ranges, as long as
 * every range but the last has an even length; fold with `foldChecksum`.
 */
export function onesComplementSum(buf: Uint8Array, start: number, end: number, sum = 0): number {
  let i = start;
  // Unfolded sums stay exact far beyond any packet size (2^53 / 2^16 words).
  const even = end - ((end - start) & 1);
  for (; i + 8 <= even; i += 8) {
    sum +=
      ((buf[i] << 8) | buf[i + 1]) +
      ((buf[i + 2] << 8) | buf[i + 3]) +
      ((buf[i + 4] << 8) | buf[i + 5]) +
      ((buf[i + 6] << 8) | buf[i + 7]);
  }
  for (; i < even; i += 2) sum += (buf[i] << 8) | buf[i + 1];
  if (even < end) sum += buf[even] << 8;
  return sum;
}

/** Folds an unfolded sum to 16 bits and complements it: the value a checksum field holds. */
export function foldChecksum(sum: number): number {
  while (sum > 0xffff) sum = (sum % 0x10000) + Math.floor(sum / 0x10000);
  return ~sum & 0xffff;
}

/** The Internet checksum of `buf[start..end)`, as it would be written into a checksum field. */
export function internetChecksum(buf: Uint8Array, start = 0, end = buf.length): number {
  return foldChecksum(onesComplementSum(buf, start, end));
}

/** True when the IPv4 header at the start of `ip` (its IHL bytes) has a correct checksum. */
export function ipv4HeaderChecksumOk(ip: Uint8Array): boolean {
  const ihl = (ip[0] & 0x0f) * 4;
  if (ihl < 20 || ihl > ip.length) return false;
  return foldChecksum(onesComplementSum(ip, 0, ihl)) === 0;
}

/**
 * Sum of the TCP pseudo-header and segment for the IP packet `ip` whose TCP header starts at
 * `tcpOffset` and whose segment runs to the end of `ip`; the checksum field is included as is.
 * Uses the addresses in the fixed IPv4/IPv6 header (an IPv6 routing header's final
 * destination is not looked up).
 */
export function tcpChecksumSum(ip: Uint8Array, family: 4 | 6, tcpOffset: number): number {
  const tcpLen = ip.length - tcpOffset;
  // Pseudo-header: source and destination address, zero, protocol 6, TCP length.
  let sum = family === 4 ? onesComplementSum(ip, 12, 20) : onesComplementSum(ip, 8, 40);
  sum += 6 + (tcpLen >>> 16) + (tcpLen & 0xffff);
  return onesComplementSum(ip, tcpOffset, ip.length, sum);
}

/**
 * The checksum to write into the TCP header of `ip`; the field (bytes 16..17 of the TCP header)
 * must be zero when this is called.
 */
export function computeTcpChecksum(ip: Uint8Array, family: 4 | 6, tcpOffset: number): number {
  return foldChecksum(tcpChecksumSum(ip, family, tcpOffset));
}

/** True when the decoded segment's TCP checksum is correct (pseudo-header, header and payload). */
export function tcpChecksumOk(pkt: TcpPacket): boolean {
  return foldChecksum(tcpChecksumSum(pkt.ip, pkt.family, pkt.tcpOffset)) === 0;
}
