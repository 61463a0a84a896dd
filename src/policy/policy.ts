/**
 * The compiled policy: rules first (first match wins, answered synchronously), then the
 * asynchronous source if one is configured, then `default`. A Policy never changes; a reload
 * compiles a new one and the caller swaps it in (and closes the old one once unused).
 * `decision_timeout_ms` is the engine's business; the webhook's own `timeout_ms` applies here.
 */
import { CidrSet, parseCidr, type Cidr } from './cidr.js';
import type { Config, RuleConfig } from './config-types.js';
import { DomainSet, matchDomainSets, parseDomainEntry } from './domains.js';
import { compileGlob, normalizePath, type PathGlob } from './glob.js';
import { createSource, type DecisionSource } from './sources.js';
import type { Decision, FlowInfo } from './types.js';

export type { AppKind, Decision, FlowInfo, Verdict } from './types.js';

/** A compiled, immutable policy. */
export interface Policy {
  readonly config: Config;
  /**
   * The decision for a flow or request: a plain (frozen, shared) object when a rule, the
   * cache or `default` answers, a promise that never rejects when a source is asked.
   */
  decide(info: FlowInfo): Decision | Promise<Decision>;
  /**
   * True when every plain TLS hello naming `name` (normalised) to server port `port` is allowed,
   * whoever sends it and whatever else it carries, where plain means without ECH (the kernel
   * queue's binding lets such hellos on by itself, see NfQueue.allowHelloName): a rule decides
   * it before any rule that looks at the client's address, ALPN or JA4 could, and no source is asked.
   */
  allowsPlainHello(name: string, port: number): boolean;
  /** Releases the source (sockets, cache); questions after close get on_error or default. */
  close(): Promise<void>;
}

/** Options for compilePolicy. */
export interface PolicyOptions {
  /** Clock for the source's cache, in ms (tests inject one). */
  now?: () => number;
  /** Told about each source failure (for logs and counters); must not throw. */
  onSourceError?: (error: Error, info: FlowInfo) => void;
}

type Test = (info: FlowInfo) => boolean;

/**
 * A rule's test, and whether it can be told from a plain hello's name and port alone (see
 * Policy.allowsPlainHello): not for the client's address, ALPN or JA4.
 */
interface RuleTest {
  test: Test;
  plain: boolean;
}

/** The names a domain matcher looks at: the SNI and the HTTP host (the target's, if any). */
function flowNames(info: FlowInfo): string[] {
  const names: string[] = [];
  if (info.sni) names.push(info.sni);
  if (info.host && info.host !== info.sni) names.push(info.host);
  return names;
}

function inlineDomains(entries: readonly string[]): DomainSet {
  const set = new DomainSet();
  for (const text of entries) {
    const entry = parseDomainEntry(text);
    if (entry.ok) set.add(entry.name, entry.exact, 'domains');
  }
  return set;
}

/** The tests of one rule, cheapest first. Config values were validated by parseConfig. */
function ruleTests(rule: RuleConfig): RuleTest[] {
  const all: RuleTest[] = [];
  const add = (test: Test, plain = true) => all.push({ test, plain });
  if (rule.app !== null) {
    const apps = new Set<string>(rule.app);
    add((info) => apps.has(info.app));
  }
  if (rule.ports !== null) {
    const ranges = rule.ports;
    add((info) => ranges.some((r) => info.dport >= r.from && info.dport <= r.to));
  }
  if (rule.clients !== null) {
    const blocks = rule.clients.map((c) => parseCidr(c)).filter((p) => p.ok).map((p) => (p as { cidr: Cidr }).cidr);
    const set = new CidrSet(blocks);
    add((info) => set.contains(info.src), false);
  }
  if (rule.ech !== null) {
    const want = rule.ech;
    add((info) => info.app === 'tls' && (info.ech ?? false) === want);
  }
  if (rule.named !== null) {
    const want = rule.named;
    add((info) => flowNames(info).length > 0 === want);
  }
  if (rule.alpn !== null) {
    const ids = new Set(rule.alpn);
    add((info) => info.alpn != null && info.alpn.some((id) => ids.has(id)), false);
  }
  if (rule.ja4 !== null) {
    const prints = new Set(rule.ja4);
    add((info) => info.ja4 !== undefined && prints.has(info.ja4.toLowerCase()), false);
  }
  if (rule.methods !== null) {
    const methods = new Set(rule.methods);
    add((info) => info.method !== undefined && methods.has(info.method.toUpperCase()));
  }
  if (rule.paths !== null) {
    const globs = rule.paths.map((p) => compileGlob(p)).filter((g) => g.ok).map((g) => (g as { glob: PathGlob }).glob);
    add((info) => {
      const raw = info.path ?? (info.target?.startsWith('/') ? info.target : undefined);
      if (raw === undefined) return false;
      const path = normalizePath(raw);
      return globs.some((g) => g.test(path));
    });
  }
  if (rule.domains !== null || rule.lists !== null) {
    const sets: DomainSet[] = [];
    if (rule.domains !== null) sets.push(inlineDomains(rule.domains));
    for (const list of rule.lists ?? []) sets.push(list.set);
    add((info) => flowNames(info).some((name) => matchDomainSets(sets, name) !== null));
  }
  return all;
}

