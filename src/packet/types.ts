/** TCP header flag bits (RFC 9293 section 3.1). */
export const FIN = 0x01;
export const SYN = 0x02;
export const RST = 0x04;
export const PSH = 0x08;
export const ACK = 0x10;
export const URG = 0x20;
export const ECE = 0x40;
export const CWR = 0x80;

/** TCP options flowgate looks at; absent options are undefined. */
export interface TcpOptions {
  mss?: number;
  wscale?: number;
  sackPermitted?: boolean;
  /** RFC 7323 timestamps, both as unsigned 32-bit numbers. */
  tsVal?: number;
  tsEcr?: number;
  /** RFC 2385 MD5 signature option present (kind 19). Servers without a key drop such segments. */
  md5?: boolean;
  /** TCP Fast Open cookie option present (kind 34). */
  fastOpen?: boolean;
  /** The option list was malformed (length overrun, zero length). */
  malformed?: boolean;
}

/**
 * One decoded IPv4 or IPv6 packet carrying a whole TCP segment. Every Uint8Array here is a
 * view into the buffer passed to the decoder: it is only valid as long as that buffer is, and so
 * are the fields the decoder reads from it when first asked for (`src`, `dst`, `options`,
 * `payload`, `seq`, `ack`, `window`, `ttl`, ...).
 */
export interface TcpPacket {
  family: 4 | 6;
  /** Textual addresses as Node prints them ("10.0.1.2", "fd00::2"). */
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** Unsigned 32-bit sequence and acknowledgement numbers. */
  seq: number;
  ack: number;
  /** TCP flag bits, see FIN..CWR. */
  flags: number;
  window: number;
  urgentPointer: number;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl: number;
  options: TcpOptions;
  /** The TCP payload (view). */
  payload: Uint8Array;
  /** The whole IP packet as decoded (view), from the IP header to the end of the payload. */
  ip: Uint8Array;
  /** Offset of the TCP header inside `ip`. */
  tcpOffset: number;
  /** Number of IPv6 extension headers walked (0 for IPv4); hop-by-hop headers counted separately. */
  extHeaders: number;
  /** How many of `extHeaders` were hop-by-hop headers; more than one is discarded by receivers. */
  hopByHopCount: number;
  /**
   * An IPv6 hop-by-hop header came after another extension header (RFC 8200 4.1 allows it only
   * right after the IPv6 header); receivers discard such packets, as they do with more than one.
   * Always set by the decoder.
   */
  hopByHopMisplaced?: boolean;
  /**
   * An IPv6 extension header in front of TCP makes the receiver drop the packet: an option it
   * must discard for (RFC 8200 4.2), or a mobility, HIP or shim6 header Linux has no handler for.
   * Always set by the decoder.
   */
  discardedByReceiver?: boolean;
}

/**
 * Result of decoding one IP packet. Decoders never throw on bad input. A `tcp` result may be
 * the packet itself (`decodeIp` returns one object per packet).
 */
export type DecodeResult =
  | { kind: 'tcp'; packet: TcpPacket }
  /** Not TCP (UDP, ICMP, ...): `proto` is the final next-header value. */
  | { kind: 'other'; family: 4 | 6; proto: number }
  /** An IP fragment: never parsed as TCP. `first` when it is the offset-0 fragment. */
  | { kind: 'fragment'; family: 4 | 6; first: boolean }
  | { kind: 'invalid'; reason: string };
