/**
 * The incremental HTTP/1.x request-stream reader: fed the client-to-server bytes of one TCP
 * connection in order, it reports each request head as soon as it is complete and follows the
 * body to where the next (keep-alive or pipelined) request starts.
 *
 * Lifecycle of one reader:
 *   1. created for a flow whose first bytes `looksLikeHttp`;
 *   2. `feed(chunk)` 0..n times with consecutive stream bytes, chunks of any size; each call
 *      returns the events completed by that chunk, in stream order; for every request:
 *      `request` (or `ambiguous`), then `bodyEnd`, then maybe `tunnel`;
 *   3. after `invalid`, `tunnel` or a stopping `ambiguous` the reader is `finished`: later
 *      bytes are counted and ignored.
 * Feeding a stream whole, in pieces or byte by byte gives the same events.
 *
 * Reading rules (what lenient servers such as nginx and llhttp accept when that is safe; what
 * servers could read differently is `ambiguous`, see EVASION.md 15-31):
 * - empty lines (CRLF or bare LF) before a request line are skipped; bare LF ends lines;
 *   a CR anywhere but before LF is `ambiguous` `bare-cr` (stops: where the line ends is unclear);
 * - request line: method, target and version separated by runs of SP or HTAB (nginx accepts
 *   several spaces; no byte of a target can be whitespace, so there is one reading); trailing
 *   whitespace allowed, leading not; `PRI * HTTP/2.0` (h2c prior knowledge) is `invalid`
 *   `h2 preface` so the caller's policy for it applies; HTTP/0.9 and versions other than 1.0
 *   and 1.1 are `invalid`;
 * - field lines: names case-insensitive, values trimmed of SP/HTAB; whitespace before the colon,
 *   obs-fold, more than one Host, a Host or absolute-form/CONNECT authority that fails
 *   normalisation are `ambiguous` (the target's host wins over Host, RFC 9112 section 3.2.2, and
 *   is not ambiguous by itself); an empty Host means no name (`host: null`, `hostHeader: ''`);
 * - body framing (RFC 9112 section 6.3): Transfer-Encoding whose last coding is exactly
 *   `chunked` (each coding a token, `chunked` once), else one or more equal Content-Length
 *   values, else no body; CL with TE, differing or malformed lengths, other TE values and TE in
 *   HTTP/1.0 are `ambiguous` and stop reading. A Content-Length body is a body whatever the
 *   method (as nginx and llhttp read it; a server that ignores it on GET would see more);
 * - an `ambiguous` request goes on being read (`stop: false`) unless the framing is unknown, or
 *   the ambiguous line names Content-Length, Transfer-Encoding, Connection or Upgrade;
 * - Upgrade takes effect (a `tunnel` after the body) only with HTTP/1.1 and `Connection:
 *   upgrade`, as llhttp does; the reader cannot see whether the server agreed (101), so a
 *   refused upgrade followed by more requests goes unread: the caller must treat the tunnel
 *   as uninspected (h2c upgrades included, `request.upgrade` names the protocol);
 * - CONNECT needs an authority-form target with a port and is followed by `tunnel` at the
 *   end of its head (again without knowing the server's answer).
 */
import { BodyReader } from './body.js';
import { HeadBuilder } from './head.js';
import { LINE, LineSplitter, MORE } from './lines.js';
import { CR, checkMethod } from './syntax.js';
import { looksLikeHttp } from './sniff.js';
import type {
  HttpAmbiguousReason,
  HttpEvent,
  HttpInvalidReason,
  HttpReaderOptions,
} from './types.js';

export type * from './types.js';
export { looksLikeHttp } from './sniff.js';

/** Default longest request head, in bytes. */
export const DEFAULT_MAX_HEAD_BYTES = 32768;
/** Default longest chunk-size line, in bytes. */
export const DEFAULT_MAX_CHUNK_LINE_BYTES = 4096;
/** Default longest trailer section, in bytes. */
export const DEFAULT_MAX_TRAILER_BYTES = 8192;

