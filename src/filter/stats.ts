/** Engine counters: the proof that every packet got exactly one verdict, and what happened on the way. */
import { NF_ACCEPT, NF_DROP, NF_REPEAT, type VerdictValue } from '../verdict/sink.js';
import type { Decision } from './types.js';

/** Upper bounds (ms) of the decision-latency histogram buckets. */
export const LATENCY_BUCKETS_MS = [0.1, 0.5, 1, 5, 10, 50, 100, 250, 500, 1000, 2500, 5000];

/** Counters of one engine. Plain numbers, cheap to bump on the packet path. */
export class EngineStats {
  received = 0;
  accepted = 0;
  dropped = 0;
  repeated = 0;
  /** Packets held right now. */
  held = 0;
  /** Flows waiting for an asynchronous decision right now. */
  pausedFlows = 0;
  decisions = 0;
  /** Decisions by `verdict:reason-kind` ("allow:rule", "block:timeout", ...). */
  readonly byReason = new Map<string, number>();
  /** Named events: evasion_*, limit_*, midstream, straggler, ... */
  readonly events = new Map<string, number>();
  /** Decision latency histogram: counts per LATENCY_BUCKETS_MS bucket, last slot is +Inf. */
  readonly latency = new Array<number>(LATENCY_BUCKETS_MS.length + 1).fill(0);
  latencySumMs = 0;
  lastInternalError?: string;

  /** Verdicts given so far (accepted + dropped + repeated). */
  get verdicts(): number {
    return this.accepted + this.dropped + this.repeated;
  }

  /** Counts one named event. */
  count(name: string, n = 1): void {
    this.events.set(name, (this.events.get(name) ?? 0) + n);
  }

  /** Counts one verdict. */
  verdicted(v: VerdictValue): void {
    if (v === NF_ACCEPT) this.accepted++;
    else if (v === NF_DROP) this.dropped++;
    else if (v === NF_REPEAT) this.repeated++;
  }

  /** Counts one settled decision and how long it took. */
  decided(d: Decision, ms: number): void {
    this.decisions++;
    const colon = d.reason.indexOf(':');
    const key = d.verdict + ':' + (colon < 0 ? d.reason : d.reason.slice(0, colon));
    this.byReason.set(key, (this.byReason.get(key) ?? 0) + 1);
    let i = 0;
    while (i < LATENCY_BUCKETS_MS.length && ms > LATENCY_BUCKETS_MS[i]!) i++;
    this.latency[i]!++;
    this.latencySumMs += ms;
  }

  /** A JSON-friendly snapshot. */
  snapshot(): Record<string, unknown> {
    return {
      received: this.received, verdicts: this.verdicts, accepted: this.accepted, dropped: this.dropped,
      repeated: this.repeated, held: this.held, paused_flows: this.pausedFlows, decisions: this.decisions,
      by_reason: Object.fromEntries(this.byReason), events: Object.fromEntries(this.events),
    };
  }
}
