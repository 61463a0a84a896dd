/**
 * TCP bookkeeping per direction, and what a server would discard (EVASION.md G4): segments it
 * drops are dropped here too, uninspected, so the filter never judges bytes the server never reads.
 */
import { tcpChecksumOk } from '../packet/checksum.js';
import { ACK, FIN, RST, SYN, type TcpPacket } from '../packet/types.js';
import { seqAdd, seqDiff } from '../reassembly/seq.js';
import type { Flow } from './flow.js';
import { srcIsLow } from './key.js';

/** Smallest window assumed when judging sequence and acknowledgement numbers, bytes. */
const MIN_WINDOW = 65535;

/** Notes a server packet; true when it is the SYN-ACK answering a SYN that carried data. */
export function trackServer(flow: Flow, tcp: TcpPacket): boolean {
  const s = flow.s2c;
  let fastOpenAnswer = false;
  if (tcp.flags & SYN) {
    s.isn = tcp.seq;
    s.wscale = tcp.options.wscale ?? 0;
    s.ttl = tcp.ttl;
    if (flow.tcp === 'syn') flow.tcp = 'established';
    fastOpenAnswer = flow.tfo !== undefined && !flow.tfo.confirmed && (tcp.flags & ACK) !== 0;
  }
  const end = seqAdd(tcp.seq, tcp.payload.length + (tcp.flags & SYN ? 1 : 0) + (tcp.flags & FIN ? 1 : 0));
  if (s.sndNxt === undefined || seqDiff(end, s.sndNxt) > 0) s.sndNxt = end;
  if (tcp.flags & ACK) {
    if (s.lastAck === undefined || seqDiff(tcp.ack, s.lastAck) > 0) s.lastAck = tcp.ack;
    s.window = tcp.window << (tcp.flags & SYN ? 0 : s.wscale);
    if (s.window > s.maxWindow) s.maxWindow = s.window;
  }
  if (tcp.options.tsVal !== undefined) s.tsVal = tcp.options.tsVal;
  noteClose(flow, tcp);
  return fastOpenAnswer;
}

/** Notes a client packet the server will keep: its ACK, window, timestamp and highest sequence. */
export function trackClient(flow: Flow, tcp: TcpPacket): void {
  const c = flow.c2s;
  if (tcp.flags & ACK) {
    if (c.lastAck === undefined || seqDiff(tcp.ack, c.lastAck) > 0) c.lastAck = tcp.ack;
    c.window = tcp.window << c.wscale;
    if (c.window > c.maxWindow) c.maxWindow = c.window;
  }
  if (tcp.options.tsVal !== undefined && (c.tsVal === undefined || seqDiff(tcp.options.tsVal, c.tsVal) > 0)) {
    c.tsVal = tcp.options.tsVal;
  }
  const end = seqAdd(tcp.seq, tcp.payload.length + (tcp.flags & FIN ? 1 : 0));
  if (c.sndNxt === undefined || seqDiff(end, c.sndNxt) > 0) c.sndNxt = end;
}

/**
 * The furthest point of the server's stream flowgate knows the client may acknowledge now: the
 * SYN-ACK's, the server data it saw (the server's packets reach it until a first decision) and
 * the client's highest ACK; undefined when it knows none. A later client segment the server keeps
 * that acknowledges past it shows the server sent more: conntrack's INVALID drop ahead of the
 * queue refuses an ACK of data the server never sent.
 */
export function serverPosition(flow: Flow): number | undefined {
  const s = flow.s2c;
  const c = flow.c2s;
  let p = s.isn !== undefined ? seqAdd(s.isn, 1) : undefined;
  if (s.sndNxt !== undefined && (p === undefined || seqDiff(s.sndNxt, p) > 0)) p = s.sndNxt;
  if (c.lastAck !== undefined && (p === undefined || seqDiff(c.lastAck, p) > 0)) p = c.lastAck;
  return p;
}

/** Marks a direction's FIN and the connection as closing on FIN or RST. */
export function noteClose(flow: Flow, tcp: TcpPacket): void {
  if (tcp.flags & (FIN | RST)) {
    if (tcp.flags & FIN) (flow.isClientSide(srcIsLow(tcp)) ? flow.c2s : flow.s2c).finSeen = true;
    flow.tcp = 'closing';
  }
}

/** Which checks apply to a segment. */
export interface DiscardChecks {
  /** The checksum is computed and the engine verifies checksums. */
  verifyChecksum: boolean;
  /** Window, ACK, PAWS, TTL, MD5 and header checks. */
  strict: boolean;
  /** Server packets still reach flowgate, so the server's send window is known. */
  serverObserved: boolean;
}