const NO_EVENTS: readonly HttpEvent[] = Object.freeze([]);

/** Reads the requests of one client-to-server stream; see the module comment for the lifecycle. */
export class HttpRequestReader {
  /** The cheap method sniff used to pick this analyzer (see `looksLikeHttp`). */
  static readonly looksLikeHttp = looksLikeHttp;

  private phase: 'head' | 'body' | 'done' = 'head';
  /** Stream offset of the next byte to be fed. */
  private pos = 0;
  /** Stream offset where the current message (leading empty lines included) started. */
  private msgStart = 0;
  /** Stream offset of the current request line; -1 until it has been read. */
  private headStart = -1;
  /** Bytes of the partial request line already passed through `checkMethod`. */
  private methodScan = 0;
  private tunnelAfterBody = false;
  private out: HttpEvent[] | null = null;
  private readonly lines = new LineSplitter();
  private readonly head = new HeadBuilder();
  private readonly body: BodyReader;
  private readonly maxHeadBytes: number;

  constructor(options: HttpReaderOptions = {}) {
    this.maxHeadBytes = options.maxHeadBytes ?? DEFAULT_MAX_HEAD_BYTES;
    this.body = new BodyReader({
      maxChunkLineBytes: options.maxChunkLineBytes ?? DEFAULT_MAX_CHUNK_LINE_BYTES,
      maxTrailerBytes: options.maxTrailerBytes ?? DEFAULT_MAX_TRAILER_BYTES,
    });
  }

