/**
 * The engine: every packet from a source (the kernel queue or a capture) goes through decode,
 * the flow table, reassembly, the analyzer and the policy, and leaves with exactly one verdict,
 * now or when its flow's decision settles. `run` and `replay` differ only in the source and sink.
 */
import { decodeIp } from '../packet/decode.js';
import { discardReason, nextSegmentChecks, serverPosition, noteClose, trackClient, trackServer, type NextSegmentChecks } from '../flow/tcp.js';
import { decisionEvent, flowEndEvent } from './events.js';
import { ACK, FIN, RST, SYN, URG, type TcpPacket } from '../packet/types.js';
import { Flow, HeldEntry, type HeldPacket } from '../flow/flow.js';
import { FlowTable } from '../flow/table.js';
import { srcIsLow } from '../flow/key.js';
import { StreamReassembler, type StreamLimits } from '../reassembly/stream.js';
import { seqAdd, seqDiff } from '../reassembly/seq.js';
import type { AnalyzerEvent, StreamAnalyzer, UnitInfo } from '../protocols/analyzer.js';
import { analyzerFactory, withFingerprints } from '../protocols/dispatch.js';
import { NF_ACCEPT, NF_DROP, NF_REPEAT, withMark, type HelloArm, type VerdictSink, type VerdictValue } from '../verdict/sink.js';
import { buildBlockPage, buildResetToServer, buildTlsAlert } from '../verdict/reset.js';
import { EngineStats } from './stats.js';
import { engineOptions, type EngineOptions } from './options.js';
import {
  realScheduler, type DecideFn, type Decision, type DecisionInfo, type FlowEndEvent,
  type FlowgateEvent, type Scheduler, type Verdict,
} from './types.js';

/** NFQA_SKB_INFO bit: the checksum is not computed yet (locally generated or offloaded), so it cannot be checked. */
export const SKB_CSUM_NOTREADY = 1;

/** One packet as a source hands it over. `data` may be a view over a batch: the engine copies what it keeps. */
export interface RawPacket {
  id: number;
  mark: number;
  /** The IP packet. */
  data: Uint8Array;
  /** NFQA_SKB_INFO bits (1 = checksum not ready yet: do not verify). */
  skbInfo: number;
  /** The sink armed the flow's hello on this SYN itself (VerdictSink.armHellosOnSyn). */
  synArmed?: boolean;
  /**
   * The rules' copy (headers only) of the server packet, a ServerHello, on which they ended the
   * flow's inspection (EngineInit.kernelAnswers); it takes no verdict of the engine's own.
   */
  answered?: boolean;
}

/** Callbacks for embedders; every one receives the flow handle, completion included. */
export interface EngineHooks {
  /** A flow was created. Answering `allow` or `block` decides it at once (its SYN carries the mark). */
  newFlow?(flow: Flow): 'allow' | 'block' | 'inspect' | void;
  /** A flow left the table; called exactly once per flow. */
  complete?(flow: Flow, why: FlowEndEvent['why']): void;
}

/** How to build an engine. */
export interface EngineInit {
  decide: DecideFn;
  sink: VerdictSink;
  options?: Partial<EngineOptions>;
  /** Monotonic milliseconds. */
  now?: () => number;
  /** ISO time for events (read when the event happens; default: the system clock). */
  wallClock?: () => string;
  scheduler?: Scheduler;
  onEvent?: (event: FlowgateEvent) => void;
  /**
   * Build events and hand them to onEvent on a microtask after the call that caused them (in
   * order; `flushEvents()` hands them over at once), rather than inside it: a decision's event
   * then costs its packets nothing, since a kernel queue sends the batch's verdicts when the
   * batch callback returns, before microtasks run. `flowgate run` sets it. Default false.
   */
  deferEvents?: boolean;
  /**
   * Arm each new flow's first ClientHello with the sink (VerdictSink.expectHello) on its SYN, so
   * that the sink can let a plain hello with a name the policy allows on at once. Only for a
   * caller that tells the sink which names the policy allows, whatever else a flow is
   * (`flowgate run` does: NfQueue.allowHelloName after Policy.allowsPlainHello). Default false.
   */
  bindingHellos?: boolean;
  /**
   * With bindingHellos: the sink's log group receives the rules' copies of a server's ServerHello
   * (RawPacket.answered), so the sink may let plain hellos on with `marks.answer` and the rules
   * end such a flow's inspection on the server's answer (src/cli/rules.ts answerRules). `flowgate
   * run` sets it with handshake_log. Default false.
   */
  kernelAnswers?: boolean;
  /** Which events to build for onEvent: `decisions` skips the flow_end events (replay reports none). Default `all`. */
  events?: 'all' | 'decisions';
  hooks?: EngineHooks;
  /** The analyzer of each flow's client stream (default: TLS/HTTP/unknown detection). */
  analyzer?: (flow: Flow) => StreamAnalyzer;
}

interface Unit {
  start: number;
  info: UnitInfo;
  opaque: boolean;
  state: 'waiting' | 'deciding' | 'allowed';
  /** A verdict forced without asking the policy (ambiguous, invalid). */
  forced?: Decision;
  /** Not a decision of its own (the end of inspection): no event, not counted. */
  silent?: boolean;
}

interface Inspection {
  analyzer: StreamAnalyzer;
  units: Unit[];
  timer?: unknown;
  decidingSince: number;
  /**
   * INSP_ADVANCING, INSP_BUSY (counted in `busyFlows`: holds packets or waits for an
   * asynchronous decision) and INSP_ARMED (see armAfterHello), and from TOKEN_SHIFT up the token
   * of the decision in flight, to ignore late settles (see newToken: one field for them all, an
   * inspection per flow).
   */
  bits: number;
  /**
   * A copy of the last bytes released from the stream after a decision (at most the largest
   * unit, see releaseTo), from stream offset `from`: a later copy of that range is compared with
   * it (G3). `len` bytes of `bytes` are valid. Made at the first release: until then the three
   * fields cost nothing.
   */
  released?: { bytes: Uint8Array; from: number; len: number };
  /**
   * After a ClientHello: the server's position when it was read (serverPosition), which a client
   * segment must acknowledge past to show the server answered it (answersHello); NO_HELLO before
   * any, ANSWER_UNKNOWN when flowgate knew no position then.
   */
  answerAbove: number;
  /**
   * The busy flows in the order they became busy, linked through their inspections (a Set of
   * them cost 33 bytes a flow): the previous and next busy flow.
   */
  busyPrev: Flow | undefined;
  busyNext: Flow | undefined;
}

/**
 * Longest packet the binding may allow after a hello (armAfterHello): a second flight is well
 * below it, and the engine's total held-bytes limit, which other flows move meanwhile, keeps this
 * much headroom before arming.
 */
const AFTER_HELLO_MAX_PAYLOAD = 16384;

/** Inspection.answerAbove before any ClientHello, and after one read with no server position known. */
const NO_HELLO = -1;
const ANSWER_UNKNOWN = -2;

/** Bits of Inspection.bits; the token from TOKEN_SHIFT up. */
const INSP_ADVANCING = 1, INSP_BUSY = 2, INSP_ARMED = 4, TOKEN_SHIFT = 3;

/**
 * Starts a new decision token for the inspection: settles carrying an earlier one are ignored.
 * Tokens count per inspection (a settle for another inspection of the flow is told apart by the
 * inspection itself), so they stay small: 2^28 of them would take that many decisions on one flow.
 */
function newToken(insp: Inspection): number {
  insp.bits += 1 << TOKEN_SHIFT;
  return insp.bits >>> TOKEN_SHIFT;
}

/** The token of the inspection's decision in flight. */
function currentToken(insp: Inspection): number {
  return insp.bits >>> TOKEN_SHIFT;
}

/**
 * The units of an inspection with none: shared (an empty array per flow cost 32 bytes, and the
 * first push on one reserves 17 slots). {@link pushUnit} replaces it.
 */
const EMPTY_BYTES = new Uint8Array(0);
const NO_UNITS: Unit[] = Object.freeze([]) as unknown as Unit[];

/** Appends a unit; the first one gets an array of one. */
function pushUnit(insp: Inspection, unit: Unit): void {
  if (insp.units.length === 0) insp.units = [unit];
  else insp.units.push(unit);
}

/**
 * The flows under inspection, Map-like; each one's state hangs on the flow itself, since a Map
 * entry per flow costs more than the field.
 */
class Inspections {
  size = 0;

  get(flow: Flow): Inspection | undefined {
    return flow.inspection as Inspection | undefined;
  }

  has(flow: Flow): boolean {
    return flow.inspection !== undefined;
  }

  set(flow: Flow, insp: Inspection): void {
    if (flow.inspection === undefined) this.size++;
    flow.inspection = insp;
  }

