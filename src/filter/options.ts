/** Engine settings: every limit and configured verdict, with defaults (docs/config.md lists the YAML names). */
import { DEFAULT_MARKS, type MarkConfig } from '../verdict/sink.js';
import type { BlockAction, Verdict } from './types.js';

/** Limits of the flow engine. Hitting one gives `onLimit` and a counter, never an exception. */
export interface EngineLimits {
  /** Flows in the table; the least recently seen idle flow is evicted past it. Default 262144. */
  maxFlows: number;
  /** Flows with held packets or a pending decision at once. Default 65536. */
  maxInspectingFlows: number;
  /** Packets held per flow. Default 64. */
  maxHeldPacketsPerFlow: number;
  /** Payload bytes held per flow. Default 262144 (256 KiB). */
  maxHeldBytesPerFlow: number;
  /** Out-of-order bytes buffered per flow. Default 262144 (256 KiB). */
  maxOutOfOrderBytesPerFlow: number;
  /** Payload bytes held across all flows. Default 268435456 (256 MiB). */
  maxHeldBytesTotal: number;
  /** Largest ClientHello accepted, bytes. Default 65536. */
  maxHelloBytes: number;
  /** Largest HTTP request head accepted, bytes. Default 32768. */
  maxRequestHeadBytes: number;
}

/** Idle timeouts per state, in seconds. */
export interface EngineTimeouts {
  /** Connection being opened (SYN seen). Default 30. */
  synS: number;
  /** Established connection with no traffic. Default 3600. */
  establishedS: number;
  /** After a FIN or RST. Default 30. */
  closingS: number;
  /** Data held with no new packet (a client that stalls mid-hello). Default 30. */
  inspectingS: number;
}

/** Everything the engine is told by the config. */
export interface EngineOptions {
  /** Milliseconds a decision may take before `onTimeout` applies. Default 2000. */
  decisionTimeoutMs: number;
  onTimeout: Verdict;
  onError: Verdict;
  /** Verdict when a limit is hit. Default block. */
  onLimit: Verdict;
  /** Verdict for ambiguous units (EVASION.md). Default block. */
  onAmbiguous: Verdict;
  /** Verdict for malformed TLS/HTTP. Default block. */
  onInvalid: Verdict;
  /** A range sent twice with different bytes: block the flow, or drop only the differing copy. Default block. */
  onConflict: 'block' | 'drop-packet';
  /** Flows whose start was not seen. Default inspect. */
  midstream: 'inspect' | 'allow' | 'block';
  blockAction: BlockAction;
  /** Send a blocked TLS client an access_denied alert before the reset. Default false. */
  tlsAlert: boolean;
  marks: MarkConfig;
  limits: EngineLimits;
  timeouts: EngineTimeouts;
  /** Verify TCP checksums the kernel has not verified (off in replay: captures show offloaded sums). Default true. */
  verifyChecksums: boolean;
  /** Drop segments the server would discard (window, ACK, PAWS, TTL, MD5) without inspecting them. Default true. */
  strictTcp: boolean;
  /** Prefix of flow ids, to keep them unique across workers. Default ''. */
  idPrefix: string;
}

/** The defaults of {@link EngineOptions}. */
export const DEFAULT_ENGINE_OPTIONS: EngineOptions = {
  decisionTimeoutMs: 2000,
  onTimeout: 'allow',
  onError: 'allow',
  onLimit: 'block',
  onAmbiguous: 'block',
  onInvalid: 'block',
  onConflict: 'block',
  midstream: 'inspect',
  blockAction: 'reset',
  tlsAlert: false,
  marks: DEFAULT_MARKS,
  limits: {
    maxFlows: 262144,
    maxInspectingFlows: 65536,
    maxHeldPacketsPerFlow: 64,
    maxHeldBytesPerFlow: 262144,
    maxOutOfOrderBytesPerFlow: 262144,
    maxHeldBytesTotal: 268435456,
    maxHelloBytes: 65536,
    maxRequestHeadBytes: 32768,
  },
  timeouts: { synS: 30, establishedS: 3600, closingS: 30, inspectingS: 30 },
  verifyChecksums: true,
  strictTcp: true,
  idPrefix: '',
};

/** Fills in defaults, one level deep for the nested groups. */
export function engineOptions(partial: Partial<EngineOptions> = {}): EngineOptions {
  return {
    ...DEFAULT_ENGINE_OPTIONS,
    ...partial,
    marks: { ...DEFAULT_ENGINE_OPTIONS.marks, ...partial.marks },
    limits: { ...DEFAULT_ENGINE_OPTIONS.limits, ...partial.limits },
    timeouts: { ...DEFAULT_ENGINE_OPTIONS.timeouts, ...partial.timeouts },
  };
}