interface CompiledRule {
  decision: Decision;
  tests: Test[];
  /** The tests a plain hello's name and port tell, and whether the rule has others. */
  plainTests: Test[];
  flowTests: boolean;
}

function compileRule(rule: RuleConfig): CompiledRule {
  const tests = ruleTests(rule);
  return {
    decision: Object.freeze({ verdict: rule.action, reason: `rule:${rule.name}` }), tests: tests.map((t) => t.test),
    plainTests: tests.filter((t) => t.plain).map((t) => t.test), flowTests: tests.some((t) => !t.plain),
  };
}

function matches(rule: CompiledRule, info: FlowInfo): boolean {
  const tests = rule.tests;
  for (let i = 0; i < tests.length; i++) if (!tests[i]!(info)) return false;
  return true;
}

class CompiledPolicy implements Policy {
  readonly config: Config;
  readonly #rules: CompiledRule[];
  readonly #source: DecisionSource | null;
  readonly #default: Decision;

  constructor(config: Config, options: PolicyOptions) {
    this.config = config;
    this.#rules = config.rules.map(compileRule);
    this.#default = Object.freeze({ verdict: config.default, reason: 'default' });
    this.#source = config.decide === null ? null : createSource(config.decide, {
      onError: config.onError,
      now: options.now,
      onFailure: options.onSourceError,
    });
  }

  decide(info: FlowInfo): Decision | Promise<Decision> {
    const rules = this.#rules;
    for (let i = 0; i < rules.length; i++) if (matches(rules[i]!, info)) return rules[i]!.decision;
    return this.#source === null ? this.#default : this.#source.decide(info);
  }

  allowsPlainHello(name: string, port: number): boolean {
    // What a plain hello tells: no HTTP fields, no ECH; the address, ALPN and JA4 tests are not run.
    const info = { app: 'tls', sni: name, dport: port } as FlowInfo;
    for (const rule of this.#rules) {
      if (!rule.plainTests.every((t) => t(info))) continue;
      return !rule.flowTests && rule.decision.verdict === 'allow';
    }
    return this.#source === null && this.#default.verdict === 'allow';
  }

  ready(): Promise<void> {
    return this.#source?.ready() ?? Promise.resolve();
  }

  close(): Promise<void> {
    return this.#source?.close() ?? Promise.resolve();
  }
}

/** Compiles a loaded config. A module source is imported on first use; see loadPolicy. */
export function compilePolicy(config: Config, options: PolicyOptions = {}): Policy {
  return new CompiledPolicy(config, options);
}

/**
 * Compiles a config and waits until its source can answer: a `decide.module` that cannot be
 * imported, or exports no `decide`, rejects with FlowgateError ERR_POLICY_MODULE.
 */
export async function loadPolicy(config: Config, options: PolicyOptions = {}): Promise<Policy> {
  const policy = new CompiledPolicy(config, options);
  try {
    await policy.ready();
  } catch (err) {
    await policy.close();
    throw err;
  }
  return policy;
}
