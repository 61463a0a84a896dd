/**
 * The typed, fully defaulted configuration (docs/config.md is the user-facing reference).
 * YAML keys are snake_case; the fields here are their camelCase spellings.
 */
import type { DomainSet } from './domains.js';
import type { AppKind, Verdict } from './types.js';

/** Inclusive range of NFQUEUE numbers (`queue: N` gives first = last = N). */
export interface QueueRange {
  first: number;
  last: number;
}

/** Inclusive destination port range (a single port has from = to). */
export interface PortRange {
  from: number;
  to: number;
}

/** A loaded `lists` file: its absolute path and its entries. Shared between rules naming it. */
export interface DomainList {
  path: string;
  set: DomainSet;
}

/**
 * One rule. Every present matcher must match (null = absent); a rule without matchers matches
 * every flow. Lists hold normalised values.
 */
export interface RuleConfig {
  /** `name`: unique; decisions report `rule:NAME`. */
  name: string;
  /** `action`: the verdict when the rule matches. */
  action: Verdict;
  /** `domains`: A-label names, `=` in front for exact-only entries. */
  domains: string[] | null;
  /** `lists`: list files, already read. */
  lists: DomainList[] | null;
  /** `clients`: source addresses and CIDRs, canonical `ADDR/PREFIX`. */
  clients: string[] | null;
  /** `ports`: destination ports. */
  ports: PortRange[] | null;
  /** `app`: protocols recognised on the flow. */
  app: AppKind[] | null;
  /** `methods`: HTTP methods, uppercase (compared case-insensitively). */
  methods: string[] | null;
  /** `paths`: path globs (see glob.ts). */
  paths: string[] | null;
  /** `alpn`: matches when the client offered any of these ALPN ids. */
  alpn: string[] | null;
  /** `ja4`: JA4 fingerprints, lowercase. */
  ja4: string[] | null;
  /** `ech`: whether the ClientHello carried ECH (TLS flows only). */
  ech: boolean | null;
  /** `named`: whether the flow names a host at all (an SNI or an HTTP host). */
  named: boolean | null;
  /** Line of the rule in the config file (1-based), for messages. */
  line: number;
}

/** `decide.webhook`: ask an HTTP service. */
export interface WebhookConfig {
  kind: 'webhook';
  /** `url`: http: or https: URL receiving a POST per question. */
  url: string;
  /** `timeout_ms`: how long one question may take, including waiting for a socket; ms, default 500. */
  timeoutMs: number;
  /** `cache_ttl_s`: how long an answer is reused; seconds, default 60 (0 = no cache). */
  cacheTtlS: number;
  /** `error_cache_ttl_s`: how long a failure is reused; seconds, default 5 (0 = no cache). */
  errorCacheTtlS: number;
  /** `max_sockets`: most concurrent connections to the service; default 16. */
  maxSockets: number;
  /** `max_cache_entries`: most cached answers (least recently used go first); default 100000. */
  maxCacheEntries: number;
  /** `cache_by_client`: include the client address in the cache key; default false. */
  cacheByClient: boolean;
}

/** `decide.module`: call `decide(info)` exported by a JavaScript module. */
export interface ModuleConfig {
  kind: 'module';
  /** Absolute path of the module file. */
  path: string;
}

/** The asynchronous decision source asked when no rule matched. */
export type DecideConfig = WebhookConfig | ModuleConfig;

/** NFQUEUE packet marks the engine sets per verdict (`marks`); all within `mask`. */
export interface Marks {
  mask: number;
  allow: number;
  block: number;
  inspect: number;
  /**
   * `answer`: a bit outside `mask` the rules add to a flow whose first ClientHello the binding let
   * on, so the kernel ends its inspection on the server's ServerHello (iptables/README.md); 0 turns
   * that off. Default 0x400.
   */
  answer: number;
}

/** Resource limits (`limits`); all counts are per engine unless the name says per flow. */
export interface Limits {
  /** Flows tracked at once; default 262144. */
  maxFlows: number;
  /** Flows being inspected (packets held) at once; default 65536. */
  maxInspectingFlows: number;
  /** Packets held per flow while deciding; default 64. */
  maxHeldPacketsPerFlow: number;
  /** Bytes held per flow while deciding; default 262144. */
  maxHeldBytesPerFlow: number;
  /** Out-of-order bytes buffered per flow; default 262144. */
  maxOooBytesPerFlow: number;
  /** Bytes held over all flows; default 268435456 (256 MiB). */
  maxHeldBytesTotal: number;
  /** Largest TLS ClientHello inspected, in bytes; default 65536. */
  maxHelloBytes: number;
  /** Largest HTTP request head inspected, in bytes; default 32768. */
  maxRequestHeadBytes: number;
}

