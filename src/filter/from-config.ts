/** Maps a loaded config onto the engine's options: one place for the correspondence of names. */
import type { Config } from '../policy/config-types.js';
import type { EngineOptions } from './options.js';

/** Engine options from a config (`verifyChecksums`, `strictTcp` and `idPrefix` are the caller's). */
export function engineOptionsFromConfig(c: Config): Partial<EngineOptions> {
  return {
    decisionTimeoutMs: c.decisionTimeoutMs,
    onTimeout: c.onTimeout,
    onError: c.onError,
    onLimit: c.onLimit,
    onAmbiguous: c.onAmbiguous,
    onInvalid: c.onInvalid,
    onConflict: c.onConflict,
    midstream: c.midstream,
    blockAction: c.blockAction,
    tlsAlert: c.tlsAlert,
    marks: { ...c.marks },
    limits: {
      maxFlows: c.limits.maxFlows,
      maxInspectingFlows: c.limits.maxInspectingFlows,
      maxHeldPacketsPerFlow: c.limits.maxHeldPacketsPerFlow,
      maxHeldBytesPerFlow: c.limits.maxHeldBytesPerFlow,
      maxOutOfOrderBytesPerFlow: c.limits.maxOooBytesPerFlow,
      maxHeldBytesTotal: c.limits.maxHeldBytesTotal,
      maxHelloBytes: c.limits.maxHelloBytes,
      maxRequestHeadBytes: c.limits.maxRequestHeadBytes,
    },
    timeouts: { ...c.timeouts },
  };
}
