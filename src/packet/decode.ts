/**
 * IPv4 / IPv6 / TCP decoding: bytes -> a typed view. Never throws on bad input. It is on the
 * hot path: per TCP packet it allocates only the packet, which is its own result, and a view of
 * `ip` when padding follows the packet; what most packets never need (payload view, addresses,
 * options, sequence numbers, ...) is read from the header bytes when asked for.
 * Every Uint8Array in the result is a view into the input.
 */
import { formatIpv4, formatIpv6 } from './addr.js';
import type { DecodeResult, TcpOptions, TcpPacket } from './types.js';

/** Limits for `decodeIp`. */
export interface DecodeOptions {
  /** Most IPv6 extension headers walked before the packet is called invalid. Default 16 (headers). */
  maxExtHeaders?: number;
}

/** Default for `DecodeOptions.maxExtHeaders` (headers). */
export const DEFAULT_MAX_EXT_HEADERS = 16;

const PROTO_TCP = 6;

/** Creates the shared `kind:'invalid'` result. */
function invalid(reason: string): DecodeResult {
  return { kind: 'invalid', reason };
}

/**
 * Decodes one IP packet (starting at the IP header) and, when it carries a whole TCP segment,
 * the TCP header and options. Fragments are reported as such and never parsed as TCP.
 * Bytes after the IP total length (Ethernet padding) are ignored. A zero IPv4 total length or
 * IPv6 payload length (segmentation offload, BIG TCP, jumbograms) means "to the end of `buf`".
 */
export function decodeIp(buf: Uint8Array, opts?: DecodeOptions): DecodeResult {
  if (buf.length === 0) return invalid('empty packet');
  const version = buf[0] >> 4;
  if (version === 4) return decodeIpv4(buf);
  if (version === 6) return decodeIpv6(buf, opts?.maxExtHeaders ?? DEFAULT_MAX_EXT_HEADERS);
  return invalid('IP version ' + version);
}

function decodeIpv4(buf: Uint8Array): DecodeResult {
  if (buf.length < 20) return invalid('IPv4 header truncated');
  const ihl = (buf[0] & 0x0f) * 4;
  if (ihl < 20) return invalid('IPv4 header length below 20');
  let total = (buf[2] << 8) | buf[3];
  if (total === 0) total = buf.length;
  if (total > buf.length) return invalid('IPv4 total length beyond the packet');
  if (total < ihl) return invalid('IPv4 total length below the header length');
  const frag = (buf[6] << 8) | buf[7];
  const offset = frag & 0x1fff;
  if ((frag & 0x2000) !== 0 || offset !== 0) return { kind: 'fragment', family: 4, first: offset === 0 };
  const proto = buf[9];
  if (proto !== PROTO_TCP) return { kind: 'other', family: 4, proto };
  return decodeTcp(buf, 4, ihl, total, 0, 0, false);
}

function decodeIpv6(buf: Uint8Array, maxExt: number): DecodeResult {
  if (buf.length < 40) return invalid('IPv6 header truncated');
  const payloadLen = (buf[4] << 8) | buf[5];
  const end = payloadLen === 0 ? buf.length : 40 + payloadLen;
  if (end > buf.length) return invalid('IPv6 payload length beyond the packet');
  let next = buf[6];
  let off = 40;
  let ext = 0;
  let hbh = 0;
  let hbhMisplaced = false;
  let discard = false;
  for (;;) {
    if (next === PROTO_TCP) break;
    let len: number;
    switch (next) {
      case 0: // hop-by-hop options: only valid right after the IPv6 header (RFC 8200 4.1)
      case 43: // routing
      case 60: // destination options
      case 135: // mobility
      case 139: // HIP
      case 140: // shim6
        if (off + 2 > end) return invalid('IPv6 extension header truncated');
        len = (buf[off + 1] + 1) * 8;
        if (next === 0) {
          hbh++;
          if (ext > 0) hbhMisplaced = true;
          if (off + len <= end && !optionsKept(buf, off + 2, off + len, HBH_KNOWN)) discard = true;
        } else if (next === 60) {
          if (off + len <= end && !optionsKept(buf, off + 2, off + len, DEST_KNOWN)) discard = true;
        } else if (next !== 43) {
          // Mobility, HIP and shim6 have no protocol handler in Linux: the receiver answers a
          // parameter problem and drops the packet, so the TCP segment behind never reaches a socket.
          discard = true;
        }
        break;
      case 51: // authentication header: length in 4-octet units, minus 2
        if (off + 2 > end) return invalid('IPv6 extension header truncated');
        len = (buf[off + 1] + 2) * 4;
        break;
      case 44: {
        // fragment header
        if (off + 8 > end) return invalid('IPv6 fragment header truncated');
        const fo = (buf[off + 2] << 8) | buf[off + 3];
        const offset = fo >> 3;
        // An atomic fragment (offset 0, no M flag, RFC 6946) is a whole packet: keep walking.
        if (offset !== 0 || (fo & 1) !== 0) return { kind: 'fragment', family: 6, first: offset === 0 };
        len = 8;
        break;
      }
      default: // ESP (50), no next header (59), UDP, ICMPv6, ...
        return { kind: 'other', family: 6, proto: next };
    }
    if (off + len > end) return invalid('IPv6 extension header truncated');
    if (++ext > maxExt) return invalid('too many IPv6 extension headers');
    next = buf[off];
    off += len;
  }
  return decodeTcp(buf, 6, off, end, ext, hbh, hbhMisplaced, discard);
}