/** Flow idle timeouts (`timeouts`), in seconds. */
export interface Timeouts {
  /** Handshake not completed; default 30. */
  synS: number;
  /** Established and idle; default 3600. */
  establishedS: number;
  /** After FIN or RST; default 30. */
  closingS: number;
  /** Inspection not finished (no complete hello or request head); default 30. */
  inspectingS: number;
}

/** A loaded configuration: every key present, defaults filled in. */
export interface Config {
  /** Absolute path of the file it came from; null for the built-in one. */
  file: string | null;
  /** `queue` / `queues`: NFQUEUE numbers; default 0. */
  queues: QueueRange;
  /** `default`: verdict when no rule matched and no source answered; default allow. */
  default: Verdict;
  /** `decision_timeout_ms`: a decision not settled by then gets onTimeout; ms, default 2000. */
  decisionTimeoutMs: number;
  /** `on_timeout`: default allow. */
  onTimeout: Verdict;
  /** `block_action`: reset (RST both ends), drop, or page (HTTP 403 on plain HTTP, else reset); default reset. */
  blockAction: 'reset' | 'drop' | 'page';
  /** `tls_alert`: send a TLS access_denied alert to the client before resetting; default false. */
  tlsAlert: boolean;
  /** `rules`: first match wins. */
  rules: RuleConfig[];
  /** `decide`: asked when no rule matched; null when absent. */
  decide: DecideConfig | null;
  /** `on_error`: verdict when the source fails; default allow. */
  onError: Verdict;
  /** `metrics`: Prometheus listener; null (off) when absent. */
  metrics: { host: string; port: number } | null;
  /** `control`: control socket path; default /run/flowgate/control.sock; null when `false`. */
  control: string | null;
  /** `on_shutdown`: verdict for held packets on SIGTERM/SIGINT; default allow. */
  onShutdown: Verdict;
  /** `on_conflict`: overlapping bytes that differ: block the flow or drop the packet; default block. */
  onConflict: 'block' | 'drop-packet';
  /** `on_ambiguous`: e.g. two different names in one hello; default block. */
  onAmbiguous: Verdict;
  /** `on_invalid`: malformed TLS or HTTP; default block. */
  onInvalid: Verdict;
  /** `on_limit`: a limit was hit; default block. */
  onLimit: Verdict;
  /** `midstream`: flows whose handshake was not seen; default inspect. */
  midstream: 'inspect' | 'allow' | 'block';
  /** `fail_open`: accept packets when the engine is overloaded or failing; default false. */
  failOpen: boolean;
  /** `queue_maxlen`: kernel queue length, in packets; default 65536. */
  queueMaxlen: number;
  /**
   * `handshake_log`: with one queue, read the bare SYN/SYN-ACKs `flowgate rules` logs to NFLOG
   * group N (N = the queue number) instead of queueing them; default true.
   */
  handshakeLog: boolean;
  /** `marks`: default mask 0x300, allow 0x100, block 0x200, inspect 0x300, answer 0x400. */
  marks: Marks;
  limits: Limits;
  timeouts: Timeouts;
  /** `log_format`: json or pretty; default json. */
  logFormat: 'json' | 'pretty';
}

/** The default control socket path. */
export const DEFAULT_CONTROL_SOCKET = '/run/flowgate/control.sock';

/** A configuration with every default and no rules: the built-in observe policy. */
export function defaultConfig(): Config {
  return {
    file: null,
    queues: { first: 0, last: 0 },
    default: 'allow',
    decisionTimeoutMs: 2000,
    onTimeout: 'allow',
    blockAction: 'reset',
    tlsAlert: false,
    rules: [],
    decide: null,
    onError: 'allow',
    metrics: null,
    control: DEFAULT_CONTROL_SOCKET,
    onShutdown: 'allow',
    onConflict: 'block',
    onAmbiguous: 'block',
    onInvalid: 'block',
    onLimit: 'block',
    midstream: 'inspect',
    failOpen: false,
    queueMaxlen: 65536,
    handshakeLog: true,
    marks: { mask: 0x300, allow: 0x100, block: 0x200, inspect: 0x300, answer: 0x400 },
    limits: {
      maxFlows: 262144,
      maxInspectingFlows: 65536,
      maxHeldPacketsPerFlow: 64,
      maxHeldBytesPerFlow: 262144,
      maxOooBytesPerFlow: 262144,
      maxHeldBytesTotal: 268435456,
      maxHelloBytes: 65536,
      maxRequestHeadBytes: 32768,
    },
    timeouts: { synS: 30, establishedS: 3600, closingS: 30, inspectingS: 30 },
    logFormat: 'json',
  };
}
