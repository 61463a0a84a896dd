/**
 * The client-stream analyzer: picks TLS, HTTP or unknown from the first bytes and turns the
 * reassembled stream into units to decide (a ClientHello, each HTTP request head).
 */

/**
 * What the policy learns about one unit of a flow: a TLS flow (its ClientHello), one HTTP
 * request, or a flow carrying neither. Names are normalised by names.ts.
 */
export interface UnitInfo {
  app: 'tls' | 'http' | 'unknown';
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

/** One thing found in the stream, in stream order. Offsets are client-stream offsets. */
export type AnalyzerEvent =
  /** A complete unit to decide. Bytes from `start` on are covered by its decision; `opaque`: after it nothing more is inspected. */
  | { kind: 'unit'; start: number; info: UnitInfo; opaque: boolean }
  /** The stream is malformed for its protocol (`reason` is short, e.g. `tls:bad-extension-length`). */
  | { kind: 'invalid'; start: number; reason: string; info: UnitInfo }
  /** The unit can be read more than one way (EVASION.md); `reason` becomes `ambiguous:REASON`. */
  | { kind: 'ambiguous'; start: number; reason: string; info: UnitInfo }
  /** Nothing from `start` on needs inspection (after a ClientHello with no retry): the flow can bypass. */
  | { kind: 'end'; start: number }
  /** Bytes from `start` to the frontier need no decision but the flow stays under inspection (a STARTTLS prefix). */
  | { kind: 'pass'; start: number };

/** Limits of the analyzers, in bytes. */
export interface AnalyzerLimits {
  /** Largest ClientHello handshake message accepted. Default 65536. */
  maxHelloBytes: number;
  /** Largest HTTP request head accepted. Default 32768. */
  maxRequestHeadBytes: number;
}

/** Defaults for {@link AnalyzerLimits}. */
export const DEFAULT_ANALYZER_LIMITS: AnalyzerLimits = { maxHelloBytes: 65536, maxRequestHeadBytes: 32768 };

/** The analyzer the engine drives for each flow's client stream. */
export interface StreamAnalyzer {
  /**
   * Feeds the next in-order client bytes, which start at stream offset `offset`. `retained`, when
   * given, holds every byte the stream still keeps up to the end of `bytes`, from `consumed()` or
   * earlier: an analyzer may read earlier bytes there instead of keeping a copy. Views are valid
   * for the call only.
   */
  feed(bytes: Uint8Array, offset: number, retained?: Uint8Array): AnalyzerEvent[];
  /**
   * Stream offset of the first byte that belongs to a unit not yet reported (an incomplete head),
   * or Infinity when the bytes seen so far need no decision beyond those reported (a request body).
   */
  frontier(): number;
  /** Stream offset before which bytes are no longer needed by the analyzer. */
  consumed(): number;
  /** Called after one of its units was allowed without ending inspection; may report more. */
  settled?(): AnalyzerEvent[];
  /**
   * After a first ClientHello, waiting for the client's next record to tell whether a second hello
   * follows: the stream offset where that record starts, when every byte before it was fed and
   * none of it; -1 otherwise. The engine then lets the kernel queue's binding read that record.
   */
  recordBoundary?(): number;
  /**
   * The server has answered the client: a client packet acknowledged server data beyond the
   * SYN-ACK. Until then, after a ClientHello, nothing but a ChangeCipherSpec (or early data) may
   * end its inspection or follow it (see the TLS analyzer).
   */
  serverAnswered?(): void;
  /**
   * Between a first ClientHello and the end of its inspection: bytes read and released meanwhile
   * must be kept, so that a different copy of them is a conflict (a skipped record the server
   * discarded must not shift where flowgate reads the next one).
   */
  handshaking?(): boolean;
}