  delete(flow: Flow): void {
    if (flow.inspection === undefined) return;
    this.size--;
    flow.inspection = undefined;
  }
}

/** The packet path. One instance per queue. */
export class Engine {
  readonly options: EngineOptions;
  readonly stats = new EngineStats();
  readonly table: FlowTable;
  private decide: DecideFn;
  private readonly sink: VerdictSink;
  private readonly now: () => number;
  /** The embedder's clock for events, or undefined for the system clock (read as a number, formatted when the event is built). */
  private readonly wallClock: (() => string) | undefined;
  private readonly deferEvents: boolean;
  private readonly bindingHellos: boolean;
  /** marks.answer with kernelAnswers, else 0: the bit the sink may add to a hello (theHelloArm), which the engine's verdicts clear (repeat). */
  private readonly answerBit: number;
  /** What armHello hands the sink with every flow (made on first use). */
  private helloArm: HelloArm | undefined = undefined;
  /** The sink arms new flows on their SYN itself (VerdictSink.armHellosOnSyn); see syncSynArming. */
  private synArming = false;
  /** The key of the packet being handled, if the sink armed its flow on it and armHello has not taken that arm yet. */
  private sinkArmedKey: string | undefined = undefined;
  /** Events to build and hand over on the next microtask (deferEvents), in order. */
  private deferred: Array<() => FlowgateEvent> = [];
  private readonly scheduler: Scheduler;
  private readonly onEvent: (event: FlowgateEvent) => void;
  private readonly flowEndEvents: boolean;
  private readonly hooks: EngineHooks;
  private readonly makeAnalyzer: (flow: Flow) => StreamAnalyzer;
  private readonly inspections = new Inspections();
  /** The limits of every client stream: one object for all (see StreamReassembler's `limits`). */
  private readonly streamLimits: StreamLimits;
  private heldBytesTotal = 0;
  /** Flows holding packets or waiting for an asynchronous decision: what max_inspecting_flows bounds. */
  private busyFlows = 0;
  /** The flows counted in busyFlows, oldest first, for the held-message deadline in tick() (see Inspection.busyNext). */
  private busyHead: Flow | undefined = undefined;
  private busyTail: Flow | undefined = undefined;
  /** The packet being handled and whether it was given a verdict or held. */
  private current = -1;
  private currentTaken = false;

  constructor(init: EngineInit) {
    this.options = engineOptions(init.options);
    this.decide = init.decide;
    this.sink = init.sink;
    this.now = init.now ?? (() => performance.now());
    this.wallClock = init.wallClock;
    this.deferEvents = init.deferEvents ?? false;
    this.bindingHellos = init.bindingHellos ?? false;
    this.answerBit = init.kernelAnswers === true ? ((this.options.marks.answer ?? 0) & ~this.options.marks.mask) >>> 0 : 0;
    this.scheduler = init.scheduler ?? realScheduler;
    this.onEvent = init.onEvent ?? (() => {});
    this.flowEndEvents = init.events !== 'decisions';
    this.hooks = init.hooks ?? {};
    this.makeAnalyzer = init.analyzer ?? analyzerFactory(this.options.limits);
    this.table = new FlowTable(this.options.limits.maxFlows);
    const l = this.options.limits;
    this.streamLimits = Object.freeze({
      maxOutOfOrderBytes: l.maxOutOfOrderBytesPerFlow,
      maxRetainedBytes: Math.max(l.maxHelloBytes, l.maxRequestHeadBytes) * 2,
    });
  }

  /** Swaps the policy; decisions already in flight keep the one they started with. */
  setPolicy(decide: DecideFn): void {
    this.decide = decide;
  }

  /** Packets currently held, over all flows. */
  get heldPackets(): number {
    return this.stats.held;
  }

  /** Payload bytes currently held, over all flows. */
  get heldBytes(): number {
    return this.heldBytesTotal;
  }

  /** Flows with a unit being decided or data being gathered. */
  get inspectingFlows(): number {
    return this.inspections.size;
  }

  /** What a flow waits for, for `flowgate flows`. */
  waitingFor(flow: Flow): string {
    const insp = this.inspections.get(flow);
    if (insp === undefined) return flow.phase;
    const deciding = insp.units.find((u) => u.state === 'deciding');
    if (deciding !== undefined) return `decision (${deciding.info.sni ?? deciding.info.host ?? deciding.info.app})`;
    if (flow.heldCount > 0) return 'more data';
    return 'next request';
  }

  /** Handles one packet: gives it a verdict now, or holds it. Never throws. */
  handle(pkt: RawPacket): void {
    this.stats.received++;
    this.current = pkt.id;
    this.currentTaken = false;
    try {
      if (this.bindingHellos) this.syncSynArming();
      this.route(pkt);
    } catch (err) {
      // A bug must not leave a packet without a verdict: count it and settle the packet per
      // on_error, so the failure shows in metrics rather than as a stalled connection.
      this.stats.count('internal_error');
      this.stats.lastInternalError = err instanceof Error ? err.stack ?? err.message : String(err);
      if (!this.currentTaken) this.verdict(pkt, this.options.onError === 'allow' ? NF_ACCEPT : NF_DROP);
    } finally {
      // A SYN the sink armed that armHello did not take (a flow decided at once, a SYN from the
      // server's side, a flow past its handshake...): take the sink's arm back.
      if (this.sinkArmedKey !== undefined) {
        this.sink.forgetHello?.(this.sinkArmedKey);
        this.sinkArmedKey = undefined;
      }
    }
  }

  private route(pkt: RawPacket): void {
    const decoded = decodeIp(pkt.data);
    if (decoded.kind !== 'tcp') {
      // Fragments never reach the queue while conntrack defragments; anything else here is not ours to judge.
      this.stats.count(decoded.kind === 'invalid' ? 'undecodable' : decoded.kind === 'fragment' ? 'fragment' : 'not_tcp');
      this.verdict(pkt, decoded.kind === 'other' ? NF_ACCEPT : NF_DROP);
      return;
    }
    const tcp = decoded.packet;
    const now = this.now();
    const low = srcIsLow(tcp);
    const key = this.table.keyOf(tcp, low);
    if (pkt.synArmed === true) this.sinkArmedKey = key;
    let flow = this.table.get(key);
    if (pkt.answered === true) {
      this.verdict(pkt, NF_ACCEPT); // a copy: the sink gives it none
      this.kernelAnswered(flow, low);
      return;
    }
    let carry: { ttl: number | undefined; tsVal: number | undefined } | undefined;
    const freshSyn = (tcp.flags & (SYN | ACK)) === SYN;
    if (flow !== undefined && freshSyn && flow.c2s.isn !== undefined && tcp.seq !== flow.c2s.isn
      && flow.isClientSide(low)) {
      // A new connection on the same four-tuple (the client reused its port): the old flow is over.
      // One that never got past its handshake may still be the connection the server answers (it
      // retransmits its SYN-ACK to the old ISN): its floors carry over (see clientPacket).
      this.stats.count('port_reuse');
      if (flow.phase === 'handshake') carry = { ttl: flow.c2s.ttl, tsVal: flow.c2s.tsVal };
      this.completeFlow(flow, 'closed', 'drop');
      flow = undefined;
    }
    if (flow === undefined) {
      // A SYN opens a new connection even where a decided one just ended on the same ports.
      const tomb = freshSyn ? undefined : this.table.tombstone(key);
      if (tomb !== undefined) {
        this.stats.count('straggler');
        const m = this.options.marks;
        if (tomb === 'allow') this.repeatPacket(pkt, m.allow);
        else if (this.options.blockAction === 'drop') this.verdict(pkt, NF_DROP);
        else this.repeatPacket(pkt, m.block); // the rules reset the sender
        return;
      }
      flow = this.createFlow(tcp, now, key, low);
      if (flow === undefined) {
        // Servers put no data in a SYN-ACK: one opening a connection is a client's fake, which a
        // server in LISTEN answers with an RST (EVASION.md 14). It must not pass, nor name the client.
        const fake = (tcp.flags & (SYN | ACK)) === (SYN | ACK) && tcp.payload.length > 0;
        if (fake) this.stats.count('evasion_syn_data');
        this.verdict(pkt, fake ? NF_DROP : NF_ACCEPT);
        return;
      }
      if (carry !== undefined) {
        flow.c2s.ttl = carry.ttl;
        flow.c2s.tsVal = carry.tsVal;
      }
      if (this.newFlowVerdict(flow, pkt)) return;
    }
    flow.lastSeen = now;
    this.table.touch(flow);
    // The binding disarms a flow at its first packet after expectAfterHello, whatever it did with
    // it; taken back here too, in case the arm has not reached the binding yet or the binding read
    // this packet before it did (the engine has now moved past the point it was armed for).
    const insp = flow.inspection as Inspection | undefined;
    if (insp !== undefined) this.disarm(flow, insp, true);
    const fromClient = flow.isClientSide(low);
    // Likewise for expectHello, but for the SYN-ACK answering the SYN, which the sink waits for.
    if (flow.helloArmed) {
      if (!fromClient && (tcp.flags & (SYN | ACK | FIN | RST | URG)) === (SYN | ACK) && tcp.payload.length === 0
        && tcp.ack === seqAdd(flow.c2s.isn!, 1) && flow.s2c.isn === undefined) {
        this.sink.helloAnswered?.(flow.key, seqAdd(tcp.seq, 1));
      } else {
        this.disarmHello(flow, true);
      }
    }
    // The directions' packets and bytes are the flow's counters (see Flow.counters).
    if (fromClient) {
      flow.c2s.packets++;
      flow.c2s.bytes += tcp.payload.length;
    } else {
      flow.s2c.packets++;
      flow.s2c.bytes += tcp.payload.length;
    }

    if (flow.phase === 'blocked') {
      this.verdict(pkt, NF_DROP);
      return;
    }
    if (flow.phase === 'bypassed') {
      this.repeatPacket(pkt, this.options.marks.allow);
      return;
    }
    if (flow.bypassPending && flow.tfo?.confirmed === true) {
      // Allowed on data from its SYN, which the server kept: mark the flow now.
      const ins = this.inspections.get(flow);
      if (ins !== undefined) {
        this.repeatPacket(pkt, this.options.marks.allow);
        this.completeFlow(flow, 'bypassed');
        return;
      }
    }
    if (!fromClient) {
      if (trackServer(flow, tcp)) this.settleFastOpen(flow, tcp.ack);
      this.verdict(pkt, NF_ACCEPT);
      return;
    }
    this.clientPacket(flow, pkt, tcp, now);
    this.noteBusy(flow);
  }

