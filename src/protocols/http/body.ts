/**
 * Follows a request body (Content-Length or chunked, RFC 9112 sections 6 and 7) only to find
 * where it ends, so the next pipelined request is found. Body bytes are skipped, never kept.
 * Chunk framing is read strictly (CRLF everywhere): a server that reads it differently would
 * see another next request, so anything unusual is `invalid`.
 */
import { LINE, LineSplitter, MORE } from './lines.js';
import { CR, HEX, HTAB, LF, TCHAR, isWs } from './syntax.js';
import type { HttpInvalidReason } from './types.js';

/** Where the body reader stands. */
type Phase = 'idle' | 'length' | 'size' | 'data' | 'dataCr' | 'dataLf' | 'trailer';

/** Limits of the body reader, in bytes (see HttpReaderOptions). */
export interface BodyLimits {
  maxChunkLineBytes: number;
  maxTrailerBytes: number;
}

/** Outcome of `BodyReader.feed`: bytes used, and whether the body ended or was malformed. */
export interface BodyStep {
  /** Index in the chunk of the first byte not used. */
  next: number;
  /** The body ended just before `next`. */
  done: boolean;
  invalid?: { reason: HttpInvalidReason; offset: number };
}

const MAX_HEX_DIGITS = 16;

/** Tracks one body at a time; `startLength` or `startChunked`, then `feed` until done. */
export class BodyReader {
  private phase: Phase = 'idle';
  private remaining = 0;
  private trailerStart = 0;
  private readonly lines = new LineSplitter();

  constructor(private readonly limits: BodyLimits) {}

  /** A body of `length` (> 0) bytes follows. */
  startLength(length: number): void {
    this.phase = 'length';
    this.remaining = length;
  }

  /** A chunked body follows. */
  startChunked(): void {
    this.phase = 'size';
    this.remaining = 0;
    this.lines.clear();
  }

  /** True while a body is being followed. */
  get active(): boolean {
    return this.phase !== 'idle';
  }

  /** Bytes left of a Content-Length body; undefined inside a chunked one; 0 when idle. */
  get lengthRemaining(): number | undefined {
    if (this.phase === 'length') return this.remaining;
    return this.phase === 'idle' ? 0 : undefined;
  }

  /** Consumes body bytes of `chunk` from index `i`; `chunk[0]` is at stream offset `base`. */
  feed(chunk: Buffer, i: number, base: number): BodyStep {
    const len = chunk.length;
    while (i < len) {
      switch (this.phase) {
        case 'idle':
          return { next: i, done: true };
        case 'length':
        case 'data': {
          const n = Math.min(this.remaining, len - i);
          this.remaining -= n;
          i += n;
          if (this.remaining > 0) break;
          if (this.phase === 'length') return this.end(i);
          this.phase = 'dataCr';
          break;
        }
        case 'dataCr':
        case 'dataLf': {
          const want = this.phase === 'dataCr' ? CR : LF;
          if (chunk[i] !== want) return this.fail(i, 'bad chunk terminator', base + i);
          i++;
          this.phase = this.phase === 'dataCr' ? 'dataLf' : 'size';
          break;
        }
        case 'size':
        case 'trailer': {
          const lines = this.lines;
          const limit =
            this.phase === 'size'
              ? (lines.partialLength > 0 ? lines.partialOffset : base + i) + this.limits.maxChunkLineBytes
              : this.trailerStart + this.limits.maxTrailerBytes;
          const got = lines.next(chunk, i, base, limit);
          if (got === MORE) return { next: len, done: false };
          if (got !== LINE) {
            const reason = this.phase === 'size' ? 'chunk line too long' : 'trailers too large';
            return this.fail(len, reason, limit);
          }
          i = lines.after;
          const problem =
            this.phase === 'size'
              ? this.sizeLine(lines.buf, lines.start, lines.lf, lines.offset)
              : this.trailerLine(lines.buf, lines.start, lines.lf);
          if (problem !== null) return this.fail(i, problem, lines.offset);
          if ((this.phase as Phase) === 'idle') return this.end(i); // the empty trailer line
          break;
        }
      }
    }
    return { next: i, done: false };
  }

  /** chunk-size [ chunk-ext ] CRLF; sets up the data or trailer phase. */
  private sizeLine(buf: Buffer, s: number, lf: number, offset: number): HttpInvalidReason | null {
    if (lf === s || buf[lf - 1] !== CR) return 'bad chunk terminator';
    const e = lf - 1;
    let size = 0;
    let i = s;
    while (i < e && HEX[buf[i]!]! >= 0) {
      size = size * 16 + HEX[buf[i]!]!;
      i++;
    }
    if (i === s || i - s > MAX_HEX_DIGITS || size > Number.MAX_SAFE_INTEGER) return 'bad chunk size';
    if (i < e) {
      // RFC 9112 section 7.1.1: BWS ";" chunk-ext; its bytes are skipped but must be plain text.
      while (i < e && isWs(buf[i])) i++;
      if (buf[i] !== 0x3b) return 'bad chunk size';
      for (; i < e; i++) {
        const b = buf[i]!;
        if (b !== HTAB && (b < 0x20 || b === 0x7f)) return 'bad chunk extension';
      }
    }
    if (size === 0) {
      this.phase = 'trailer';
      this.trailerStart = offset + (lf - s) + 1;
    } else {
      this.phase = 'data';
      this.remaining = size;
    }
    return null;
  }

  /** One trailer field line, or the empty line that ends the body (sets phase idle). */
  private trailerLine(buf: Buffer, s: number, lf: number): HttpInvalidReason | null {
    if (lf === s || buf[lf - 1] !== CR) return 'bad chunk terminator';
    const e = lf - 1;
    if (e === s) {
      this.phase = 'idle';
      return null;
    }
    let i = s;
    while (i < e && TCHAR[buf[i]!] === 1) i++;
    if (i === s || buf[i] !== 0x3a) return 'bad trailer';
    for (i++; i < e; i++) {
      const b = buf[i]!;
      if (b !== HTAB && (b < 0x20 || b === 0x7f)) return 'bad trailer';
    }
    return null;
  }

  private end(next: number): BodyStep {
    this.phase = 'idle';
    this.lines.clear();
    return { next, done: true };
  }

  private fail(next: number, reason: HttpInvalidReason, offset: number): BodyStep {
    this.phase = 'idle';
    this.lines.clear();
    return { next, done: false, invalid: { reason, offset } };
  }
}
