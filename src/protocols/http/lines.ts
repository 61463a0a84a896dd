/**
 * Cuts a byte stream fed in chunks of any size into LF-terminated lines. Lines that lie inside
 * one chunk are handed out as views of it; only a line cut by a chunk boundary is copied.
 */
import { LF } from './syntax.js';

/** `next` found a whole line: see `buf`, `start`, `lf`, `offset`, `after`. */
export const LINE = 0;
/** `next` used up the chunk without finding the end of the line (bytes kept). */
export const MORE = 1;
/** The line reaches the limit: its first bytes, up to the limit, are in `partial`. */
export const TOO_LONG = 2;

/** The partial line of a splitter that never had one: shared (a reader is made per flow). */
const NO_BYTES = Buffer.alloc(0);

/** Hands out the lines of a stream one at a time (one splitter per reader). */
export class LineSplitter {
  /** Bytes of a line begun in an earlier chunk (a copy), `partialLength` of them. */
  partial: Buffer = NO_BYTES;
  partialLength = 0;
  /** Stream offset of the first byte of `partial`; meaningful while `partialLength` > 0. */
  partialOffset = 0;

  /** After LINE: the line is `buf[start..lf]`, LF included, at stream offset `offset`. */
  buf: Buffer = this.partial;
  start = 0;
  lf = 0;
  offset = 0;
  /** After LINE: index in the chunk just past the line. */
  after = 0;

  /**
   * Looks for the next line in `chunk` from index `i` (`chunk[0]` is at stream offset `base`).
   * A line whose LF would sit at stream offset `limit` or later is TOO_LONG. Returns LINE, MORE
   * or TOO_LONG.
   */
  next(chunk: Buffer, i: number, base: number, limit: number): number {
    const lf = chunk.indexOf(LF, i);
    const lineOffset = this.partialLength > 0 ? this.partialOffset : base + i;
    if (lf >= 0 && base + lf < limit) {
      if (this.partialLength === 0) {
        this.buf = chunk;
        this.start = i;
        this.lf = lf;
      } else {
        this.append(chunk, i, lf + 1);
        this.buf = this.partial;
        this.start = 0;
        this.lf = this.partialLength - 1;
        this.partialLength = 0;
      }
      this.offset = lineOffset;
      this.after = lf + 1;
      return LINE;
    }
    if (this.partialLength === 0) this.partialOffset = base + i;
    const stop = lf >= 0 ? lf + 1 : chunk.length;
    if (base + stop > limit) {
      this.append(chunk, i, Math.max(i, limit - base));
      return TOO_LONG;
    }
    this.append(chunk, i, stop);
    return MORE;
  }

  /** Drops any partial line (the stream moved past it). */
  clear(): void {
    this.partialLength = 0;
  }

  private append(src: Buffer, from: number, to: number): void {
    const n = to - from;
    if (n <= 0) return;
    const need = this.partialLength + n;
    if (need > this.partial.length) {
      const grown = Buffer.allocUnsafe(Math.max(need, this.partial.length * 2, 256));
      this.partial.copy(grown, 0, 0, this.partialLength);
      this.partial = grown;
    }
    src.copy(this.partial, this.partialLength, from, to);
    this.partialLength = need;
  }
}
