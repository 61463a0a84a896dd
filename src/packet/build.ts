/**
 * Builds IPv4/IPv6 packets carrying one TCP segment, with correct checksums unless asked
 * otherwise, and splits packets into IP fragments. Used by tests to play evasion scenarios and
 * by the daemon to craft a TCP RST. A bad spec is a programming error: it throws.
 */
import { FlowgateError } from '../errors.js';
import { parseIp } from './addr.js';
import { computeTcpChecksum, internetChecksum } from './checksum.js';

/** TCP options to encode, in the order Linux sends them. */
export interface TcpOptionsSpec {
  mss?: number;
  wscale?: number;
  sackPermitted?: boolean;
  /** Timestamps are sent when `tsVal` is set; `tsEcr` defaults to 0. */
  tsVal?: number;
  tsEcr?: number;
  /** Adds an 18-byte RFC 2385 MD5 option (zero signature). */
  md5?: boolean;
  /** Adds a TCP Fast Open option (kind 34) with this cookie (empty: a cookie request). */
  fastOpenCookie?: Uint8Array;
  /** Raw option bytes appended after the others, e.g. to test malformed option lists. */
  raw?: Uint8Array;
}

/** What `buildTcpPacket` builds. Defaults: window 65535, TTL 64, IP id 0, DF set, no options. */
export interface TcpPacketSpec {
  /** IP version; inferred from `src` when absent. */
  family?: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** Unsigned 32-bit sequence and acknowledgement numbers (ack defaults to 0). */
  seq: number;
  ack?: number;
  /** TCP flag bits (FIN..CWR from types.ts). */
  flags: number;
  window?: number;
  urgentPointer?: number;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl?: number;
  /** Strings are sent as UTF-8. */
  payload?: Uint8Array | string;
  options?: TcpOptionsSpec;
  /** Writes a wrong TCP checksum (the IPv4 header checksum stays right). */
  badChecksum?: boolean;
  /** IPv6: number of hop-by-hop headers at the front of the chain (more than one is invalid). */
  hopByHop?: number;
  /** IPv6: extension header types to insert after the hop-by-hop ones, in order (0, 43, 44, 51, 60, 135, 139, 140). */
  extHeaders?: number[];
  /** IPv6: a destination options header right before TCP. */
  destOpts?: boolean;
  /** IPv4 identification. */
  ipId?: number;
  /** IPv4 don't-fragment flag; default true. */
  dontFragment?: boolean;
}

function specError(message: string): FlowgateError {
  return new FlowgateError('ERR_PACKET_SPEC', message);
}

function addressBytes(text: string, family: 4 | 6): Uint8Array {
  const a = parseIp(text);
  if (a === null) throw specError(`not an IP address: ${JSON.stringify(text)}`);
  if (a.length !== (family === 4 ? 4 : 16)) throw specError(`${text} is not an IPv${family} address`);
  return a;
}

/** Encodes TCP options, padded with end-of-list bytes to a multiple of 4 (at most 40 bytes). */
export function encodeTcpOptions(o: TcpOptionsSpec = {}): Uint8Array {
  const out: number[] = [];
  if (o.mss !== undefined) out.push(2, 4, (o.mss >> 8) & 0xff, o.mss & 0xff);
  const ts = o.tsVal !== undefined;
  if (o.sackPermitted) out.push(...(ts ? [4, 2] : [1, 1, 4, 2]));
  if (ts) {
    if (!o.sackPermitted) out.push(1, 1);
    out.push(8, 10, ...be32(o.tsVal ?? 0), ...be32(o.tsEcr ?? 0));
  }
  if (o.wscale !== undefined) out.push(1, 3, 3, o.wscale & 0xff);
  if (o.md5) out.push(19, 18, ...new Array<number>(16).fill(0), 1, 1);
  if (o.fastOpenCookie !== undefined) out.push(34, 2 + o.fastOpenCookie.length, ...o.fastOpenCookie);
  if (o.raw !== undefined) out.push(...o.raw);
  while (out.length % 4 !== 0) out.push(0);
  if (out.length > 40) throw specError(`TCP options take ${out.length} bytes, more than 40`);
  return Uint8Array.from(out);
}

