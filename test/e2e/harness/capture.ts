/**
 * Packet captures inside a namespace (dumpcap, from Debian `tshark`) and a small reader that
 * turns a pcap file into TCP segments, to assert what actually crossed a link.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execArgv, requireBinary, type ProcessHandle } from './proc.js';
import type { Role, Topology } from './topology.js';

/** A running capture. */
export interface Capture {
  /** Where the pcap (classic format) is written. */
  path: string;
  /** The dumpcap process. */
  process: ProcessHandle;
  /**
   * Waits `settleMs` (default 500), stops dumpcap and resolves the pcap path. Idempotent.
   * The wait is needed: libpcap hands packets to dumpcap in blocks retired every 250 ms,
   * and dumpcap drops the unretired block when stopped (measured: 100 ms loses everything).
   */
  stop(settleMs?: number): Promise<string>;
}

let captureCount = 0;

/**
 * Starts dumpcap on `iface` in the namespace of `role`, with an optional BPF `filter`
 * (e.g. 'tcp port 443'); resolves once dumpcap reports it is capturing. Default interface:
 * the role's own veth (gw: the server side). The file lives in the topology's temp dir.
 */
export async function capture(topo: Topology, role: Role, iface?: string, filter?: string): Promise<Capture> {
  const dumpcap = requireBinary('dumpcap');
  const dev = iface ?? (role === 'client' ? topo.ifaces.client : role === 'server' ? topo.ifaces.server : topo.ifaces.gwServer);
  const path = join(topo.tmpDir, `capture-${role}-${dev}-${++captureCount}.pcap`);
  const argv = [dumpcap, '-q', '-P', '-i', dev, '-w', path];
  if (filter !== undefined) argv.push('-f', filter);
  const proc = topo.spawn(role, argv);
  await proc.waitForLine(/Capturing on/, { timeoutMs: 10_000 });
  let stopping: Promise<string> | undefined;
  return {
    path,
    process: proc,
    stop(settleMs = 500) {
      stopping ??= (async () => {
        await new Promise((r) => setTimeout(r, settleMs));
        await proc.kill('SIGTERM', 3000);
        return path;
      })();
      return stopping;
    },
  };
}

/** One TCP segment read from a capture. */
export interface TcpSegment {
  /** Capture timestamp, seconds since the epoch (fractional). */
  time: number;
  family: 4 | 6;
  src: string;
  dst: string;
  sport: number;
  dport: number;
  /** Absolute sequence and acknowledgement numbers. */
  seq: number;
  ack: number;
  /** TCP flag bits (FIN 0x01, SYN 0x02, RST 0x04, PSH 0x08, ACK 0x10, URG 0x20). */
  flags: number;
  /** Flags as letters in the order FSRPAU, e.g. 'SA' for SYN+ACK, 'PA' for PSH+ACK. */
  flagText: string;
  /** IPv4 TTL or IPv6 hop limit. */
  ttl: number;
  /** TCP payload (a view into the file buffer). */
  payload: Buffer;
}

const FLAG_LETTERS: Array<[number, string]> = [
  [0x01, 'F'], [0x02, 'S'], [0x04, 'R'], [0x08, 'P'], [0x10, 'A'], [0x20, 'U'],
];

/**
 * Reads a classic pcap file (Ethernet, Linux cooked v1/v2 or raw IP) and returns its TCP
 * segments in capture order. Non-TCP packets and non-first IP fragments are skipped.
 */
export function readTcpSegments(path: string): TcpSegment[] {
  const buf = readFileSync(path);
  if (buf.length < 24) return [];
  const magicLE = buf.readUInt32LE(0);
  const le = magicLE === 0xa1b2c3d4 || magicLE === 0xa1b23c4d;
  const u32 = (o: number) => (le ? buf.readUInt32LE(o) : buf.readUInt32BE(o));
  const magic = u32(0);
  if (magic !== 0xa1b2c3d4 && magic !== 0xa1b23c4d) {
    throw new Error(`${path}: not a classic pcap file (pcapng? capture() writes pcap)`);
  }
  const nanos = magic === 0xa1b23c4d;
  const linktype = u32(20) & 0xffff;
  const out: TcpSegment[] = [];
  for (let off = 24; off + 16 <= buf.length; ) {
    const time = u32(off) + u32(off + 4) / (nanos ? 1e9 : 1e6);
    const caplen = u32(off + 8);
    const frame = buf.subarray(off + 16, off + 16 + caplen);
    off += 16 + caplen;
    const ip = networkLayer(frame, linktype);
    const seg = ip && decodeIp(ip, time);
    if (seg) out.push(seg);
  }
  return out;
}

function networkLayer(frame: Buffer, linktype: number): Buffer | undefined {
  let type: number;
  let at: number;
  if (linktype === 1) {
    type = frame.readUInt16BE(12);
    at = 14;
    while (type === 0x8100 || type === 0x88a8) {
      type = frame.readUInt16BE(at + 2);
      at += 4;
    }
  } else if (linktype === 113) {
    type = frame.readUInt16BE(14);
    at = 16;
  } else if (linktype === 276) {
    type = frame.readUInt16BE(0);
    at = 20;
  } else if (linktype === 101 || linktype === 12 || linktype === 14) {
    return frame;
  } else {
    return undefined;
  }
  return type === 0x0800 || type === 0x86dd ? frame.subarray(at) : undefined;
}

