/**
 * The flow handle: one TCP connection as flowgate sees it. The same object is passed to every
 * callback and event of the connection, from its first packet to its completion; it is never null.
 *
 * Lifecycle (numbered as the engine walks it):
 *  1. created by the first packet of an unknown connection (a SYN, or data when the start was missed);
 *  2. handshake: SYN, SYN-ACK and ACK pass at once and are not held;
 *  3. inspecting: client data is reassembled and held until the analyzer has a complete unit
 *     (a ClientHello, a request head) and the policy has answered; this may repeat (one cycle per
 *     HTTP request);
 *  4. decided: allowed flows are marked so the kernel stops queueing them (or only their requests),
 *     blocked flows are dropped or reset;
 *  5. completed exactly once: FIN/RST seen both ways, idle timeout, eviction, bypass or shutdown.
 */
import type { StreamReassembler } from '../reassembly/stream.js';
import { FlowgateError } from '../errors.js';
import { Direction } from './direction.js';
import { keyAddr, keyPort } from './key.js';

/** What a paused flow can be resumed with (the filter API): a final verdict, more data, or pass N more bytes. */
export type ResumeVerdict = 'allow' | 'block' | 'needMore' | { pass: number };

/** TCP Fast Open data in the SYN: `end` is one past it; `confirmed` once the SYN-ACK was seen. */
export interface FastOpen {
  end: number;
  confirmed: boolean;
}

/** Where a flow stands in its lifecycle. */
export type FlowPhase = 'handshake' | 'inspecting' | 'bypassed' | 'blocked' | 'closed';

/** TCP state of the connection, coarse: enough to pick an idle timeout. */
export type TcpState = 'syn' | 'established' | 'closing';

/** Per-direction TCP bookkeeping. */
export interface DirectionState {
  /** Initial sequence number (the SYN's), when seen. */
  isn?: number;
  /** One past the highest sequence number sent in this direction. */
  sndNxt?: number;
  /** Highest acknowledgement number sent in this direction. */
  lastAck?: number;
  /** Window scale shift announced in this direction's SYN (0 when absent). */
  wscale: number;
  /** Last advertised window, scaled. */
  window: number;
  /** Largest window advertised so far, scaled. */
  maxWindow: number;
  /** Last RFC 7323 timestamp value sent, for PAWS. */
  tsVal?: number;
  /** TTL / hop limit of this direction's first packet. */
  ttl?: number;
  /** The SYN carried an RFC 2385 MD5 option (the connection really uses it). */
  md5?: boolean;
  finSeen: boolean;
  packets: number;
  bytes: number;
}

/** Counters carried by the flow handle and reported at completion. */
export interface FlowCounters {
  packetsIn: number;
  packetsOut: number;
  bytesIn: number;
  bytesOut: number;
  /** Packets that were held at some point. */
  heldPackets: number;
  /** Total milliseconds packets of this flow spent held (sum over pause cycles). */
  heldMs: number;
  decisions: number;
}

/** A packet waiting for its flow's decision. */
export interface HeldPacket {
  id: number;
  mark: number;
  /** Stream offset one past the packet's last payload byte (client direction). */
  endOffset: number;
  /** Sequence number of the first payload byte. */
  seq: number;
  bytes: number;
  heldAt: number;
}

/**
 * A held packet as the engine stores it: the packet id, mark and sequence number (unsigned 32-bit
 * numbers) are kept as signed 32-bit integers, which V8 keeps in the object (an unsigned one of
 * 2^31 or more costs a 16-byte box).
 */
export class HeldEntry implements HeldPacket {
  private readonly id_: number;
  private readonly mark_: number;
  private readonly seq_: number;

  constructor(id: number, mark: number, readonly endOffset: number, seq: number,
    readonly bytes: number, readonly heldAt: number) {
    this.id_ = id | 0;
    this.mark_ = mark | 0;
    this.seq_ = seq | 0;
  }

  get id(): number {
    return this.id_ >>> 0;
  }

  get mark(): number {
    return this.mark_ >>> 0;
  }

  get seq(): number {
    return this.seq_ >>> 0;
  }
}

let nextFlowNumber = 1;