function be32(v: number): number[] {
  return [(v >>> 24) & 0xff, (v >>> 16) & 0xff, (v >>> 8) & 0xff, v & 0xff];
}

/** Size of the minimal extension header of each supported type (bytes). */
function extHeaderSize(type: number): number {
  if (type === 51) return 16; // AH with an 8-byte ICV keeps the 8-byte alignment IPv6 needs
  if ([0, 43, 44, 60, 135, 139, 140].includes(type)) return 8;
  throw specError(`unsupported IPv6 extension header ${type}`);
}

/** Writes a minimal extension header of `type` at `off`, pointing at `next`. */
function writeExtHeader(p: Uint8Array, off: number, type: number, next: number): void {
  p[off] = next;
  if (type === 51) {
    p[off + 1] = 2; // (16 / 4) - 2
  } else if (type === 44) {
    p[off + 1] = 0; // atomic fragment: offset 0, M clear
  } else {
    p[off + 1] = 0; // (8 / 8) - 1
    if (type === 0 || type === 60) {
      p[off + 2] = 1; // PadN option filling the remaining 6 bytes
      p[off + 3] = 4;
    }
  }
}

/** Builds one IPv4 or IPv6 packet carrying the TCP segment described by `spec`. */
export function buildTcpPacket(spec: TcpPacketSpec): Uint8Array {
  const family = spec.family ?? (spec.src.includes(':') ? 6 : 4);
  const src = addressBytes(spec.src, family);
  const dst = addressBytes(spec.dst, family);
  const payload =
    typeof spec.payload === 'string' ? new TextEncoder().encode(spec.payload) : (spec.payload ?? new Uint8Array(0));
  const opts = encodeTcpOptions(spec.options);
  const tcpLen = 20 + opts.length + payload.length;

  const chain: number[] = [];
  if (family === 6) {
    for (let i = 0; i < (spec.hopByHop ?? 0); i++) chain.push(0);
    chain.push(...(spec.extHeaders ?? []));
    if (spec.destOpts) chain.push(60);
  } else if (spec.hopByHop || spec.extHeaders?.length || spec.destOpts) {
    throw specError('extension headers need IPv6');
  }
  const extLen = chain.reduce((n, t) => n + extHeaderSize(t), 0);
  const ipHeaderLen = family === 4 ? 20 : 40 + extLen;
  const total = ipHeaderLen + tcpLen;
  if (family === 4 ? total > 0xffff : total - 40 > 0xffff) throw specError(`packet of ${total} bytes too large`);

  const p = new Uint8Array(total);
  if (family === 4) {
    p[0] = 0x45;
    p[2] = total >> 8;
    p[3] = total & 0xff;
    const id = spec.ipId ?? 0;
    p[4] = (id >> 8) & 0xff;
    p[5] = id & 0xff;
    p[6] = spec.dontFragment === false ? 0 : 0x40;
    p[8] = spec.ttl ?? 64;
    p[9] = 6;
    p.set(src, 12);
    p.set(dst, 16);
    const c = internetChecksum(p, 0, 20);
    p[10] = c >> 8;
    p[11] = c & 0xff;
  } else {
    p[0] = 0x60;
    p[4] = (total - 40) >> 8;
    p[5] = (total - 40) & 0xff;
    p[6] = chain.length > 0 ? chain[0] : 6;
    p[7] = spec.ttl ?? 64;
    p.set(src, 8);
    p.set(dst, 24);
    let off = 40;
    chain.forEach((type, i) => {
      writeExtHeader(p, off, type, i + 1 < chain.length ? chain[i + 1] : 6);
      off += extHeaderSize(type);
    });
  }

  const t = ipHeaderLen;
  p[t] = spec.sport >> 8;
  p[t + 1] = spec.sport & 0xff;
  p[t + 2] = spec.dport >> 8;
  p[t + 3] = spec.dport & 0xff;
  p.set(be32(spec.seq >>> 0), t + 4);
  p.set(be32((spec.ack ?? 0) >>> 0), t + 8);
  p[t + 12] = ((20 + opts.length) / 4) << 4;
  p[t + 13] = spec.flags & 0xff;
  const win = spec.window ?? 65535;
  p[t + 14] = (win >> 8) & 0xff;
  p[t + 15] = win & 0xff;
  const urg = spec.urgentPointer ?? 0;
  p[t + 18] = (urg >> 8) & 0xff;
  p[t + 19] = urg & 0xff;
  p.set(opts, t + 20);
  p.set(payload, t + 20 + opts.length);
  let sum = computeTcpChecksum(p, family, t);
  if (spec.badChecksum) sum ^= 1; // any one-bit change is wrong in one's complement
  p[t + 16] = sum >> 8;
  p[t + 17] = sum & 0xff;
  return p;
}