/**
 * The oldest ACK the server still takes from the client, or undefined before the client acked
 * anything. RFC 5961 section 5.2 as Linux applies it (tcp_ack): an ACK older than SND.UNA -
 * MAX.SND.WND makes the server drop the segment, where SND.UNA is the highest ACK the client sent
 * and MAX.SND.WND the largest window the server got from the client, bounded by the bytes the
 * client has acknowledged so far (so early in a connection any ACK below SND.UNA is too old,
 * however large a window the client advertises). Only client packets and the server's ISN are
 * needed: this holds after the server's packets stop reaching flowgate.
 */
function ackFloor(flow: Flow): number | undefined {
  const c = flow.c2s;
  const s = flow.s2c;
  if (c.lastAck === undefined) return undefined;
  const acked = s.isn !== undefined ? seqDiff(c.lastAck, seqAdd(s.isn, 1)) : Infinity;
  const slack = Math.max(0, Math.min(s.isn !== undefined ? c.maxWindow : Math.max(c.maxWindow, MIN_WINDOW), acked));
  return seqAdd(c.lastAck, -slack >>> 0);
}

/**
 * What discardReason would check of the client's next data segment, for a checker outside the
 * engine (the kernel queue's binding, see VerdictSink.expectAfterHello): with `serverObserved`
 * false, the checks below are all of it but IPv6 extension headers (which such a checker must
 * refuse) and MD5 (likewise). Values are the connection's as they stand now.
 */
export interface NextSegmentChecks {
  verifyChecksum: boolean;
  /** Lowest TTL or hop limit kept (0: none). */
  minTtl: number;
  /** Oldest timestamp kept, when the segment carries one (PAWS). */
  tsMin: number | undefined;
  /** Oldest ACK kept. */
  ackMin: number | undefined;
  /** Longest payload the engine's limits leave room for (beyond them it applies on_limit). */
  maxPayload: number;
  /**
   * When set, the segment must carry an ACK past it: after a ClientHello, the server's position
   * when the hello was read (serverPosition), so that only a segment acknowledging the server's
   * answer ends the hello's inspection.
   */
  ackAbove?: number;
}

/** NextSegmentChecks for `flow` under `checks` (its serverObserved must be false), and the engine's `maxPayload`. */
export function nextSegmentChecks(flow: Flow, checks: DiscardChecks, maxPayload: number): NextSegmentChecks {
  const c = flow.c2s;
  const { verifyChecksum } = checks;
  if (!checks.strict) return { verifyChecksum, minTtl: 0, tsMin: undefined, ackMin: undefined, maxPayload };
  return { verifyChecksum, minTtl: c.ttl ?? 0, tsMin: c.tsVal, ackMin: ackFloor(flow), maxPayload };
}

/** Why the server would discard this client data segment, or undefined if it would keep it. */
export function discardReason(flow: Flow, tcp: TcpPacket, checks: DiscardChecks): string | undefined {
  const c = flow.c2s;
  const s = flow.s2c;
  if (checks.verifyChecksum && !tcpChecksumOk(tcp)) return 'bad_checksum';
  if (!checks.strict) return undefined;
  if (!(tcp.flags & ACK)) return 'no_ack';
  if (tcp.hopByHopCount > 1 || tcp.hopByHopMisplaced === true) return 'ipv6_hbh';
  if (tcp.discardedByReceiver === true) return 'ipv6_ext';
  if (tcp.options.md5 && !c.md5) return 'md5';
  // A copy sent to expire before the server (zapret's fake with a low TTL) has a lower TTL than the handshake.
  if (c.ttl !== undefined && tcp.ttl < c.ttl) return 'ttl';
  if (c.tsVal !== undefined && tcp.options.tsVal !== undefined && seqDiff(tcp.options.tsVal, c.tsVal) < 0) return 'paws';
  // The server's window and ACKs are known only while its packets still reach flowgate (not
  // once a flow is inspected request by request: then a large upload would look out of window).
  if (checks.serverObserved && s.lastAck !== undefined) {
    const end = seqAdd(tcp.seq, tcp.payload.length);
    if (seqDiff(tcp.seq, seqAdd(s.lastAck, Math.max(s.maxWindow, MIN_WINDOW))) >= 0) return 'out_of_window';
    if (seqDiff(end, seqAdd(s.lastAck, -Math.max(c.maxWindow, MIN_WINDOW) >>> 0)) < 0) return 'out_of_window';
  }
  const floor = ackFloor(flow);
  if (floor !== undefined && seqDiff(tcp.ack, floor) < 0) return 'bad_ack';
  // An ACK of data the server never sent.
  if (checks.serverObserved && s.sndNxt !== undefined && seqDiff(tcp.ack, s.sndNxt) > 0) return 'bad_ack';
  return undefined;
}
