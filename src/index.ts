/**
 * flowgate's public API for embedders: the engine, the filter API (pause/resume handlers), the
 * kernel queue binding, capture replay and the policy compiler.
 */
export { Engine, type EngineInit, type EngineHooks, type RawPacket } from './filter/engine.js';
export { createFilter, type FilterHandlers, type FilterInit, type DataVerdict, type NewFlowVerdict } from './filter/api.js';
export type { Decision, DecideFn, DecisionInfo, DecisionEvent, FlowEndEvent, FlowgateEvent, Verdict } from './filter/types.js';
export { engineOptions, DEFAULT_ENGINE_OPTIONS, type EngineOptions } from './filter/options.js';
export { Flow, type ResumeVerdict } from './flow/flow.js';
export { NfQueue, type QueueOptions } from './capture/queue.js';
export { attachQueue } from './capture/attach.js';
export { readCapture, readCaptureBatches } from './capture/pcapfile.js';
export { ipFromFrame } from './capture/linktype.js';
export { loadConfig, parseConfig, defaultConfig, type Config } from './policy/config.js';
export { compilePolicy, type Policy } from './policy/policy.js';
export { FlowgateError, ConfigError, UsageError } from './errors.js';