  /**
   * Takes the next bytes of the stream and returns the events they completed, in order (a
   * shared empty array when none: do not modify it). No event means more bytes are needed.
   * The chunk is not kept: only a line cut by the chunk's end is copied.
   */
  feed(chunk: Uint8Array): readonly HttpEvent[] {
    const base = this.pos;
    this.pos += chunk.length;
    if (this.phase === 'done' || chunk.length === 0) return NO_EVENTS;
    const buf = Buffer.isBuffer(chunk) ? chunk : Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength);
    this.out = null;
    let i = 0;
    while (i < buf.length && !this.finished) {
      if (this.phase === 'head') {
        i = this.readHead(buf, i, base);
        continue;
      }
      const step = this.body.feed(buf, i, base);
      i = step.next;
      if (step.invalid !== undefined) this.invalid(step.invalid.reason, step.invalid.offset);
      else if (step.done) this.endBody(base + i);
    }
    const out = this.out;
    this.out = null;
    return out ?? NO_EVENTS;
  }

  /** True when part of a request head (even only leading empty lines) arrived without its end. */
  needMoreForHead(): boolean {
    return this.phase === 'head' && this.pos > this.msgStart;
  }

  /** Bytes of the incomplete request head received so far (0 between requests and in a body). */
  get bufferedHeadBytes(): number {
    return this.phase === 'head' ? this.pos - this.msgStart : 0;
  }

  /** True while the reader is skipping a request body. */
  inBody(): boolean {
    return this.phase === 'body';
  }

  /** Bytes left of a Content-Length body; undefined inside a chunked body; 0 outside bodies. */
  get bodyRemaining(): number | undefined {
    return this.phase === 'body' ? this.body.lengthRemaining : 0;
  }

  /** Stream offset of the next byte to be fed (the number of bytes fed so far). */
  get offset(): number {
    return this.pos;
  }

  /** True once nothing more will be reported (after invalid, tunnel or a stopping ambiguous). */
  get finished(): boolean {
    return this.phase === 'done';
  }

  private readHead(buf: Buffer, i: number, base: number): number {
    const lines = this.lines;
    while (i < buf.length) {
      const limit = this.msgStart + this.maxHeadBytes;
      const got = lines.next(buf, i, base, limit);
      if (got === MORE) {
        if (this.headStart < 0) this.checkPartialMethod();
        return buf.length;
      }
      if (got !== LINE) {
        // The same check as on a whole request line, on the bytes below the limit.
        if (this.headStart < 0 && checkMethod(lines.partial, 0, 0, lines.partialLength) === 'bad') {
          this.invalid('bad method', lines.partialOffset);
        } else {
          this.invalid('head too large', limit);
        }
        return buf.length;
      }
      i = lines.after;
      this.methodScan = 0;
      if (!this.headLine(lines.buf, lines.start, lines.lf, lines.offset)) return i;
    }
    return i;
  }

  /** Rejects a stream that cannot be HTTP as soon as its first bytes show it (a TLS record, say). */
  private checkPartialMethod(): void {
    const lines = this.lines;
    if (this.methodScan < 0) return;
    const verdict = checkMethod(lines.partial, 0, this.methodScan, lines.partialLength);
    if (verdict === 'bad') this.invalid('bad method', lines.partialOffset);
    this.methodScan = verdict === 'undecided' ? lines.partialLength : -1;
  }

  /** One line of the head (`buf[s..lf]`, LF included); false when head reading stops or ends. */
  private headLine(buf: Buffer, s: number, lf: number, offset: number): boolean {
    let e = lf;
    if (e > s && buf[e - 1] === CR) e--;
    if (this.headStart < 0) {
      if (e === s) return true; // RFC 9112 section 2.2: empty lines before a request line
      if (checkMethod(buf, s, s, e) === 'bad') return this.invalid('bad method', offset);
      if (hasCr(buf, s, e)) return this.ambiguous('bare-cr', offset);
      this.headStart = offset;
      this.head.reset();
      const bad = this.head.requestLine(buf, s, e);
      return bad === null ? true : this.invalid(bad, offset);
    }
    if (e === s) {
      this.completeHead(offset + (lf - s) + 1);
      return false;
    }
    const bad = this.head.fieldLine(buf, s, e, offset);
    if (bad === null) return true;
    return hasCr(buf, s, e) ? this.ambiguous('bare-cr', offset) : this.invalid(bad, offset);
  }

  private completeHead(headEnd: number): void {
    const headStart = this.headStart;
    const { request, ambiguity, framing, tunnel } = this.head.finish(headStart);
    if (ambiguity !== undefined) {
      this.emit({ kind: 'ambiguous', reason: ambiguity.reason, request, offset: ambiguity.offset, headStart, headEnd, stop: ambiguity.stop });
      if (ambiguity.stop) {
        this.stop();
        return;
      }
    } else {
      this.emit({ kind: 'request', request, headStart, headEnd });
    }
    if (tunnel === 'connect') {
      this.emit({ kind: 'tunnel', offset: headEnd });
      this.stop();
      return;
    }
    this.tunnelAfterBody = tunnel === 'upgrade';
    if (framing.kind === 'none') this.endBody(headEnd);
    else {
      this.phase = 'body';
      if (framing.kind === 'length') this.body.startLength(framing.length);
      else this.body.startChunked();
    }
  }

  private endBody(end: number): void {
    this.emit({ kind: 'bodyEnd', end });
    if (this.tunnelAfterBody) {
      this.emit({ kind: 'tunnel', offset: end });
      this.stop();
      return;
    }
    this.phase = 'head';
    this.msgStart = end;
    this.headStart = -1;
    this.methodScan = 0;
    this.lines.clear();
  }

  private invalid(reason: HttpInvalidReason, offset: number): false {
    this.emit({ kind: 'invalid', reason, offset });
    this.stop();
    return false;
  }

  /** A problem found before the head could be read: no request to report, reading stops. */
  private ambiguous(reason: HttpAmbiguousReason, offset: number): false {
    this.emit({ kind: 'ambiguous', reason, offset, stop: true });
    this.stop();
    return false;
  }

  private stop(): void {
    this.phase = 'done';
    this.lines.clear();
  }

  private emit(event: HttpEvent): void {
    (this.out ??= []).push(event);
  }
}

function hasCr(buf: Buffer, s: number, e: number): boolean {
  for (let i = s; i < e; i++) if (buf[i] === CR) return true;
  return false;
}