/**
 * Splits an IPv4 packet into fragments carrying at most `fragSize` payload bytes each (rounded
 * down to a multiple of 8), in order. The IP header (options included) is repeated in each,
 * with DF cleared, MF and the offset set and the header checksum recomputed.
 */
export function buildIpv4Fragments(packet: Uint8Array, fragSize: number): Uint8Array[] {
  if (packet.length < 20 || packet[0] >> 4 !== 4) throw specError('not an IPv4 packet');
  const ihl = (packet[0] & 0x0f) * 4;
  const total = (packet[2] << 8) | packet[3];
  const step = Math.floor(fragSize / 8) * 8;
  if (step < 8) throw specError('fragment size below 8 bytes');
  const baseOffset = ((packet[6] & 0x1f) << 8) | packet[7];
  const moreAfter = (packet[6] & 0x20) !== 0;
  const frags: Uint8Array[] = [];
  for (let pos = ihl; pos < total; pos += step) {
    const len = Math.min(step, total - pos);
    const f = new Uint8Array(ihl + len);
    f.set(packet.subarray(0, ihl));
    f.set(packet.subarray(pos, pos + len), ihl);
    f[2] = (ihl + len) >> 8;
    f[3] = (ihl + len) & 0xff;
    const last = pos + len >= total;
    const off = baseOffset + (pos - ihl) / 8;
    f[6] = ((last && !moreAfter ? 0 : 0x20) | (off >> 8)) & 0xff;
    f[7] = off & 0xff;
    f[10] = 0;
    f[11] = 0;
    const c = internetChecksum(f, 0, ihl);
    f[10] = c >> 8;
    f[11] = c & 0xff;
    frags.push(f);
  }
  return frags;
}

/**
 * Splits an IPv6 packet into fragments of at most `fragSize` fragmentable bytes each (rounded
 * down to a multiple of 8). The unfragmentable part is the IPv6 header plus any leading
 * hop-by-hop and routing headers; a fragment header with identification `id` follows it.
 */
export function buildIpv6Fragments(packet: Uint8Array, fragSize: number, id = 1): Uint8Array[] {
  if (packet.length < 40 || packet[0] >> 4 !== 6) throw specError('not an IPv6 packet');
  const step = Math.floor(fragSize / 8) * 8;
  if (step < 8) throw specError('fragment size below 8 bytes');
  const end = 40 + ((packet[4] << 8) | packet[5]);
  let nextPos = 6; // where the next-header byte of the last unfragmentable header sits
  let off = 40;
  while ((packet[nextPos] === 0 || packet[nextPos] === 43) && off + 2 <= end) {
    nextPos = off;
    off += (packet[off + 1] + 1) * 8;
  }
  const fragNext = packet[nextPos];
  const frags: Uint8Array[] = [];
  for (let pos = off; pos < end; pos += step) {
    const len = Math.min(step, end - pos);
    const f = new Uint8Array(off + 8 + len);
    f.set(packet.subarray(0, off));
    f[nextPos] = 44;
    const plen = off + 8 + len - 40;
    f[4] = plen >> 8;
    f[5] = plen & 0xff;
    const fo = ((pos - off) / 8) << 3;
    f[off] = fragNext;
    f[off + 2] = fo >> 8;
    f[off + 3] = (fo & 0xf8) | (pos + len < end ? 1 : 0);
    f.set(be32(id >>> 0), off + 4);
    f.set(packet.subarray(pos, pos + len), off + 8);
    frags.push(f);
  }
  return frags;
}
