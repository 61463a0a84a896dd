import type { NextSegmentChecks } from '../flow/tcp.js';
/**
 * Where verdicts go: the kernel queue in `run`, a recorder in `replay` and tests. Verdict values
 * are the kernel's (include/uapi/linux/netfilter.h).
 */

/** NF_DROP: the packet is discarded. */
export const NF_DROP = 0;
/** NF_ACCEPT: the packet goes on; terminal for the current table (later rules never see it). */
export const NF_ACCEPT = 1;
/** NF_REPEAT: the packet re-enters the hook from the top, here always with a new mark. */
export const NF_REPEAT = 4;

/** A verdict value the kernel accepts from flowgate. */
export type VerdictValue = typeof NF_DROP | typeof NF_ACCEPT | typeof NF_REPEAT;

/** How expectHello lets a plain first hello on, the same for every flow of an engine. */
export interface HelloArm {
  /** The mark (within `mask`) the engine repeats an allowed first hello with: its inspect mark. */
  mark: number;
  /** The allow mark (within `mask`), for the record after the hello (see expectAfterHello). */
  allowMark: number;
  mask: number;
  /** The engine's limit on a hello's body, bytes. */
  maxHelloBytes: number;
  /** The engine checks ACKs and timestamps (strict_tcp). */
  strict: boolean;
  /**
   * A bit outside `mask` (0 or absent: none) added to `mark` for a hello whose echoed session id cannot
   * pass for the start of a ServerHello: the rules then end the flow's inspection on the server's
   * ServerHello (not a HelloRetryRequest) and copy that packet to the log group, flagged
   * ANSWERED (native/README.md, "The server's answer").
   */
  answerMark?: number;
}

/** Receives exactly one verdict per packet id, and optionally injects crafted packets (RSTs). */
export interface VerdictSink {
  verdict(id: number, verdict: VerdictValue, mark?: number): void;
  /** Sends a complete IP packet (a TCP RST toward the server). Absent in replay. */
  sendRaw?(packet: Uint8Array): void;
  /**
   * Lets the kernel-queue side allow the flow's next client packet without waiting for the
   * engine, when it starts at `seq`, its first record ends the inspection of a first ClientHello
   * and it passes `checks` (see NfQueue.expectAfterHello); the engine still sees that packet, and
   * its verdict for it is not sent again. Absent in replay and in-process sinks: the engine then
   * decides every packet.
   */
  expectAfterHello?(key: string, clientLow: boolean, seq: number, allowMark: number, mask: number, checks: NextSegmentChecks): void;
  /**
   * Takes back expectAfterHello for the connection; `afterPacket`: on one of its packets, which
   * the kernel-queue side saw after the arm (it disarms at any packet itself).
   */
  forgetAfterHello?(key: string, afterPacket?: boolean): void;
  /**
   * Lets the kernel-queue side let the flow's first ClientHello on without waiting for the engine
   * (armed on the client's SYN, `seq` its sequence number + 1), when it is a plain hello whose
   * name the policy allows (the sink was told so beforehand), acknowledges the SYN-ACK and passes
   * `checks`; it gets a repeat with `arm.mark`, as the engine gives an allowed first hello, and
   * the record after it is armed as with expectAfterHello (see NfQueue.expectHello). The engine
   * still sees those packets; its verdicts for them are not sent again.
   */
  expectHello?(key: string, clientLow: boolean, seq: number, checks: NextSegmentChecks, arm: HelloArm): void;
  /**
   * With `arm`, the kernel-queue side arms every new flow on its SYN as expectHello would with
   * `arm` and `checks` (the TTL and timestamp from the SYN), before the engine sees the SYN; without
   * (undefined), it stops. The engine calls it while its limits leave room (see NfQueue.armHellosOnSyn).
   */
  armHellosOnSyn?(arm: HelloArm | undefined, checks: NextSegmentChecks): void;
  /** The engine saw the server's SYN-ACK for a flow armed with expectHello: its sequence number + 1. */
  helloAnswered?(key: string, serverNext: number): void;
  /** Takes back expectHello for the connection; `afterPacket` as for forgetAfterHello. */
  forgetHello?(key: string, afterPacket?: boolean): void;
  /**
   * The engine has given the verdicts that release a decision's packets; what follows is its
   * bookkeeping. A sink that gathers verdicts may send them now (NfQueue.flushIfQuiet).
   */
  released?(): void;
}

/** The packet-mark bits flowgate owns and the values it writes (config `marks`). */
export interface MarkConfig {
  /** Bits of the mark that belong to flowgate. Default 0x300. */
  mask: number;
  /** Flow allowed: the rest of it bypasses the queue both ways. Default 0x100. */
  allow: number;
  /** Flow blocked: the rules reset it. Default 0x200. */
  block: number;
  /** Flow allowed so far but inspected request by request: replies bypass, requests are queued. Default 0x300. */
  inspect: number;
  /**
   * A bit outside `mask` for a first ClientHello the binding let on, with which the rules end the
   * flow's inspection on the server's ServerHello (HelloArm.answerMark); 0 or absent: never set.
   * Default 0x400.
   */
  answer?: number;
}

/** Defaults for {@link MarkConfig}, matching iptables/flowgate.rules. */
export const DEFAULT_MARKS: MarkConfig = { mask: 0x300, allow: 0x100, block: 0x200, inspect: 0x300, answer: 0x400 };

/** The packet's mark with flowgate's bits replaced by `value`, other bits kept for the operator. */
export function withMark(packetMark: number, marks: MarkConfig, value: number): number {
  return ((packetMark & ~marks.mask) | (value & marks.mask)) >>> 0;
}