  private createFlow(tcp: TcpPacket, now: number, key: string, srcLow: boolean): Flow | undefined {
    const syn = (tcp.flags & (SYN | ACK)) === SYN;
    if (!syn && tcp.payload.length === 0) return undefined; // a bare ACK/FIN/RST of a connection we never knew: not ours
    if (tcp.flags & RST) return undefined;
    // A SYN-ACK opens nothing: its sender is not known to be the server (a client can send one first).
    if ((tcp.flags & (SYN | ACK)) === (SYN | ACK)) return undefined;
    // The SYN sender is the client; otherwise the first data sender.
    const flow = new Flow(key, srcLow, now, this.options.idPrefix);
    if (!syn) {
      flow.midstream = true;
      flow.tcp = 'established';
      this.stats.count('midstream');
    }
    const evicted = this.table.add(flow, (victim) => this.inspections.has(victim));
    if (evicted !== undefined) {
      this.stats.count('evicted');
      this.completeFlow(evicted, 'evicted', this.options.onLimit);
    }
    return flow;
  }

  /** Asks the embedder's newFlow hook; true when it decided the flow outright (the packet got its verdict). */
  private newFlowVerdict(flow: Flow, pkt: RawPacket): boolean {
    const answer = this.hooks.newFlow?.(flow);
    if (answer !== 'allow' && answer !== 'block') return false;
    const m = this.options.marks;
    const decision: Decision = { verdict: answer, reason: 'newFlow' };
    flow.decisions++;
    this.stats.decided(decision, 0);
    const ts = this.stamp();
    this.emit(() => decisionEvent(flow, { app: 'unknown' }, decision, 0, 0, isoTime(ts)));
    this.repeatPacket(pkt, answer === 'allow' ? m.allow : m.block);
    this.completeFlow(flow, answer === 'allow' ? 'bypassed' : 'blocked');
    return true;
  }

  /**
   * The SYN-ACK of a flow whose SYN carried data: if it acknowledges the data, what was
   * inspected is what the server got; if not, the client will send the data again and that
   * copy is what counts, so inspection starts over from the first byte. If it acknowledges part
   * of it (RFC 7413 4.2), the server kept those bytes and the client resends the rest, possibly
   * different: inspection starts over from the kept part.
   */
  private settleFastOpen(flow: Flow, ack: number): void {
    const tfo = flow.tfo!;
    tfo.confirmed = true;
    if (seqDiff(ack, tfo.end) >= 0) {
      this.stats.count('tfo_accepted');
      return;
    }
    const first = seqAdd(flow.c2s.isn!, 1);
    const kept = seqDiff(ack, first);
    // The stream keeps its first bytes until the SYN-ACK (see releaseTo): copy the kept part.
    const old = flow.stream;
    const prefix = kept > 0 && old !== undefined && old.retainedFrom === 0 && old.offset >= kept
      ? old.view(0).slice(0, kept) : undefined;
    this.stats.count(kept > 0 ? 'tfo_partial' : 'tfo_refused');
    this.endInspection(flow);
    // Nothing is held here: a held SYN cannot have been answered.
    flow.stream = undefined;
    flow.bypassPending = false;
    flow.phase = 'handshake';
    if (kept <= 0) return;
    tfo.end = ack;
    this.openStream(flow, first);
    const again = this.inspections.get(flow)!;
    if (prefix === undefined) {
      // Not retained (cannot happen while releaseTo keeps it): what the server kept is unknown.
      this.force(flow, { verdict: this.options.onAmbiguous, reason: 'ambiguous:tfo' }, { app: flow.app ?? 'unknown' });
      return;
    }
    flow.stream!.insert(first, prefix);
    for (const ev of again.analyzer.feed(flow.stream!.view(0), 0)) this.addUnit(flow, again, ev);
    this.advance(flow, again);
    this.noteBusy(flow);
  }

  /** Forgets a flow's inspection, cancelling a decision in flight. */
  private endInspection(flow: Flow): void {
    const insp = this.inspections.get(flow);
    if (insp === undefined) return;
    this.disarm(flow, insp);
    if (insp.timer !== undefined) {
      this.scheduler.clearTimeout(insp.timer);
      insp.timer = undefined;
      this.stats.pausedFlows--;
    }
    if (insp.bits & INSP_BUSY) {
      insp.bits &= ~INSP_BUSY;
      this.busyFlows--;
      this.unlinkBusy(insp);
    }
    this.inspections.delete(flow);
  }

  /** Keeps `busyFlows` current after a flow's packets or decisions changed. */
  private noteBusy(flow: Flow): void {
    const insp = this.inspections.get(flow);
    if (insp === undefined) return;
    const busy = flow.heldCount > 0 || insp.timer !== undefined;
    if (busy === ((insp.bits & INSP_BUSY) !== 0)) return;
    this.busyFlows += busy ? 1 : -1;
    if (busy) {
      insp.bits |= INSP_BUSY;
      insp.busyPrev = this.busyTail;
      insp.busyNext = undefined;
      if (this.busyTail === undefined) this.busyHead = flow;
      else (this.busyTail.inspection as Inspection).busyNext = flow;
      this.busyTail = flow;
    } else {
      insp.bits &= ~INSP_BUSY;
      this.unlinkBusy(insp);
    }
  }

  /** Takes a busy flow's inspection out of the busy list. */
  private unlinkBusy(insp: Inspection): void {
    const prev = insp.busyPrev, next = insp.busyNext;
    if (prev === undefined) this.busyHead = next;
    else (prev.inspection as Inspection).busyNext = next;
    if (next === undefined) this.busyTail = prev;
    else (next.inspection as Inspection).busyPrev = prev;
    insp.busyPrev = undefined;
    insp.busyNext = undefined;
  }

  /** Starts reassembling and inspecting the client stream at `firstSeq`. */
  private openStream(flow: Flow, firstSeq: number): void {
    flow.stream = new StreamReassembler(firstSeq, this.streamLimits);
    this.beginInspection(flow);
  }

  /**
   * Lets the stream forget bytes before `offset`, except data from a SYN the server has not
   * confirmed yet. With `keep`, the bytes let go after a decision are first copied into it
   * (their last max(max_hello_bytes, max_request_head_bytes), the cap), so a later copy of the
   * unit just decided can still be compared; a request body streaming through is not copied.
   * Between a ClientHello and the end of its inspection the copy is not replaced but grows from
   * the hello on: a copy of any of it the server discarded must not shift where flowgate reads
   * next. A hello is kept whole (its packets were all held: at most max_held_bytes_per_flow), the
   * records skipped after it while the copy is within the cap. False when a hello released now
   * could not be kept (the caller applies on_limit).
   */
  private releaseTo(flow: Flow, offset: number, keep?: Inspection): boolean {
    if (flow.tfo !== undefined && !flow.tfo.confirmed) return true;
    const stream = flow.stream;
    if (stream === undefined) return true;
    const from = stream.retainedFrom;
    const to = Math.min(offset, stream.offset);
    const kept = keep === undefined || to <= from || this.keepReleased(stream, keep, from, to);
    stream.release(offset);
    return kept;
  }

