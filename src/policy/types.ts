/**
 * The policy stage's vocabulary: what a decision is asked about (FlowInfo) and what it
 * answers (Decision). Shared by rules, decision sources and the engine that calls them.
 */

import type { UnitInfo } from '../protocols/analyzer.js';

/** A verdict on a flow or request. */
export type Verdict = 'allow' | 'block';

/** The application protocol the engine recognised on a flow. */
export type AppKind = UnitInfo['app'];

/**
 * What the policy is asked about: the unit the analyzers found (see UnitInfo) and the
 * connection's endpoints. The policy lowercases names and strips a trailing dot again anyway.
 */
export interface FlowInfo extends UnitInfo {
  /** Flow id as the events print it. */
  flow: string;
  src: string;
  sport: number;
  dst: string;
  /** Destination port: what `ports` matches. */
  dport: number;
}

/**
 * A policy answer. `reason` is `rule:NAME`, `default`, `error`, `webhook:WHY` or `module:WHY`
 * (the engine adds `timeout`, `limit`, `midstream`, `ambiguous:WHY`). Decisions returned by a
 * Policy are shared frozen objects: copy before changing.
 */
export interface Decision {
  verdict: Verdict;
  reason: string;
}