/** Bits of Flow.flags. FLAG_CLIENT_LOW: the client is the endpoint the key names first. */
const FLAG_CLIENT_LOW = 1, FLAG_MIDSTREAM = 2, FLAG_BYPASS_PENDING = 4, TCP_SHIFT = 3, TCP_MASK = 3 << TCP_SHIFT;
const TCP_STATES: readonly TcpState[] = ['syn', 'established', 'closing'];
const PHASE_SHIFT = 5, PHASE_MASK = 7 << PHASE_SHIFT;
/** Flow.flags bits 8-10: the index of the flow's app in APPS (APP_OTHER: a name of an embedder's analyzer, kept in `rare`). */
const APP_SHIFT = 8, APP_MASK = 7 << APP_SHIFT;
type App = 'tls' | 'http' | 'unknown';
const APPS: readonly (App | undefined)[] = [undefined, 'tls', 'http', 'unknown'];
const APP_OTHER = APPS.length;
/** Flow.flags bit 11: the engine armed the flow's first hello with the kernel queue's binding (see helloArmed). */
const FLAG_HELLO_ARMED = 1 << 11;
/** Flow.flags bit 12: the client sent an RST or a FIN (see clientClosed). */
const FLAG_CLIENT_CLOSED = 1 << 12;
/** Flow.flags from this bit up: the index of the flow's id prefix in ID_PREFIXES. */
const PREFIX_SHIFT = 13;
/**
 * The id prefixes in use (one per engine, '' first), so a flow keeps a small index in its flags
 * rather than a field of its own (8 bytes a flow).
 */
const ID_PREFIXES: string[] = [''];
const prefixIndex = new Map<string, number>([['', 0]]);

function internPrefix(prefix: string): number {
  let i = prefixIndex.get(prefix);
  if (i === undefined) {
    i = ID_PREFIXES.push(prefix) - 1;
    prefixIndex.set(prefix, i);
  }
  return i;
}
/** Index 0 is the initial phase. */
const PHASES: readonly FlowPhase[] = ['handshake', 'inspecting', 'bypassed', 'blocked', 'closed'];

/** One TCP connection. Fields are read-only for embedders; the engine owns them. */
export class Flow {
  /** The number in the id (the engine's id prefix is an index in the flags): the id string is made when asked for. */
  private readonly idNumber: number;
  /**
   * The flow table's key, which holds both endpoints' addresses and ports: the flow reads them
   * back from it when asked (copies cost 56 bytes a flow, and the address texts are seldom needed).
   */
  readonly key: string;
  /**
   * When the flow was created, in whole milliseconds of the engine's clock (rounded down): a
   * small integer is kept in the object, where the clock's fractional time cost a 16-byte box.
   */
  readonly createdAt: number;
  /** When the flow's last packet was seen, on the engine's clock. */
  lastSeen: number;
  /** client side, tcp, midstream, bypassPending and phase in one integer (FLAG_* bits, states in *_MASK). */
  private flags = 0;
  /**
   * What is rarely set (`tfo`, `resumer`, `userData`, an app name outside APPS): one field for
   * all, made when one is first set (each field of its own cost 8 bytes a flow).
   */
  private rare: RareFlowState | undefined = undefined;
  /** Client-to-server byte stream, once data flows. */
  stream?: StreamReassembler;
  /**
   * The packets held, in arrival order: none, the one packet as is (an array of one cost 56 bytes
   * more, and a flow waiting for the rest of its hello mostly holds one), or an array of two or
   * more. Read through heldCount and heldPacket; changed only by the methods below.
   */
  private heldSlot: HeldPacket | HeldPacket[] | undefined = undefined;
  /**
   * The counters kept flat (a counters object per flow cost 80 bytes): packets and bytes are the
   * directions' (c2s is out, s2c in), these three the flow's. `counters` reads them all.
   */
  heldPackets = 0;
  heldMs = 0;
  decisions = 0;
  /** Per-direction TCP state; their packets and bytes are the counters' (packetsOut and bytesOut for c2s). */
  readonly c2s: DirectionState = new Direction();
  readonly s2c: DirectionState = new Direction();
  /** The engine's inspection state while the flow is under inspection; not for embedders. */
  inspection?: unknown;

  /** @param clientLow the client is the endpoint `key` names first (see srcIsLow). */
  constructor(key: string, clientLow: boolean, now: number, idPrefix = '') {
    this.idNumber = nextFlowNumber++;
    this.key = key;
    this.flags = (clientLow ? FLAG_CLIENT_LOW : 0) | (internPrefix(idPrefix) << PREFIX_SHIFT);
    this.createdAt = Math.floor(now);
    this.lastSeen = now;
  }

  /** The rarely set state, made on first use. */
  private get rareState(): RareFlowState {
    return (this.rare ??= { tfo: undefined, resumer: undefined, userData: undefined, app: undefined });
  }

  /** Free for embedders to attach their own state. */
  get userData(): unknown {
    return this.rare?.userData;
  }

  set userData(v: unknown) {
    if (this.rare !== undefined || v !== undefined) this.rareState.userData = v;
  }