  /** releaseTo's copy of stream bytes [from, to) into `keep.released`; false when a hello among them could not be kept. */
  private keepReleased(stream: StreamReassembler, keep: Inspection, from: number, to: number): boolean {
    const l = this.options.limits;
    const cap = Math.max(l.maxHelloBytes, l.maxRequestHeadBytes);
    const helloCap = Math.max(cap, l.maxHeldBytesPerFlow);
    const r = (keep.released ??= { bytes: EMPTY_BYTES, from: 0, len: 0 });
    const handshaking = keep.analyzer.handshaking?.() === true;
    if (r.len > 0 && handshaking) {
      const n = to - r.from;
      const hello = keep.units.some((u) => u.state === 'allowed' && !u.opaque && u.info.app === 'tls');
      const bound = hello ? 2 * helloCap : cap;
      if (r.from + r.len !== from || n > bound) return !hello;
      if (r.bytes.length < n) {
        const grown = new Uint8Array(Math.min(bound, Math.max(n, 2 * r.bytes.length)));
        grown.set(r.bytes.subarray(0, r.len));
        r.bytes = grown;
      }
      r.bytes.set(stream.view(from).subarray(0, to - from), r.len);
      r.len = n;
      return true;
    }
    const start = Math.max(from, to - (handshaking ? helloCap : cap));
    const n = to - start;
    if (r.bytes.length < n) r.bytes = new Uint8Array(Math.max(n, 2048));
    r.bytes.set(stream.view(start).subarray(0, n));
    r.from = start;
    r.len = n;
    return true;
  }

  /** Stream offset of the first byte of `data` (at `start`) that differs from the copy kept by releaseTo, or -1. */
  private releasedConflict(insp: Inspection, start: number, data: Uint8Array): number {
    const r = insp.released;
    if (r === undefined) return -1;
    const kept = r.bytes;
    const lo = Math.max(start, r.from);
    const hi = Math.min(start + data.length, r.from + r.len);
    for (let i = lo; i < hi; i++) if (data[i - start] !== kept[i - r.from]) return i;
    return -1;
  }

  private clientPacket(flow: Flow, pkt: RawPacket, tcp: TcpPacket, now: number): void {
    const c = flow.c2s;
    const len = tcp.payload.length;
    const syn = (tcp.flags & SYN) !== 0;
    if (syn) {
      if (c.isn === undefined) {
        c.isn = tcp.seq;
        c.wscale = tcp.options.wscale ?? 0;
        c.md5 = tcp.options.md5 === true;
      }
      // The server kept one of the client's SYNs, not always the first: a copy sent to expire
      // before it (a low TTL) must not lower the floor fakes are told by, so the floor is the
      // highest TTL of them, and the newest timestamp (PAWS: the server drops older ones), also
      // across a port reuse during the handshake (route).
      if (c.ttl === undefined || tcp.ttl > c.ttl) c.ttl = tcp.ttl;
      const ts = tcp.options.tsVal;
      if (ts !== undefined && (c.tsVal === undefined || seqDiff(ts, c.tsVal) > 0)) c.tsVal = ts;
      // Only the client's first SYN, before any SYN-ACK, can carry real data (TCP Fast Open); a
      // SYN with data later, or a SYN-ACK from the client, is a fake the server discards.
      const fastOpen = (tcp.flags & ACK) === 0 && tcp.seq === c.isn && flow.s2c.isn === undefined;
      if (len === 0 || !fastOpen) {
        if (len > 0) this.stats.count('evasion_syn_data');
        this.verdict(pkt, len === 0 ? NF_ACCEPT : NF_DROP);
        if (len === 0 && this.bindingHellos) this.armHello(flow, tcp);
        return;
      }
      if (flow.stream !== undefined) {
        // A retransmitted SYN with data: redundant while the first is held, needed once it left;
        // never with different bytes.
        const dup = flow.stream.insert(seqAdd(tcp.seq, 1), tcp.payload);
        let stillHeld = false;
        for (let i = 0; i < flow.heldCount; i++) if (flow.heldPacket(i).seq === seqAdd(tcp.seq, 1)) stillHeld = true;
        this.verdict(pkt, dup.kind === 'duplicate' && !stillHeld ? NF_ACCEPT : NF_DROP);
        return;
      }
      // Data in a SYN (TCP Fast Open) is inspected like any stream data, but it is tentative:
      // only the SYN-ACK tells whether the server took it. Until then the flow is not marked
      // (the SYN-ACK must reach us), and if the server refused the data the client sends it
      // again, possibly different, and it is inspected afresh (see trackServer).
      flow.tfo = { end: seqAdd(tcp.seq, 1 + len), confirmed: false };
      this.stats.count('tfo_syn_data');
    }
    // This packet's own ACK is judged as conntrack judged it, before its FIN (answersHello).
    const closedBefore = flow.clientClosed;
    if (tcp.flags & (RST | FIN)) flow.clientClosed = true;
    if (tcp.flags & RST) {
      // An RST carries no stream data the server keeps; a flow it really ends times out as closing.
      this.verdict(pkt, len === 0 ? NF_ACCEPT : NF_DROP);
      flow.tcp = 'closing';
      return;
    }
    if (len === 0 && (!(tcp.flags & FIN) || flow.heldCount === 0)) {
      // Pure ACKs, and a FIN with nothing held in front of it, pass at once.
      trackClient(flow, tcp);
      this.verdict(pkt, NF_ACCEPT);
      noteClose(flow, tcp);
      return;
    }
    if (len > 0 && !syn) {
      const bad = discardReason(flow, tcp, {
        verifyChecksum: this.options.verifyChecksums && (pkt.skbInfo & SKB_CSUM_NOTREADY) === 0,
        strict: this.options.strictTcp,
        // Once a flow is inspected request by request its replies bypass flowgate: their window is unknown.
        serverObserved: flow.decisions === 0,
      });
      if (bad !== undefined) {
        this.stats.count(`evasion_${bad}`);
        this.verdict(pkt, NF_DROP);
        return;
      }
    }
    trackClient(flow, tcp);
    if (flow.stream === undefined) {
      if (c.isn === undefined) flow.midstream = true;
      flow.tcp = 'established';
      this.openStream(flow, c.isn !== undefined ? seqAdd(c.isn, 1) : tcp.seq);
      if (flow.midstream && this.options.midstream !== 'inspect') {
        this.hold(flow, pkt, tcp, now, Infinity);
        this.force(flow, { verdict: this.options.midstream, reason: 'midstream' }, { app: 'unknown' });
        return;
      }
    }
    const inspection = this.inspections.get(flow);
    const stream = flow.stream;
    if (inspection === undefined || stream === undefined) {
      this.verdict(pkt, NF_ACCEPT);
      return;
    }
    // The first data byte of a SYN comes one after its sequence number.
    const dataSeq = syn ? seqAdd(tcp.seq, 1) : tcp.seq;
    const endOffset = stream.offsetOf(seqAdd(dataSeq, len));
    if (len > 0 && (tcp.flags & URG) !== 0) {
      // The server takes the urgent byte out of the stream; rather than guess which one, refuse (EVASION.md 10).
      if (this.hold(flow, pkt, tcp, now, endOffset)) {
        this.force(flow, { verdict: this.options.onAmbiguous, reason: 'ambiguous:urgent' }, { app: flow.app ?? 'unknown' });
      }
      return;
    }
    const before = stream.offset;
    // Bytes the stream no longer keeps are compared with the copy of the last unit released (G3).
    const startOffset = endOffset - len;
    const differs = len > 0 && startOffset < stream.retainedFrom ? this.releasedConflict(inspection, startOffset, tcp.payload) : -1;
    const res = differs >= 0 ? { kind: 'conflict' as const, seq: stream.seqAt(differs) }
      : len > 0 ? stream.insert(dataSeq, tcp.payload) : { kind: 'ok' as const, added: 0, buffered: 0, old: 0 };
    switch (res.kind) {
      case 'conflict':
        this.stats.count('evasion_conflict');
        if (this.options.onConflict === 'drop-packet') this.verdict(pkt, NF_DROP);
        else if (this.hold(flow, pkt, tcp, now, endOffset)) {
          this.force(flow, { verdict: 'block', reason: 'ambiguous:conflict' }, { app: flow.app ?? 'unknown' });
        }
        return;
      case 'limit':
        this.stats.count(`limit_${res.which}`);
        if (this.hold(flow, pkt, tcp, now, endOffset)) {
          this.force(flow, { verdict: this.options.onLimit, reason: 'limit' }, { app: flow.app ?? 'unknown' });
        }
        return;
      case 'duplicate':
        // A retransmission. Bytes from before the stream began were never sent: drop. If the
        // first copy is still held this one is redundant; if it was released the server may need it.
        if (endOffset <= 0) {
          this.stats.count('evasion_before_isn');
          this.verdict(pkt, NF_DROP);
        } else if (endOffset <= this.clearedUntil(flow, inspection) && flow.heldCount === 0) {
          this.verdict(pkt, NF_ACCEPT);
        } else {
          this.stats.count('duplicate_dropped');
          this.verdict(pkt, NF_DROP);
        }
        return;
      case 'ok':
        break;
    }
    if (len > 0 && this.answersHello(flow, inspection, tcp, closedBefore)) inspection.analyzer.serverAnswered?.();
    if (res.added > 0) {
      // The stream keeps what the analyzer has not consumed: it reads a partial hello there, uncopied.
      for (const ev of inspection.analyzer.feed(stream.view(before), before, stream.view())) this.addUnit(flow, inspection, ev);
    }
    noteClose(flow, tcp);
    if (flow.c2s.finSeen && res.buffered === 0 && inspection.analyzer.frontier() < stream.offset) {
      // The client closed in the middle of a unit: it will never be complete.
      this.addUnit(flow, inspection, { kind: 'invalid', start: inspection.analyzer.frontier(), reason: 'truncated',
        info: { app: flow.app ?? 'unknown' } });
    }
    // Bytes already covered by an allow (a request body) pass at once when nothing waits before them.
    const cleared = this.clearedUntil(flow, inspection);
    if (endOffset <= cleared && flow.heldCount === 0 && res.buffered === 0) {
      this.verdict(pkt, NF_ACCEPT);
      // A request body streams through: keep only what the analyzer still needs. Records skipped
      // after a ClientHello are kept (appended to the hello's copy) until inspection ends.
      this.releaseTo(flow, Math.min(cleared, inspection.analyzer.consumed()),
        inspection.analyzer.handshaking?.() === true ? inspection : undefined);
    } else if (!this.hold(flow, pkt, tcp, now, endOffset, dataSeq)) {
      return;
    }
    this.advance(flow, inspection);
    if (syn && flow.heldCount > 0 && flow.heldPacket(0).id === pkt.id && !inspection.units.some((u) => u.state === 'deciding')) {
      // An incomplete unit in a SYN: the client cannot send the rest before the handshake, so
      // the SYN goes on; its bytes are still counted and the unit is decided when complete.
      const first = flow.heldPacket(0);
      flow.keepHeld((h) => h !== first);
      this.unhold(flow, { id: pkt.id, mark: pkt.mark, endOffset, seq: dataSeq, bytes: len, heldAt: now }, now);
      this.send(pkt.id, NF_ACCEPT);
    }
    this.armAfterHello(flow, inspection);
  }

