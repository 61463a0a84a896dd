/**
 * The policy stage's vocabulary: what a decision is asked about (FlowInfo) and what it
 * answers (Decision). Shared by rules, decision sources and the engine that calls them.
 */

/** A verdict on a flow or request. */
export type Verdict = 'allow' | 'block';

/** The application protocol the engine recognised on a flow. */
export type AppKind = 'tls' | 'http' | 'unknown';

/**
 * What the policy is asked about: one TLS flow (after its ClientHello), one HTTP request, or a
 * flow carrying neither. Names are expected as the protocol stage reports them (normalised by
 * src/protocols/names.ts); the policy lowercases and strips a trailing dot again anyway.
 */
export interface FlowInfo {
  /** Flow id as the events print it. */
  flow: string;
  src: string;
  sport: number;
  dst: string;
  /** Destination port: what `ports` matches. */
  dport: number;
  app: AppKind;
  /** TLS ClientHello server name; null when the hello carried none. */
  sni?: string | null;
  /** ALPN protocol ids offered by the client, in order; null when the extension was absent. */
  alpn?: string[] | null;
  ja3?: string;
  ja4?: string;
  /** The hello carried an encrypted_client_hello extension (0xfe0d): `sni` is the outer name. */
  ech?: boolean;
  /**
   * HTTP host the request is for: the absolute-form or CONNECT target's host when there is
   * one, the Host header otherwise; null when the request named none.
   */
  host?: string | null;
  method?: string;
  /** HTTP request path, possibly with its query (the policy strips the query). */
  path?: string;
  /** HTTP request target as sent (origin-, absolute- or authority-form). */
  target?: string;
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