  /** The application protocol found in the client stream (an embedder's analyzer may name others). */
  get app(): App | undefined {
    const i = (this.flags & APP_MASK) >>> APP_SHIFT;
    return i === APP_OTHER ? this.rare!.app : APPS[i];
  }

  set app(v: App | undefined) {
    let i = APPS.indexOf(v);
    if (i < 0) {
      i = APP_OTHER;
      this.rareState.app = v;
    }
    this.flags = (this.flags & ~APP_MASK) | (i << APP_SHIFT);
  }

  /** The SYN carried data (TCP Fast Open): `end` is one past it; `confirmed` once the SYN-ACK was seen. */
  get tfo(): FastOpen | undefined {
    return this.rare?.tfo;
  }

  set tfo(v: FastOpen | undefined) {
    if (this.rare !== undefined || v !== undefined) this.rareState.tfo = v;
  }

  /** Set while an embedder's handler has paused the flow; `resume` hands it the verdict. */
  get resumer(): ((verdict: ResumeVerdict) => void) | undefined {
    return this.rare?.resumer;
  }

  set resumer(v: ((verdict: ResumeVerdict) => void) | undefined) {
    if (this.rare !== undefined || v !== undefined) this.rareState.resumer = v;
  }

  /** Packets held right now. */
  get heldCount(): number {
    const h = this.heldSlot;
    return h === undefined ? 0 : Array.isArray(h) ? h.length : 1;
  }

  /** Payload bytes held right now (summed when asked: at most max_held_packets_per_flow packets). */
  get heldBytes(): number {
    let n = 0;
    for (let i = 0; i < this.heldCount; i++) n += this.heldPacket(i).bytes;
    return n;
  }

  /** The `i`th packet held, oldest first (`i` below heldCount). */
  heldPacket(i: number): HeldPacket {
    const h = this.heldSlot!;
    return Array.isArray(h) ? h[i]! : h;
  }

  /** The packets held, oldest first (a copy). */
  get held(): HeldPacket[] {
    const h = this.heldSlot;
    return h === undefined ? [] : Array.isArray(h) ? h.slice() : [h];
  }

  /** Holds one more packet (the engine's bookkeeping of bytes and counters is its own). */
  addHeld(entry: HeldPacket): void {
    const h = this.heldSlot;
    if (h === undefined) this.heldSlot = entry;
    else if (Array.isArray(h)) h.push(entry);
    else this.heldSlot = [h, entry];
  }

  /** Keeps only the held packets `keep` answers true for, in order. */
  keepHeld(keep: (h: HeldPacket) => boolean): void {
    const h = this.heldSlot;
    if (h === undefined) return;
    if (!Array.isArray(h)) {
      if (!keep(h)) this.heldSlot = undefined;
      return;
    }
    let n = 0;
    for (const x of h) if (keep(x)) n++;
    if (n === h.length) return;
    // Sized to what it keeps (a filtered array reserves 17 slots, per waiting flow).
    const kept = new Array<HeldPacket>(n);
    let k = 0;
    for (const x of h) if (keep(x)) kept[k++] = x;
    this.heldSlot = n === 0 ? undefined : n === 1 ? kept[0] : kept;
  }

  /** Takes every held packet out, oldest first: the flow holds none after. */
  takeHeld(): HeldPacket[] {
    const h = this.heldSlot;
    this.heldSlot = undefined;
    return h === undefined ? [] : Array.isArray(h) ? h : [h];
  }

  /** The flow's counters, as they stand when read (a copy: the engine counts in the flow). */
  get counters(): FlowCounters {
    return {
      packetsIn: this.s2c.packets, packetsOut: this.c2s.packets, bytesIn: this.s2c.bytes, bytesOut: this.c2s.bytes,
      heldPackets: this.heldPackets, heldMs: this.heldMs, decisions: this.decisions,
    };
  }

  /** The client is the endpoint the key names first. */
  private get clientLow(): boolean {
    return (this.flags & FLAG_CLIENT_LOW) !== 0;
  }

  /** The client's address text (as a packet's `src`), made from the key when asked. */
  get clientAddr(): string {
    return keyAddr(this.key, this.clientLow);
  }

  /** The server's address text, made from the key when asked. */
  get serverAddr(): string {
    return keyAddr(this.key, !this.clientLow);
  }

  get clientPort(): number {
    return keyPort(this.key, this.clientLow);
  }

  get serverPort(): number {
    return keyPort(this.key, !this.clientLow);
  }

  /** Short id, unique in this process ("f1a2"). */
  get id(): string {
    return `f${ID_PREFIXES[this.flags >>> PREFIX_SHIFT]!}${this.idNumber.toString(16)}`;
  }