/** Hop-by-hop option types Linux handles: Pad1, PadN, router alert, CALIPSO, IOAM, jumbo payload. */
const HBH_KNOWN = [0x00, 0x01, 0x05, 0x07, 0x31, 0xc2];
/** Destination option types Linux handles: Pad1, PadN, home address (Mobile IPv6). */
const DEST_KNOWN = [0x00, 0x01, 0xc9];

/** Options other than padding a header may carry before Linux drops the packet (`max_{hbh,dst}_opts_number`). */
const MAX_OPTIONS = 8;

/**
 * False when the receiver drops the packet for the options in `buf[start..end)` (RFC 8200 4.2,
 * Linux `ip6_parse_tlv`): an unknown option whose two high type bits say discard (01, 10, 11),
 * more than 7 bytes of padding in a row or PadN with non-zero bytes (RFC 4942 2.1.9.5), more
 * than {@link MAX_OPTIONS} options, or an option overrunning the header.
 */
function optionsKept(buf: Uint8Array, start: number, end: number, known: number[]): boolean {
  let pad = 0;
  let count = 0;
  for (let i = start; i < end;) {
    const type = buf[i]!;
    if (type === 0) {
      i++;
      if (++pad > 7) return false;
      continue;
    }
    if (i + 1 >= end) return false;
    const optLen = buf[i + 1]! + 2;
    if (i + optLen > end) return false;
    if (type === 1) {
      pad += optLen;
      if (pad > 7) return false;
      for (let j = i + 2; j < i + optLen; j++) if (buf[j] !== 0) return false;
    } else {
      pad = 0;
      if (++count > MAX_OPTIONS) return false;
      if (!known.includes(type) && (type >> 6) !== 0) return false;
    }
    i += optLen;
  }
  return true;
}

function decodeTcp(
  buf: Uint8Array,
  family: 4 | 6,
  off: number,
  end: number,
  extHeaders: number,
  hopByHopCount: number,
  hopByHopMisplaced: boolean,
  discarded = false,
): DecodeResult {
  if (off + 20 > end) return invalid('TCP header truncated');
  const dataOffset = (buf[off + 12] >> 4) * 4;
  if (dataOffset < 20) return invalid('TCP data offset below 20');
  if (off + dataOffset > end) return invalid('TCP data offset beyond the packet');
  const hbh = hopByHopCount * HBH_ONE + (hopByHopMisplaced ? HBH_MISPLACED : 0) + (discarded ? DISCARDED : 0);
  return new DecodedTcp(buf, family, off, end, extHeaders, hbh);
}

/** DecodedTcp.hbh: two flags, then the count of hop-by-hop headers (in units of HBH_ONE). */
const DISCARDED = 1, HBH_MISPLACED = 2, HBH_ONE = 4;

/**
 * A decoded packet, which is also its own `kind: 'tcp'` result (an object less per packet).
 * Only what every packet's route needs is stored; the payload view, sequence numbers, window,
 * TTL, address texts and TCP options are read from the header bytes when asked for: most
 * packets (stragglers of decided flows) never need them, and a stored field costs 8 bytes, a
 * sequence number above 2^31 a number object more, a view about 100 bytes.
 */
class DecodedTcp implements TcpPacket {
  declare readonly kind: 'tcp';
  family: 4 | 6;
  sport: number;
  dport: number;
  flags: number;
  ip: Uint8Array;
  tcpOffset: number;
  extHeaders: number;
  private readonly hbh: number;
  private srcText: string | undefined = undefined;
  private dstText: string | undefined = undefined;
  private opts: TcpOptions | undefined = undefined;
  private data: Uint8Array | undefined = undefined;

  constructor(buf: Uint8Array, family: 4 | 6, off: number, end: number, extHeaders: number, hbh: number) {
    this.family = family;
    this.sport = (buf[off] << 8) | buf[off + 1];
    this.dport = (buf[off + 2] << 8) | buf[off + 3];
    this.flags = buf[off + 13];
    this.ip = end === buf.length ? buf : buf.subarray(0, end);
    this.tcpOffset = off;
    this.extHeaders = extHeaders;
    this.hbh = hbh;
  }

