/** The policy stage's public surface: config loading, compiled policies, decision sources. */
export * from './config.js';
export { checkConfigFile } from './check.js';
export { compilePolicy, loadPolicy, type Policy, type PolicyOptions } from './policy.js';
export type { AppKind, Decision, FlowInfo, Verdict } from './types.js';
export { watchLists, listFiles, type ListWatcher, type WatchOptions } from './watch.js';
