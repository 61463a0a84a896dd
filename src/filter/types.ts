/** Types shared by the engine, the policy adapters and embedders. */
import type { UnitInfo } from '../protocols/analyzer.js';
import type { Flow } from '../flow/flow.js';
import type { FlowInfo } from '../policy/types.js';

/** A flow's fate. */
export type Verdict = 'allow' | 'block';

/** A settled decision: the verdict and why (`rule:NAME`, `default`, `timeout`, `error`, `limit`, ...). */
export interface Decision {
  verdict: Verdict;
  reason: string;
  /** Allow and stop inspecting this flow (the rest bypasses the queue) even if more units could follow. */
  bypass?: boolean;
  /** Not reported as a decision event (an intermediate "need more data" answer). */
  quiet?: boolean;
}

/** What a policy is asked about: the unit found in the stream plus the connection's endpoints. */
export type DecisionInfo = FlowInfo;

/**
 * A policy as a function: answer synchronously or with a Promise, with a verdict or a Decision.
 * A bare verdict gets reason `policy`. A throw or rejection gets `on_error`.
 */
export type DecideFn = (info: DecisionInfo, flow: Flow) =>
  Decision | Verdict | Promise<Decision | Verdict>;

/** What happens to a blocked flow. */
export type BlockAction = 'reset' | 'drop' | 'page';

/** The JSON object printed for every decision (CONTRACT.md "Events"). */
export interface DecisionEvent extends Partial<UnitInfo> {
  type: 'decision';
  ts: string;
  flow: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  app: UnitInfo['app'];
  verdict: Verdict;
  reason: string;
  held_packets: number;
  held_ms: number;
}

/** The JSON object printed when a flow leaves the table. */
export interface FlowEndEvent {
  type: 'flow_end';
  ts: string;
  flow: string;
  src: string;
  sport: number;
  dst: string;
  dport: number;
  app?: UnitInfo['app'];
  why: 'closed' | 'reset' | 'timeout' | 'evicted' | 'bypassed' | 'blocked' | 'shutdown';
  packets_in: number;
  packets_out: number;
  bytes_in: number;
  bytes_out: number;
  held_packets: number;
  held_ms: number;
  decisions: number;
}

/** Any event the engine emits. Consumers ignore types they do not know. */
export type FlowgateEvent = DecisionEvent | FlowEndEvent;

/** Runs callbacks later: real timers in `run`, virtual capture time in `replay`. */
export interface Scheduler {
  setTimeout(fn: () => void, ms: number): unknown;
  clearTimeout(handle: unknown): void;
}

/** The real-time scheduler. */
export const realScheduler: Scheduler = {
  setTimeout: (fn, ms) => {
    const h = setTimeout(fn, ms);
    h.unref?.();
    return h;
  },
  clearTimeout: (h) => clearTimeout(h as NodeJS.Timeout),
};
