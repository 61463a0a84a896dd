/**
 * What the HTTP/1.x request reader reports: the request heads it decoded and the events that
 * walk the client-to-server stream (request, body end, tunnel, invalid, ambiguous).
 */

/** How the request-target was written (RFC 9112 section 3.2). */
export type TargetForm = 'origin' | 'absolute' | 'authority' | 'asterisk';

/**
 * One decoded request head. Strings are the bytes as sent, read as latin1 (one character per
 * byte); they are copies and outlive the chunks they came from.
 */
export interface HttpRequest {
  /** The method token as sent (case-sensitive: `get` is not `GET`). */
  method: string;
  /** The request-target as sent. */
  target: string;
  targetForm: TargetForm;
  version: '1.0' | '1.1';
  /**
   * Path and query as sent: the whole target in origin-form, the part after the authority in
   * absolute-form (`/` when that part is empty, `/` prefixed to a bare `?query`), `*` in
   * asterisk-form, '' in authority-form.
   */
  path: string;
  /**
   * The name the policy matches, normalised (lowercase, no trailing dot, no port, IPv6 without
   * brackets): the target's host for absolute-form and CONNECT (RFC 9112 section 3.2.2), else the
   * Host header's. Null when there is none, when Host is empty or repeated, or when the name
   * failed normalisation.
   */
  host: string | null;
  /** The port that came with `host`, when one was written. */
  port?: number;
  /**
   * The Host header normalised like `host` (whatever the target says); '' for an empty Host;
   * null when Host is absent, repeated or fails normalisation (the raw values stay in `headers`).
   */
  hostHeader: string | null;
  /** Every header line in order, name lowercased, value trimmed of SP/HTAB (obs-folds joined by SP). */
  headers: Array<[string, string]>;
  /** The body length from Content-Length, when that framed the body. */
  contentLength?: number;
  /** The body is chunked (Transfer-Encoding ending in `chunked`). */
  chunked: boolean;
  /** The client asked to close after this request (`Connection: close`, or HTTP/1.0 without keep-alive). */
  connectionClose: boolean;
  /** The Upgrade header value when present (several joined by `, `), whether or not it takes effect. */
  upgrade?: string;
}

/** Why a stream was not readable as HTTP/1.x; parsing stops after an `invalid` event. */
export type HttpInvalidReason =
  | 'bad method'
  | 'bad request line'
  | 'http/0.9'
  | 'bad version'
  | 'unsupported version'
  | 'h2 preface'
  | 'bad target'
  | 'bad connect target'
  | 'asterisk-form without OPTIONS'
  | 'bad header line'
  | 'bad header name'
  | 'bad header value'
  | 'head too large'
  | 'bad chunk size'
  | 'bad chunk extension'
  | 'bad chunk terminator'
  | 'chunk line too long'
  | 'bad trailer'
  | 'trailers too large';

/**
 * Why a request is ambiguous: servers read it differently, or RFC 9112 says to reject it while
 * lenient servers accept it (EVASION.md 15-31). Reported to the policy as `ambiguous:WHY`.
 */
export type HttpAmbiguousReason =
  | 'bare-cr'
  | 'space-before-colon'
  | 'obs-fold'
  | 'duplicate-host'
  | 'bad-host'
  | 'bad-target'
  | 'cl-te'
  | 'conflicting-length'
  | 'bad-length'
  | 'bad-te'
  | 'te-in-http10'
  | 'connect-body';

/** A complete request head, with its absolute stream offsets (`headEnd` is one past the blank line). */
export interface HttpRequestEvent {
  kind: 'request';
  request: HttpRequest;
  /** Offset of the request line's first byte (leading empty lines are skipped, RFC 9112 section 2.2). */
  headStart: number;
  headEnd: number;
}

/** The current request's body ended at `end` (exclusive); the next request may start there. */
export interface HttpBodyEndEvent {
  kind: 'bodyEnd';
  end: number;
}

/** The stream is not HTTP/1.x or is malformed at `offset`; nothing more is reported. */
export interface HttpInvalidEvent {
  kind: 'invalid';
  reason: HttpInvalidReason;
  offset: number;
}

/**
 * A request servers may read differently (blocked by default). It replaces the `request` event.
 * With `stop: false` the reader knew where the request ends and goes on (`bodyEnd`, further
 * requests); with `stop: true` (framing unknown, or a bare CR) nothing more is reported.
 */
export interface HttpAmbiguousEvent {
  kind: 'ambiguous';
  reason: HttpAmbiguousReason;
  /** The request as this reader understood it, when the head could be read at all. */
  request?: HttpRequest;
  /**
   * Stream offset of the line where the problem was found; for problems of the head as a whole
   * (framing, Host, target) the request line's offset.
   */
  offset: number;
  /** Present with `request`: where its head starts and ends. */
  headStart?: number;
  headEnd?: number;
  stop: boolean;
}

/**
 * The bytes from `offset` on are not HTTP: a CONNECT head ended there (the tunnelled stream,
 * typically a TLS ClientHello, starts), or an Upgrade request's body ended there. The reader
 * cannot know whether the server agreed; nothing more is reported.
 */
export interface HttpTunnelEvent {
  kind: 'tunnel';
  offset: number;
}

/** Everything `HttpRequestReader.feed` reports, in stream order. */
export type HttpEvent = HttpRequestEvent | HttpBodyEndEvent | HttpInvalidEvent | HttpAmbiguousEvent | HttpTunnelEvent;

/** Limits of one reader; every one is counted from the stream, in bytes. */
export interface HttpReaderOptions {
  /**
   * Longest request head, in bytes, from the end of the previous message (leading empty lines
   * included) to the blank line included. Default 32768. Past it: `invalid` `head too large`.
   */
  maxHeadBytes?: number;
  /** Longest chunk-size line (extensions and CRLF included), in bytes. Default 4096. */
  maxChunkLineBytes?: number;
  /** Longest trailer section of a chunked body (final CRLF included), in bytes. Default 8192. */
  maxTrailerBytes?: number;
}