  private beginInspection(flow: Flow): void {
    if (this.busyFlows >= this.options.limits.maxInspectingFlows) {
      this.stats.count('limit_inspecting_flows');
      flow.phase = 'inspecting';
      const insp = this.newInspection(flow);
      this.inspections.set(flow, insp);
      pushUnit(insp, { start: 0, info: { app: 'unknown' }, opaque: true, state: 'waiting',
        forced: { verdict: this.options.onLimit, reason: 'limit' } });
      return;
    }
    flow.phase = 'inspecting';
    this.inspections.set(flow, this.newInspection(flow));
  }

  /** A fresh inspection. Every field is set here, so none is added later (an added field costs an extra object per flow). */
  private newInspection(flow: Flow): Inspection {
    return {
      analyzer: this.makeAnalyzer(flow), units: NO_UNITS, timer: undefined, decidingSince: 0, bits: 0,
      released: undefined, answerAbove: NO_HELLO, busyPrev: undefined, busyNext: undefined,
    };
  }

  /** Holds a packet; false if a limit forced a verdict instead. */
  private hold(flow: Flow, pkt: RawPacket, tcp: TcpPacket, now: number, endOffset: number, seq = tcp.seq): boolean {
    if (pkt.id === this.current) this.currentTaken = true;
    const entry: HeldPacket = new HeldEntry(pkt.id, pkt.mark, endOffset, seq, tcp.payload.length, now);
    flow.addHeld(entry);
    this.heldBytesTotal += entry.bytes;
    flow.heldPackets++;
    this.stats.held++;
    const l = this.options.limits;
    if (flow.heldCount > l.maxHeldPacketsPerFlow || flow.heldBytes > l.maxHeldBytesPerFlow
      || this.heldBytesTotal > l.maxHeldBytesTotal) {
      this.stats.count('limit_held');
      this.force(flow, { verdict: this.options.onLimit, reason: 'limit' }, { app: flow.app ?? 'unknown' });
      return false;
    }
    return true;
  }

  private addUnit(flow: Flow, insp: Inspection, ev: AnalyzerEvent): void {
    if (ev.kind === 'pass') {
      pushUnit(insp, { start: ev.start, info: { app: 'unknown' }, opaque: false, state: 'waiting',
        forced: { verdict: 'allow', reason: 'pass' }, silent: true });
      return;
    }
    if (ev.kind === 'end') {
      // Inspection is over with nothing new to decide: the flow bypasses once what is before is allowed.
      pushUnit(insp, { start: ev.start, info: { app: flow.app ?? 'unknown' }, opaque: true, state: 'waiting',
        forced: { verdict: 'allow', reason: 'end' }, silent: true });
      return;
    }
    flow.app = ev.info.app;
    if (ev.kind === 'unit' && ev.info.app === 'unknown' && flow.midstream && ev.start === 0) {
      // The first data of a flow whose start was not seen, and it begins no message: it may be
      // the second part of one whose first part comes later, below where flowgate thinks the
      // stream starts. A decision on it alone could pass half a message: refuse (EVASION.md 14).
      pushUnit(insp, { start: ev.start, info: ev.info, opaque: true, state: 'waiting',
        forced: { verdict: this.options.onAmbiguous, reason: 'ambiguous:midstream' } });
      return;
    }
    if (ev.kind === 'unit') {
      // A hello that leaves the flow inspected: only a client segment acknowledging past where the
      // server stands now shows the server answered it (answersHello).
      if (ev.info.app === 'tls' && !ev.opaque) {
        let at = serverPosition(flow);
        // Behind a prefix the server answers first (PostgreSQL's SSLRequest, answered with one
        // byte): past that answer too, which may not have reached flowgate before the hello.
        const isn = flow.s2c.isn;
        if (ev.start > 0 && isn !== undefined && at !== undefined && seqDiff(seqAdd(isn, 2), at) > 0) at = seqAdd(isn, 2);
        insp.answerAbove = at ?? ANSWER_UNKNOWN;
      }
      pushUnit(insp, { start: ev.start, info: ev.info, opaque: ev.opaque, state: 'waiting' });
      return;
    }
    const forced: Decision = ev.kind === 'ambiguous'
      ? { verdict: this.options.onAmbiguous, reason: `ambiguous:${ev.reason}` }
      : { verdict: this.options.onInvalid, reason: `invalid:${ev.reason}` };
    pushUnit(insp, { start: ev.start, info: ev.info, opaque: true, state: 'waiting', forced });
  }

  /** Forces a verdict on the flow for the unit in progress (limits, conflicts, ambiguity). */
  private force(flow: Flow, decision: Decision, info: UnitInfo): void {
    const insp = this.inspections.get(flow);
    if (insp === undefined) return;
    // Anything already pending is superseded (settle clears its timer): the flow's fate is this decision.
    const token = this.startDecision(insp);
    const unit: Unit = { start: 0, info, opaque: true, state: 'waiting', forced: decision };
    insp.units = [unit];
    this.settle(flow, insp, unit, decision, token);
  }

  /** A new decision begins: a fresh token (older answers are ignored) and its start time, for its latency. */
  private startDecision(insp: Inspection): number {
    insp.decidingSince = this.now();
    return newToken(insp);
  }

  /** Starts the next decision if none is in flight, and releases what is cleared. */
  private advance(flow: Flow, insp: Inspection): void {
    if (insp.bits & INSP_ADVANCING) return; // the outer call's loop picks up what changed
    insp.bits |= INSP_ADVANCING;
    for (;;) {
      const unit = insp.units.find((u) => u.state !== 'allowed');
      if (unit === undefined || unit.state === 'deciding') break;
      unit.state = 'deciding';
      const token = this.startDecision(insp);
      if (unit.forced !== undefined) {
        this.settle(flow, insp, unit, unit.forced, token);
      } else {
        this.ask(flow, insp, unit, token);
      }
      if (flow.phase !== 'inspecting' || unit.state === 'deciding') break;
    }
    insp.bits &= ~INSP_ADVANCING;
    if (flow.phase === 'inspecting') this.releaseCleared(flow, insp);
  }

