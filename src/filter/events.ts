/** The event objects the engine emits (CONTRACT.md "Events"). */
import type { Flow } from '../flow/flow.js';
import type { UnitInfo } from '../protocols/analyzer.js';
import { withFingerprints } from '../protocols/dispatch.js';
import type { Decision, DecisionEvent, FlowEndEvent } from './types.js';

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** A decision event for one unit of a flow. */
export function decisionEvent(flow: Flow, info: UnitInfo, d: Decision, heldPackets: number, heldMs: number,
  ts: string): DecisionEvent {
  // Object.assign, not a spread in the literal: the spread copies through a slow path and the
  // event it builds serialises slower (same keys, same order: info always has `app`).
  const e = withFingerprints(Object.assign({
    type: 'decision' as const, ts, flow: flow.id, src: flow.clientAddr, sport: flow.clientPort,
    dst: flow.serverAddr, dport: flow.serverPort,
  }, info)) as DecisionEvent;
  e.verdict = d.verdict;
  e.reason = d.reason;
  e.held_packets = heldPackets;
  e.held_ms = round2(heldMs);
  return e;
}

/** The event of a flow leaving the table, with its counters. */
export function flowEndEvent(flow: Flow, why: FlowEndEvent['why'], ts: string): FlowEndEvent {
  const c = flow.counters;
  return {
    type: 'flow_end', ts, flow: flow.id, src: flow.clientAddr, sport: flow.clientPort,
    dst: flow.serverAddr, dport: flow.serverPort, ...(flow.app ? { app: flow.app } : {}), why,
    packets_in: c.packetsIn, packets_out: c.packetsOut, bytes_in: c.bytesIn, bytes_out: c.bytesOut,
    held_packets: c.heldPackets, held_ms: round2(c.heldMs), decisions: c.decisions,
  };
}
