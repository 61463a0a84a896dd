/** The event objects the engine emits (CONTRACT.md "Events"). */
import type { Flow } from '../flow/flow.js';
import type { UnitInfo } from '../protocols/analyzer.js';
import type { Decision, DecisionEvent, FlowEndEvent } from './types.js';

function round2(ms: number): number {
  return Math.round(ms * 100) / 100;
}

/** A decision event for one unit of a flow. */
export function decisionEvent(flow: Flow, info: UnitInfo, d: Decision, heldPackets: number, heldMs: number,
  ts: string): DecisionEvent {
  return {
    type: 'decision', ts, flow: flow.id, src: flow.clientAddr, sport: flow.clientPort,
    dst: flow.serverAddr, dport: flow.serverPort, ...info, app: info.app, verdict: d.verdict, reason: d.reason,
    held_packets: heldPackets, held_ms: round2(heldMs),
  };
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
