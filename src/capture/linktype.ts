/**
 * Link-layer headers of capture files (tcpdump.org LINKTYPE_* values): find the IP packet
 * inside a captured frame, as an offset or a view. Never copies, never throws.
 */

/** LINKTYPE_* values flowgate understands (https://www.tcpdump.org/linktypes.html). */
export const LINKTYPE = {
  /** BSD loopback: 4-byte address family in the capturing host's byte order. */
  NULL: 0,
  ETHERNET: 1,
  /** Raw IP written with DLT_RAW's value on most BSDs instead of LINKTYPE_RAW. */
  RAW_12: 12,
  /** Raw IPv4 or IPv6, told apart by the version nibble. */
  RAW: 101,
  /** OpenBSD loopback: 4-byte address family, big-endian. */
  LOOP: 108,
  /** Linux cooked capture v1 (16-byte header). */
  LINUX_SLL: 113,
  IPV4: 228,
  IPV6: 229,
  /** Linux cooked capture v2 (20-byte header). */
  LINUX_SLL2: 276,
} as const;

const ETH_IPV4 = 0x0800;
const ETH_IPV6 = 0x86dd;
const ETH_VLAN = 0x8100; // IEEE 802.1Q
const ETH_QINQ = 0x88a8; // IEEE 802.1ad
const ETH_QINQ_OLD = 0x9100; // pre-standard double tagging

/** Most VLAN tags skipped in one frame (tags). */
export const MAX_VLAN_TAGS = 4;

/** BSD AF_INET6 values: NetBSD/OpenBSD 24, FreeBSD 28, Darwin 30; Linux AF_INET6 is 10. */
function isInet6(af: number): boolean {
  return af === 24 || af === 28 || af === 30 || af === 10;
}

/**
 * Where the IP packet whose ethertype is `type` starts, the ethertype's field ending at `off`,
 * after any VLAN tags (each 2 bytes of tag control information, then the inner ethertype); -1
 * when it is not IP or the tags run past `end`.
 */
function skipTags(data: Uint8Array, type: number, off: number, end: number): number {
  for (let tags = 0; ; tags++) {
    if (type === ETH_IPV4 || type === ETH_IPV6) return off;
    if (type !== ETH_VLAN && type !== ETH_QINQ && type !== ETH_QINQ_OLD) return -1;
    if (tags >= MAX_VLAN_TAGS || off + 4 > end) return -1;
    type = (data[off + 2] << 8) | data[off + 3];
    off += 4;
  }
}

function u16(b: Uint8Array, o: number): number {
  return (b[o] << 8) | b[o + 1];
}

/** `start` when the packet there is not empty and its first nibble is `version` (4, 6, or 0 for either), else -1. */
function rawIp(data: Uint8Array, start: number, end: number, version: number): number {
  if (start >= end) return -1;
  const v = data[start] >> 4;
  if (version === 0 ? v === 4 || v === 6 : v === version) return start;
  return -1;
}

/**
 * Where the IPv4 or IPv6 packet inside the frame `data[start, end)` of link type `linktype`
 * starts (it runs to `end`), or -1 when the frame carries something else or the link type is
 * not supported.
 */
export function ipOffset(linktype: number, data: Uint8Array, start: number, end: number): number {
  const len = end - start;
  switch (linktype) {
    case LINKTYPE.ETHERNET:
      // destination (6), source (6), ethertype
      return len >= 14 ? skipTags(data, u16(data, start + 12), start + 14, end) : -1;
    case LINKTYPE.LINUX_SLL:
      // packet type (2), ARPHRD type (2), address length (2), address (8), protocol (2)
      return len >= 16 ? skipTags(data, u16(data, start + 14), start + 16, end) : -1;
    case LINKTYPE.LINUX_SLL2:
      // protocol (2), reserved (2), ifindex (4), ARPHRD (2), packet type (1), addr len (1), addr (8)
      return len >= 20 ? skipTags(data, u16(data, start), start + 20, end) : -1;
    case LINKTYPE.RAW:
    case LINKTYPE.RAW_12:
      return rawIp(data, start, end, 0);
    case LINKTYPE.IPV4:
      return rawIp(data, start, end, 4);
    case LINKTYPE.IPV6:
      return rawIp(data, start, end, 6);
    case LINKTYPE.NULL:
    case LINKTYPE.LOOP: {
      if (len < 4) return -1;
      const be = ((data[start] << 24) | (data[start + 1] << 16) | (data[start + 2] << 8) | data[start + 3]) >>> 0;
      // NULL is in the writer's byte order: a family never needs more than 16 bits.
      const af = linktype === LINKTYPE.LOOP || be <= 0xffff ? be : data[start] | (data[start + 1] << 8);
      if (af === 2) return rawIp(data, start + 4, end, 4);
      if (isInet6(af)) return rawIp(data, start + 4, end, 6);
      return -1;
    }
    default:
      return -1;
  }
}

/**
 * The IPv4 or IPv6 packet inside a captured frame of link type `linktype`, as a view into
 * `data` (`data` itself when the frame has no link header), or null when the frame carries
 * something else or the link type is not supported.
 */
export function ipFromFrame(linktype: number, data: Uint8Array): Uint8Array | null {
  const at = ipOffset(linktype, data, 0, data.length);
  return at < 0 ? null : at === 0 ? data : data.subarray(at);
}