  private ask(flow: Flow, insp: Inspection, unit: Unit, token: number): void {
    // Object.assign rather than a spread in the literal (a slow copy path): same keys, same order.
    const info: DecisionInfo = withFingerprints(Object.assign({
      flow: flow.id, src: flow.clientAddr, sport: flow.clientPort, dst: flow.serverAddr, dport: flow.serverPort,
    }, unit.info));
    let answer: ReturnType<DecideFn>;
    try {
      answer = this.decide(info, flow);
    } catch {
      this.stats.count('policy_error');
      this.settle(flow, insp, unit, { verdict: this.options.onError, reason: 'error' }, token);
      return;
    }
    if (!isPromiseLike(answer)) {
      this.settle(flow, insp, unit, toDecision(answer, this.options.onError), token);
      return;
    }
    this.stats.pausedFlows++;
    insp.timer = this.scheduler.setTimeout(() => {
      this.stats.count('decision_timeout');
      this.settle(flow, insp, unit, { verdict: this.options.onTimeout, reason: 'timeout' }, token);
    }, this.options.decisionTimeoutMs);
    answer.then(
      (value) => this.settle(flow, insp, unit, toDecision(value, this.options.onError), token),
      () => {
        this.stats.count('policy_error');
        this.settle(flow, insp, unit, { verdict: this.options.onError, reason: 'error' }, token);
      },
    );
  }

  /** Applies a decision if it is still the one the flow waits for. */
  private settle(flow: Flow, insp: Inspection, unit: Unit, decision: Decision, token: number): void {
    if (currentToken(insp) !== token || this.inspections.get(flow) !== insp) return; // superseded or flow gone
    newToken(insp); // a second settle of the same decision is ignored
    if (insp.timer !== undefined) {
      this.scheduler.clearTimeout(insp.timer);
      insp.timer = undefined;
      this.stats.pausedFlows--;
    }
    const now = this.now();
    if (!unit.silent && !decision.quiet) {
      flow.decisions++;
      const heldMs = flow.heldCount > 0 ? now - flow.heldPacket(0).heldAt : 0;
      this.stats.decided(decision, now - insp.decidingSince);
      const held = flow.heldCount, info = unit.info, ts = this.stamp();
      this.emit(() => decisionEvent(flow, info, decision, held, heldMs, isoTime(ts)));
    }
    if (decision.verdict === 'block') {
      this.block(flow, insp);
      return;
    }
    unit.state = 'allowed';
    if (unit.opaque || decision.bypass) {
      this.bypass(flow, insp);
      this.noteBusy(flow); // still inspected while data from a SYN waits for the SYN-ACK
      return;
    }
    // The analyzer may have more to say now (an embedder's handler resumed with "need more").
    const more = insp.analyzer.settled?.();
    if (more !== undefined) for (const ev of more) this.addUnit(flow, insp, ev);
    this.advance(flow, insp);
    this.noteBusy(flow);
    this.armAfterHello(flow, insp);
  }

  /**
   * On a new flow's SYN: the hello will be the client's first data packet, and the engine allows
   * it (with the inspect mark: the flow stays inspected until its next record) if it is a plain
   * hello whose name the policy allows, which the caller taught the sink. The sink checks it as
   * clientPacket would (discardReason with the server observed: right after the SYN, exactly
   * acknowledging the SYN-ACK, the SYN's TTL and timestamp) and lets it on at once.
   * Not for a flow that is not plainly new, whose SYN carried data or MD5, or while the
   * inspecting-flows limit is reached (the hello would get on_limit). A SYN the sink armed itself
   * as it read it (sinkArmedKey set, while syncSynArming lets it) leaves only the books to keep here;
   * the sink's arm on a flow the engine does not arm here, whatever the path the SYN took, is
   * taken back once the packet is handled (sinkArmedKey).
   */
  private armHello(flow: Flow, tcp: TcpPacket): void {
    const sink = this.sink;
    const c = flow.c2s;
    const plainlyNew = sink.expectHello !== undefined && !flow.helloArmed && (tcp.flags & (SYN | ACK | FIN | RST | URG)) === SYN
      && tcp.seq === c.isn && !c.md5 && flow.s2c.isn === undefined && !flow.midstream && flow.stream === undefined
      && flow.phase === 'handshake' && this.busyFlows < this.options.limits.maxInspectingFlows;
    const checks = plainlyNew ? this.bindingChecks(flow) : undefined;
    if (checks === undefined) return; // a sink's arm is taken back once the packet is handled (handle)
    flow.helloArmed = true;
    if (this.sinkArmedKey !== undefined) {
      this.sinkArmedKey = undefined;
      // The sink's arm takes its floors from this SYN; below the flow's (the highest of its SYNs')
      // it is taken back and replaced with the engine's (or, if the sink refuses that, gone).
      const ts = tcp.options.tsVal;
      if (tcp.ttl >= checks.minTtl && (checks.tsMin === undefined || (ts !== undefined && seqDiff(ts, checks.tsMin) >= 0))) return;
      sink.forgetHello?.(flow.key);
    }
    sink.expectHello!(flow.key, flow.isClientSide(true), seqAdd(tcp.seq, 1), checks, this.theHelloArm());
  }

  /** What armHello and armHellosOnSyn hand the sink (made on first use). */
  private theHelloArm(): HelloArm {
    const m = this.options.marks;
    return this.helloArm ??= Object.freeze({ mark: m.inspect, allowMark: m.allow, mask: m.mask,
      maxHelloBytes: this.options.limits.maxHelloBytes, strict: this.options.strictTcp,
      answerMark: this.answerBit });
  }

  /**
   * The rules ended the inspection of a flow whose first hello the sink let on with the answer
   * mark, on the server's first data packet: a ServerHello, not a HelloRetryRequest, so no second
   * hello follows, and the client's next flight no longer comes here. The flow is done if that
   * flight is all it waits for (what armAfterHello arms). Anything else (a second hello the client
   * sent before the answer, a decision still pending) goes on as before: the verdict it gets is
   * saved to the connection over the rules' allow, and a block resets it.
   */
  private kernelAnswered(flow: Flow | undefined, low: boolean): void {
    const insp = flow?.inspection as Inspection | undefined;
    if (flow === undefined || insp === undefined || flow.isClientSide(low) || flow.phase !== 'inspecting' || flow.heldCount > 0
      || insp.units.length > 0 || insp.answerAbove === NO_HELLO || flow.decisions === 0) {
      this.stats.count('kernel_answer_ignored');
      return;
    }
    this.disarm(flow, insp, true);
    this.stats.count('kernel_answers');
    this.bypass(flow, insp);
  }

  /**
   * Lets the sink arm every new flow on its SYN itself (VerdictSink.armHellosOnSyn), before the
   * engine reads that SYN, while the limits armHello heeds leave room for the flows the sink is
   * ahead by: fewer than half of max_inspecting_flows busy, at most half of max_held_bytes_total
   * held (the template's payload limit is then the engine's, or stricter). Past either half it
   * stops, and flows are armed by armHello alone, as their SYNs are read.
   */
  private syncSynArming(): void {
    const sink = this.sink;
    if (sink.armHellosOnSyn === undefined) return;
    const l = this.options.limits;
    const maxPayload = Math.min(AFTER_HELLO_MAX_PAYLOAD, l.maxHeldBytesPerFlow, Math.floor(l.maxHeldBytesTotal / 2),
      this.streamLimits.maxRetainedBytes);
    const want = this.busyFlows < l.maxInspectingFlows / 2 && this.heldBytesTotal <= l.maxHeldBytesTotal / 2 && maxPayload > 0;
    if (want === this.synArming) return;
    this.synArming = want;
    sink.armHellosOnSyn(want ? this.theHelloArm() : undefined,
      { verifyChecksum: this.options.verifyChecksums, minTtl: 0, tsMin: undefined, ackMin: undefined, maxPayload });
  }