function decodeIp(ip: Buffer, time: number): TcpSegment | undefined {
  if (ip.length < 20) return undefined;
  const version = ip[0]! >> 4;
  let family: 4 | 6;
  let src: string;
  let dst: string;
  let ttl: number;
  let tcp: Buffer;
  if (version === 4) {
    const ihl = (ip[0]! & 0x0f) * 4;
    const total = ip.readUInt16BE(2);
    if (ip[9] !== 6 || (ip.readUInt16BE(6) & 0x1fff) !== 0) return undefined;
    family = 4;
    src = [...ip.subarray(12, 16)].join('.');
    dst = [...ip.subarray(16, 20)].join('.');
    ttl = ip[8]!;
    tcp = ip.subarray(ihl, Math.min(total || ip.length, ip.length));
  } else if (version === 6) {
    if (ip.length < 40) return undefined;
    family = 6;
    src = ipv6Text(ip.subarray(8, 24));
    dst = ipv6Text(ip.subarray(24, 40));
    ttl = ip[7]!;
    const end = Math.min(40 + ip.readUInt16BE(4), ip.length);
    let next = ip[6]!;
    let at = 40;
    while (next !== 6) {
      if (next === 0 || next === 43 || next === 60) {
        if (at + 2 > end) return undefined;
        const len = (ip[at + 1]! + 1) * 8;
        next = ip[at]!;
        at += len;
      } else if (next === 44) {
        if (at + 8 > end || (ip.readUInt16BE(at + 2) & 0xfff8) !== 0) return undefined;
        next = ip[at]!;
        at += 8;
      } else {
        return undefined;
      }
    }
    tcp = ip.subarray(at, end);
  } else {
    return undefined;
  }
  if (tcp.length < 20) return undefined;
  const dataOff = (tcp[12]! >> 4) * 4;
  const flags = tcp[13]! & 0x3f;
  return {
    time,
    family,
    src,
    dst,
    sport: tcp.readUInt16BE(0),
    dport: tcp.readUInt16BE(2),
    seq: tcp.readUInt32BE(4),
    ack: tcp.readUInt32BE(8),
    flags,
    flagText: FLAG_LETTERS.filter(([bit]) => flags & bit).map(([, l]) => l).join(''),
    ttl,
    payload: tcp.subarray(Math.min(dataOff, tcp.length)),
  };
}

function ipv6Text(b: Buffer): string {
  const groups: string[] = [];
  for (let i = 0; i < 16; i += 2) groups.push(b.readUInt16BE(i).toString(16));
  // compress the longest run of zero groups
  let best = -1;
  let bestLen = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== '0') {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === '0') j++;
    if (j - i > bestLen) {
      best = i;
      bestLen = j - i;
    }
    i = j;
  }
  if (best < 0) return groups.join(':');
  return `${groups.slice(0, best).join(':')}::${groups.slice(best + bestLen).join(':')}`;
}

/** The data a client sent on one connection before the server sent any data. */
export interface FirstFlight {
  /** Client address and port, `addr:port` (IPv6 in brackets). */
  client: string;
  /** Client-to-server segments carrying payload, in capture order (retransmissions included). */
  segments: TcpSegment[];
}

/**
 * Groups a capture's client-to-server payload segments per connection to `serverPort`,
 * up to the first server payload on that connection: e.g. the segments of a ClientHello or
 * an HTTP request head. Connections appear in the order of their first segment.
 */
export function firstFlights(segments: readonly TcpSegment[], serverPort: number): FirstFlight[] {
  const flights = new Map<string, FirstFlight & { done: boolean }>();
  const key = (addr: string, port: number) => (addr.includes(':') ? `[${addr}]:${port}` : `${addr}:${port}`);
  for (const s of segments) {
    if (s.dport === serverPort) {
      const k = key(s.src, s.sport);
      let f = flights.get(k);
      if (f === undefined) {
        f = { client: k, segments: [], done: false };
        flights.set(k, f);
      }
      if (!f.done && s.payload.length > 0) f.segments.push(s);
    } else if (s.sport === serverPort && s.payload.length > 0) {
      const f = flights.get(key(s.dst, s.dport));
      if (f) f.done = true;
    }
  }
  return [...flights.values()].filter((f) => f.segments.length > 0).map(({ client, segments: segs }) => ({ client, segments: segs }));
}

/**
 * Runs tshark over a capture file and returns one row of field values per packet
 * (e.g. fields ['tls.handshake.extensions_server_name', 'tcp.len'], filter 'tls.handshake.type == 1').
 */
export async function tsharkFields(path: string, fields: readonly string[], filter?: string): Promise<string[][]> {
  const argv = [requireBinary('tshark'), '-r', path, '-T', 'fields', '-E', 'separator=\t'];
  if (filter !== undefined) argv.push('-Y', filter);
  for (const f of fields) argv.push('-e', f);
  const res = await execArgv(argv, { check: true, timeoutMs: 30_000 });
  return res.stdout.split('\n').filter((l) => l !== '').map((l) => l.split('\t'));
}