  /** The payload, a view made when first asked for: packets of decided flows never need it. */
  get payload(): Uint8Array {
    return (this.data ??= this.ip.subarray(this.tcpOffset + (this.ip[this.tcpOffset + 12] >> 4) * 4));
  }

  /** The result's packet: itself. */
  get packet(): TcpPacket {
    return this;
  }

  get seq(): number {
    return u32(this.ip, this.tcpOffset + 4);
  }

  get ack(): number {
    return u32(this.ip, this.tcpOffset + 8);
  }

  get window(): number {
    const o = this.tcpOffset + 14;
    return (this.ip[o] << 8) | this.ip[o + 1];
  }

  get urgentPointer(): number {
    const o = this.tcpOffset + 18;
    return (this.ip[o] << 8) | this.ip[o + 1];
  }

  /** IPv4 TTL (byte 8) or IPv6 hop limit (byte 7). */
  get ttl(): number {
    return this.ip[this.family === 4 ? 8 : 7];
  }

  get hopByHopCount(): number {
    return Math.floor(this.hbh / HBH_ONE);
  }

  get hopByHopMisplaced(): boolean {
    return (this.hbh & HBH_MISPLACED) !== 0;
  }

  get discardedByReceiver(): boolean {
    return (this.hbh & DISCARDED) !== 0;
  }

  get src(): string {
    return (this.srcText ??= this.family === 4 ? formatIpv4(this.ip, 12) : formatIpv6(this.ip, 8));
  }

  set src(text: string) {
    this.srcText = text;
  }

  get dst(): string {
    return (this.dstText ??= this.family === 4 ? formatIpv4(this.ip, 16) : formatIpv6(this.ip, 24));
  }

  set dst(text: string) {
    this.dstText = text;
  }

  get options(): TcpOptions {
    const t = this.tcpOffset;
    return (this.opts ??= parseTcpOptions(this.ip, t + 20, t + (this.ip[t + 12] >> 4) * 4));
  }

  set options(options: TcpOptions) {
    this.opts = options;
  }
}
Object.defineProperty(DecodedTcp.prototype, 'kind', { value: 'tcp' });

/** The big-endian unsigned 32-bit number at `b[o..o+4)`. */
export function u32(b: Uint8Array, o: number): number {
  return ((b[o] << 24) | (b[o + 1] << 16) | (b[o + 2] << 8) | b[o + 3]) >>> 0;
}

/** The options of a header without any: one shared, frozen object rather than one per packet. */
const NO_OPTIONS: TcpOptions = Object.freeze({
  mss: undefined, wscale: undefined, sackPermitted: undefined, tsVal: undefined, tsEcr: undefined,
  md5: undefined, fastOpen: undefined, malformed: undefined,
});

/**
 * Parses the TCP options in `buf[start..end)`. Every field of the result is present (undefined
 * when the option is absent). An option with the wrong length for its kind is ignored, as Linux
 * does; a length below 2 or past the header sets `malformed` and stops the walk.
 */
export function parseTcpOptions(buf: Uint8Array, start: number, end: number): TcpOptions {
  if (start >= end) return NO_OPTIONS;
  let mss: number | undefined;
  let wscale: number | undefined;
  let sackPermitted: boolean | undefined;
  let tsVal: number | undefined;
  let tsEcr: number | undefined;
  let md5: boolean | undefined;
  let fastOpen: boolean | undefined;
  let malformed: boolean | undefined;
  let i = start;
  while (i < end) {
    const kind = buf[i];
    if (kind === 0) break; // end of option list
    if (kind === 1) {
      i++; // no-operation
      continue;
    }
    if (i + 1 >= end) {
      malformed = true;
      break;
    }
    const len = buf[i + 1];
    if (len < 2 || i + len > end) {
      malformed = true;
      break;
    }
    switch (kind) {
      case 2:
        if (len === 4) mss = (buf[i + 2] << 8) | buf[i + 3];
        break;
      case 3:
        if (len === 3) wscale = buf[i + 2];
        break;
      case 4:
        if (len === 2) sackPermitted = true;
        break;
      case 8:
        if (len === 10) {
          tsVal = u32(buf, i + 2);
          tsEcr = u32(buf, i + 6);
        }
        break;
      case 19: // RFC 2385 MD5 signature: Linux only recognises the 18-byte form
        if (len === 18) md5 = true;
        break;
      case 34: // RFC 7413 TCP Fast Open (cookie request when the length is 2)
        fastOpen = true;
        break;
      case 254: // experimental TFO (RFC 6994 ExID 0xf989), still accepted by Linux
        if (len >= 4 && buf[i + 2] === 0xf9 && buf[i + 3] === 0x89) fastOpen = true;
        break;
    }
    i += len;
  }
  return { mss, wscale, sackPermitted, tsVal, tsEcr, md5, fastOpen, malformed };
}