  /**
   * What the binding must check of the flow's next client packet before it allows it (armHello,
   * armAfterHello): discardReason's checks for fakes once the server is no longer observed (for a
   * hello the sink adds the exact ACK, stricter than the window checks), and the engine's limits
   * on what the packet adds (held bytes, retained stream bytes: a longer packet takes the
   * engine's path, which applies on_limit). Undefined when the limits leave no room.
   */
  private bindingChecks(flow: Flow): NextSegmentChecks | undefined {
    const l = this.options.limits;
    const maxPayload = Math.min(AFTER_HELLO_MAX_PAYLOAD, l.maxHeldBytesPerFlow - flow.heldBytes,
      l.maxHeldBytesTotal - this.heldBytesTotal, this.streamLimits.maxRetainedBytes - (flow.stream?.retainedBytes ?? 0));
    if (maxPayload <= 0) return undefined;
    return nextSegmentChecks(flow, { verifyChecksum: this.options.verifyChecksums, strict: this.options.strictTcp,
      serverObserved: false }, maxPayload);
  }

  /** Takes back armHello, if the flow is armed; `afterPacket`: on one of its packets (see VerdictSink.forgetHello). */
  private disarmHello(flow: Flow, afterPacket = false): void {
    if (!flow.helloArmed) return;
    flow.helloArmed = false;
    this.sink.forgetHello?.(flow.key, afterPacket);
  }

  /** Takes back armAfterHello, if the flow is armed; `afterPacket` as for disarmHello. */
  private disarm(flow: Flow, insp: Inspection, afterPacket = false): void {
    if ((insp.bits & INSP_ARMED) === 0) return;
    insp.bits &= ~INSP_ARMED;
    this.sink.forgetAfterHello?.(flow.key, afterPacket);
  }

  /**
   * After a first ClientHello is allowed the flow stays under inspection until the client's next
   * record shows it is not a second hello (EVASION.md 19): a wait of one more trip through the
   * engine for every TLS connection. When the stream is consumed up to that record and nothing
   * else is pending, the sink (the kernel queue's binding) can read that record's first bytes,
   * apply the checks for fakes the server would discard (nextSegmentChecks: what discardReason
   * checks of that packet), and allow the packet at once, as the engine would; the engine still
   * sees the packet.
   */
  private armAfterHello(flow: Flow, insp: Inspection): void {
    const sink = this.sink;
    if (sink.expectAfterHello === undefined || insp.bits & INSP_ARMED) return;
    if (flow.phase !== 'inspecting' || flow.heldCount > 0 || insp.units.length > 0) return;
    if (flow.tfo !== undefined && !flow.tfo.confirmed) return;
    // clientPacket checks a packet against the server's window while no decision was counted (a
    // policy's `quiet` allow): checks the binding cannot make.
    if (flow.decisions === 0) return;
    const at = insp.analyzer.recordBoundary?.() ?? -1;
    const stream = flow.stream;
    if (at < 0 || stream === undefined || stream.offset !== at || stream.outOfOrderBytes > 0) return;
    // As clientPacket runs discardReason for it once a decision was counted: the server no longer observed.
    const checks = this.bindingChecks(flow);
    // The record ends inspection only in a packet that shows the server answered (answersHello).
    if (checks === undefined || insp.answerAbove < 0 || flow.clientClosed) return;
    checks.ackAbove = insp.answerAbove;
    insp.bits |= INSP_ARMED;
    const m = this.options.marks;
    sink.expectAfterHello(flow.key, flow.isClientSide(true), stream.seqAt(at), m.allow, m.mask, checks);
  }

  /**
   * Whether `tcp`, a client segment the server keeps, shows the server answered the flow's last
   * ClientHello: it acknowledges past the server's position when the hello was read. With no
   * position known then (a hello in a SYN: Fast Open), the SYN-ACK's counts once seen; with none
   * at all (no ACK ever seen, the server's ISN unknown) there is nothing to wait for. Never once
   * the client `closed` (sent an RST or FIN before this packet).
   */
  private answersHello(flow: Flow, insp: Inspection, tcp: TcpPacket, closed: boolean): boolean {
    let ref = insp.answerAbove;
    // After the client's RST or FIN conntrack may have picked the connection up anew, liberally:
    // its ACKs then prove nothing (Flow.clientClosed). No legitimate client sends more records.
    if (ref === NO_HELLO || closed) return false;
    if (ref === ANSWER_UNKNOWN) {
      if (flow.s2c.isn === undefined) return true;
      ref = insp.answerAbove = seqAdd(flow.s2c.isn, 1);
    }
    return (tcp.flags & ACK) !== 0 && seqDiff(tcp.ack, ref) > 0;
  }

  /** Stream offset up to which every byte is covered by an allow. */
  private clearedUntil(flow: Flow, insp: Inspection): number {
    if (flow.phase !== 'inspecting') return Infinity;
    const waiting = insp.units.find((u) => u.state !== 'allowed');
    return Math.min(insp.analyzer.frontier(), waiting?.start ?? Infinity);
  }

  /** Releases, in arrival order, every held packet whose bytes are all allowed. */
  private releaseCleared(flow: Flow, insp: Inspection): void {
    if (flow.heldCount === 0) return;
    const cleared = this.clearedUntil(flow, insp);
    const now = this.now();
    let released = 0;
    const m = this.options.marks;
    for (let i = 0; i < flow.heldCount; i++) {
      const h = flow.heldPacket(i);
      if (h.endOffset <= cleared) {
        released++;
        // The first release of a flow inspected request by request marks it so replies bypass the
        // queue (not while data from a SYN is unconfirmed: the SYN-ACK must reach us).
        this.unhold(flow, h, now);
        // Nor before the first unit the policy sees (a STARTTLS prefix): the server's answer to it
        // is the position a hello behind it must be answered past (answersHello).
        if ((flow.tfo !== undefined && !flow.tfo.confirmed) || flow.app === undefined) this.send(h.id, NF_ACCEPT);
        else this.repeat(h.id, h.mark, m.inspect);
      }
    }
    if (released > 0) {
      flow.keepHeld((h) => h.endOffset > cleared);
      this.sink.released?.();
    }
    // Units before the frontier are done; forget their bytes.
    const kept = this.releaseTo(flow, Math.min(cleared, insp.analyzer.consumed()), insp);
    if (insp.units.some((u) => u.state === 'allowed')) {
      const left = insp.units.filter((u) => u.state !== 'allowed');
      insp.units = left.length > 0 ? left : NO_UNITS;
    }
    if (!kept) {
      // A second hello too far from the first to keep both: a later copy of it could not be compared (G3).
      this.stats.count('limit_kept_hello');
      this.force(flow, { verdict: this.options.onLimit, reason: 'limit' }, { app: 'tls' });
    }
  }

  private unhold(flow: Flow, h: HeldPacket, now: number): void {
    this.heldBytesTotal -= h.bytes;
    flow.heldMs += now - h.heldAt;
    this.stats.held--;
  }

  /** Allowed for good: every held packet leaves in order, marked so the kernel stops queueing the flow. */
  private bypass(flow: Flow, insp: Inspection): void {
    const now = this.now();
    const m = this.options.marks;
    if (flow.tfo !== undefined && !flow.tfo.confirmed) {
      // Data from a SYN is allowed, but the flow is marked only once the SYN-ACK has shown the
      // server kept that data: until then its packets must keep coming here.
      for (const h of flow.takeHeld()) {
        this.unhold(flow, h, now);
        this.send(h.id, NF_ACCEPT);
      }
      flow.bypassPending = true;
      return;
    }
    for (const h of flow.takeHeld()) {
      this.unhold(flow, h, now);
      this.repeat(h.id, h.mark, m.allow);
    }
    this.sink.released?.();
    void insp;
    this.completeFlow(flow, 'bypassed');
  }

  /** Blocked: held packets are dropped; with `reset` the client gets an RST from the rules and the server one from us. */
  private block(flow: Flow, insp: Inspection): void {
    void insp;
    const now = this.now();
    const m = this.options.marks;
    const held = flow.takeHeld();
    // The server expects the lowest held byte next (nothing from there on was released).
    let firstSeq: number | undefined;
    for (const h of held) if (h.bytes > 0 && (firstSeq === undefined || seqDiff(h.seq, firstSeq) < 0)) firstSeq = h.seq;
    const reset = this.options.blockAction !== 'drop';
    // What the client is told before the reset: a 403 page on plain HTTP (`page`), a TLS
    // access_denied alert (`tls_alert`). The page ends the connection with a FIN instead of a reset.
    const page = this.options.blockAction === 'page' && flow.app === 'http';
    const alert = this.options.tlsAlert && flow.app === 'tls';
    if ((page || alert) && this.sink.sendRaw !== undefined) {
      try {
        this.sink.sendRaw(page ? buildBlockPage(flow) : buildTlsAlert(flow));
        this.stats.count(page ? 'block_pages' : 'tls_alerts');
      } catch {
        this.stats.count('inject_failed');
      }
    }
    for (let i = 0; i < held.length; i++) {
      const h = held[i]!;
      this.unhold(flow, h, now);
      if (reset && !page && i === held.length - 1) {
        this.repeat(h.id, h.mark, m.block);
      } else {
        this.send(h.id, NF_DROP);
      }
    }
    const serverSawSyn = flow.tfo === undefined || flow.tfo.confirmed;
    if (reset && serverSawSyn && firstSeq !== undefined && this.sink.sendRaw !== undefined) {
      try {
        this.sink.sendRaw(buildResetToServer(flow, firstSeq));
        this.stats.count('server_resets');
      } catch {
        this.stats.count('server_reset_failed');
      }
    }
    this.completeFlow(flow, 'blocked', reset ? 'block' : 'drop');
  }