  get family(): 4 | 6 {
    return this.key.length === 6 ? 4 : 6;
  }

  /** Where the flow stands in its lifecycle. */
  get phase(): FlowPhase {
    return PHASES[(this.flags & PHASE_MASK) >> PHASE_SHIFT]!;
  }

  set phase(v: FlowPhase) {
    const i = PHASES.indexOf(v);
    if (i < 0) throw new TypeError(`not a flow phase: ${String(v)}`);
    this.flags = (this.flags & ~PHASE_MASK) | (i << PHASE_SHIFT);
  }

  /** TCP state of the connection. */
  get tcp(): TcpState {
    return TCP_STATES[(this.flags & TCP_MASK) >> TCP_SHIFT]!;
  }

  set tcp(v: TcpState) {
    this.flags = (this.flags & ~TCP_MASK) | (TCP_STATES.indexOf(v) << TCP_SHIFT);
  }

  /** True when the connection's start was not seen. */
  get midstream(): boolean {
    return (this.flags & FLAG_MIDSTREAM) !== 0;
  }

  set midstream(v: boolean) {
    this.flags = v ? this.flags | FLAG_MIDSTREAM : this.flags & ~FLAG_MIDSTREAM;
  }

  /** Allowed for good, but the mark waits for the SYN-ACK to confirm SYN data. */
  get bypassPending(): boolean {
    return (this.flags & FLAG_BYPASS_PENDING) !== 0;
  }

  set bypassPending(v: boolean) {
    this.flags = v ? this.flags | FLAG_BYPASS_PENDING : this.flags & ~FLAG_BYPASS_PENDING;
  }

  /** The engine's: the binding may let the flow's first ClientHello on itself (VerdictSink.expectHello). */
  get helloArmed(): boolean {
    return (this.flags & FLAG_HELLO_ARMED) !== 0;
  }

  set helloArmed(v: boolean) {
    this.flags = v ? this.flags | FLAG_HELLO_ARMED : this.flags & ~FLAG_HELLO_ARMED;
  }

  /**
   * The client sent an RST or a FIN. The server may never have had it (a TTL that expires past the
   * gateway), but conntrack did: it closes its entry, and once that times out it picks the
   * connection up again from the next packet, liberally (an ACK of anything passes). So conntrack no
   * longer vouches for the client's ACKs, on which the end of a hello's inspection rests (answersHello).
   */
  get clientClosed(): boolean {
    return (this.flags & FLAG_CLIENT_CLOSED) !== 0;
  }

  set clientClosed(v: boolean) {
    this.flags = v ? this.flags | FLAG_CLIENT_CLOSED : this.flags & ~FLAG_CLIENT_CLOSED;
  }

  /** The endpoint that opened the connection (or the first data sender when the start was missed). */
  get client(): { addr: string; port: number } {
    return { addr: this.clientAddr, port: this.clientPort };
  }

  /** The other endpoint. */
  get server(): { addr: string; port: number } {
    return { addr: this.serverAddr, port: this.serverPort };
  }

  /**
   * Resumes a flow paused by a filter handler, from any asynchronous context. Throws
   * ERR_NOT_PAUSED if the flow is not waiting (never paused, or already resumed) and
   * ERR_FLOW_COMPLETE once it has completed; never crashes the daemon.
   */
  resume(verdict: ResumeVerdict): void {
    if (this.phase === 'closed' || this.phase === 'bypassed' || this.phase === 'blocked') {
      throw new FlowgateError('ERR_FLOW_COMPLETE', `flow ${this.id} has completed (${this.phase}); it cannot be resumed`);
    }
    const resumer = this.resumer;
    if (resumer === undefined) throw new FlowgateError('ERR_NOT_PAUSED', `flow ${this.id} is not paused`);
    this.resumer = undefined;
    resumer(verdict);
  }

  /** True when the packet with this source is client-to-server. */
  isFromClient(src: string, sport: number): boolean {
    return sport === this.clientPort && src === this.clientAddr;
  }

  /**
   * True when a packet of this flow whose source is the lower endpoint (`srcIsLow(tcp)`) is
   * client-to-server: what isFromClient answers, without the address text.
   */
  isClientSide(srcLow: boolean): boolean {
    return srcLow === this.clientLow;
  }
}

/** The flow state that is rarely set, kept apart (see Flow.rare). */
interface RareFlowState {
  tfo: FastOpen | undefined;
  resumer: ((verdict: ResumeVerdict) => void) | undefined;
  userData: unknown;
  /** The app name when it is not one of APPS. */
  app: App | undefined;
}