  /**
   * Removes a flow, settling anything it still holds; calls `complete` exactly once. Decided
   * flows leave a tombstone with their verdict; others leave `remember`, if given.
   */
  private completeFlow(flow: Flow, why: FlowEndEvent['why'], tomb?: Verdict | 'drop', remember?: Verdict): void {
    this.endInspection(flow);
    this.disarmHello(flow);
    if (flow.heldCount > 0) {
      // Only reached for timeouts, eviction and shutdown: the verdict was passed in as `tomb`.
      const now = this.now();
      const allow = tomb === 'allow';
      const m = this.options.marks;
      for (const h of flow.takeHeld()) {
        this.unhold(flow, h, now);
        if (allow) this.repeat(h.id, h.mark, m.allow);
        else this.send(h.id, NF_DROP);
      }
    }
    flow.phase = why === 'blocked' ? 'blocked' : why === 'bypassed' ? 'bypassed' : 'closed';
    flow.stream = undefined;
    this.table.remove(flow, why === 'bypassed' ? 'allow' : why === 'blocked' ? 'block' : remember);
    this.hooks.complete?.(flow, why);
    if (why === 'blocked' || why === 'bypassed' || !this.flowEndEvents) return;
    const ts = this.stamp();
    this.emit(() => flowEndEvent(flow, why, isoTime(ts)));
  }

  /** The time of an event happening now: the embedder's clock's text, or the system clock's milliseconds (cheaper to take). */
  private stamp(): string | number {
    return this.wallClock !== undefined ? this.wallClock() : Date.now();
  }

  /** Hands an event to onEvent now, or after the current call with deferEvents. */
  private emit(build: () => FlowgateEvent): void {
    if (!this.deferEvents) {
      this.onEvent(build());
      return;
    }
    this.deferred.push(build);
    if (this.deferred.length === 1) queueMicrotask(() => this.flushEvents());
  }

  /** Builds and hands over the events deferEvents holds back, in order (also before stopping). */
  flushEvents(): void {
    while (this.deferred.length > 0) {
      const list = this.deferred;
      this.deferred = [];
      for (const build of list) {
        try {
          this.onEvent(build());
        } catch (err) {
          // As in handle(): a failing consumer is counted, and the events after it still go out.
          this.stats.count('internal_error');
          this.stats.lastInternalError = err instanceof Error ? err.stack ?? err.message : String(err);
        }
      }
    }
  }

  /** Sweeps idle flows; call about once a second with the current time. */
  tick(now = this.now()): void {
    const t = this.options.timeouts;
    const minTimeout = Math.min(t.synS, t.closingS, t.inspectingS, t.establishedS) * 1000;
    for (const flow of this.table.oldest()) {
      const idle = now - flow.lastSeen;
      if (idle < minTimeout) break;
      const limit = (flow.phase === 'inspecting' ? t.inspectingS
        : flow.tcp === 'syn' ? t.synS : flow.tcp === 'closing' ? t.closingS : t.establishedS) * 1000;
      if (idle >= limit) {
        const insp = this.inspections.get(flow);
        if (insp !== undefined && insp.timer === undefined && this.incomplete(flow, insp)) this.expireIncomplete(flow);
        else {
          this.stats.count('timeout_flows');
          this.completeFlow(flow, 'timeout', this.options.onTimeout);
        }
      }
    }
    // G2: a message must complete within inspecting_s of its oldest held packet, however often
    // the client resends (a client that has sent all it may without an acknowledgement only
    // resends: that keeps the flow from going idle but completes nothing).
    const heldLimit = t.inspectingS * 1000;
    // A snapshot, as a Set's iteration would visit them (the loop completes flows, unlinking them).
    const busy: Flow[] = [];
    for (let f = this.busyHead; f !== undefined; f = (f.inspection as Inspection).busyNext) busy.push(f);
    for (const flow of busy) {
      const insp = this.inspections.get(flow);
      if (insp === undefined || insp.timer !== undefined || flow.heldCount === 0) continue;
      if (now - flow.heldPacket(0).heldAt >= heldLimit) this.expireIncomplete(flow);
    }
    this.table.expireTombstones(now);
  }

  /**
   * A client that stopped in the middle of a message, or cannot finish it (G2): not a slow
   * policy, so not on_timeout but the limit verdict, remembered for the rest of the flow (the
   * message completed later must not pass under a fresh midstream flow).
   */
  private expireIncomplete(flow: Flow): void {
    this.stats.count('timeout_flows');
    this.stats.count('limit_incomplete');
    this.completeFlow(flow, 'timeout', this.options.onLimit, this.options.onLimit);
  }

  /** True when the flow holds packets or part of a unit with no decision asked for. */
  private incomplete(flow: Flow, insp: Inspection): boolean {
    if (flow.heldCount > 0) return true;
    const stream = flow.stream;
    return stream !== undefined && insp.analyzer.frontier() < stream.offset;
  }

  /** Settles every held packet with `verdict` and empties the table (SIGTERM). */
  shutdown(verdict: Verdict): void {
    for (const flow of [...this.table.all()]) this.completeFlow(flow, 'shutdown', verdict);
  }

  /** Gives a packet its one verdict and counts it. */
  private verdict(pkt: RawPacket, v: VerdictValue, mark?: number): void {
    if (pkt.id === this.current) this.currentTaken = true;
    this.send(pkt.id, v, mark);
  }

  /** repeat() for the packet being handled. */
  private repeatPacket(pkt: RawPacket, value: number): void {
    if (pkt.id === this.current) this.currentTaken = true;
    this.repeat(pkt.id, pkt.mark, value);
  }

  /**
   * Sends the packet through the chain again with flowgate's mark bits set to `value`, which the
   * rules act on. A packet that already carries that value was repeated by us and queued again by
   * rules without the mark guard (a plain `-j NFQUEUE`): repeating it once more would loop forever,
   * so it gets what the rules would have done with it, accept (drop for the block mark).
   */
  private repeat(id: number, mark: number, value: number): void {
    const m = this.options.marks;
    // The answer bit is the sink's to set, on a hello it lets on (theHelloArm): a packet that came
    // with it (another rule's mark) must not have it saved to its connection by the engine's verdict.
    const answer = this.answerBit;
    if ((mark & m.mask) === value && (mark & answer) === 0) {
      this.stats.count('requeued_marked');
      this.send(id, value === m.block ? NF_DROP : NF_ACCEPT);
      return;
    }
    this.send(id, NF_REPEAT, (withMark(mark, m, value) & ~answer) >>> 0);
  }

  /** The one place a verdict leaves the engine. */
  private send(id: number, v: VerdictValue, mark?: number): void {
    this.sink.verdict(id, v, mark);
    this.stats.verdicted(v);
  }
}

/** The last millisecond isoTime formatted, and its text: under load many events share one. */
let lastIsoMs = NaN;
let lastIso = '';

/** An event's `ts`: the embedder's clock's text as it is, system milliseconds as ISO text. */
function isoTime(ts: string | number): string {
  if (typeof ts === 'string') return ts;
  if (ts !== lastIsoMs) {
    lastIso = new Date(ts).toISOString();
    lastIsoMs = ts;
  }
  return lastIso;
}

function isPromiseLike<T>(v: unknown): v is PromiseLike<T> {
  return typeof v === 'object' && v !== null && typeof (v as { then?: unknown }).then === 'function';
}

function toDecision(value: unknown, onError: Verdict): Decision {
  if (value === 'allow' || value === 'block') return { verdict: value, reason: 'policy' };
  if (typeof value === 'object' && value !== null) {
    const v = value as { verdict?: unknown; reason?: unknown };
    if (v.verdict === 'allow' || v.verdict === 'block') {
      const d: Decision = { verdict: v.verdict, reason: typeof v.reason === 'string' && v.reason !== '' ? v.reason : 'policy' };
      const extra = value as Decision;
      if (extra.bypass === true) d.bypass = true;
      if (extra.quiet === true) d.quiet = true;
      return d;
    }
  }
  return { verdict: onError, reason: 'error' };
}

