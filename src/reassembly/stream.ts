/**
 * One direction of a TCP connection rebuilt by sequence number (EVASION.md G1, G3).
 *
 * Lifecycle:
 *  1. created with the sequence number of the first data byte (ISN + 1, or the first seq seen midstream);
 *  2. `insert` 0..n times, in any order, with any overlap: in-order bytes are appended to the
 *     retained buffer, bytes ahead of the next expected one wait (up to `maxOutOfOrderBytes`);
 *  3. the caller reads what became contiguous through `view`, and lets go of bytes it no longer
 *     needs with `release`, which also bounds memory.
 * Bytes are compared wherever two copies of a range meet: a different copy is a conflict, reported
 * and never merged, because the server might keep either.
 */
import { seqAdd, seqDiff } from './seq.js';

/** Limits of one direction; each hit is reported to the caller, never thrown. */
export interface StreamLimits {
  /** Bytes held ahead of a hole before insert answers `limit`. Default 262144 (256 KiB). */
  maxOutOfOrderBytes: number;
  /** Bytes kept in order (not yet released by the caller) before insert answers `limit`. Default 262144. */
  maxRetainedBytes: number;
}

/** Defaults for {@link StreamLimits}. */
export const DEFAULT_STREAM_LIMITS: StreamLimits = {
  maxOutOfOrderBytes: 256 * 1024,
  maxRetainedBytes: 256 * 1024,
};

/** What one insert did to the stream. */
export type InsertResult =
  /** `added` new bytes became contiguous (0 when they were buffered ahead of a hole). */
  | { kind: 'ok'; added: number; buffered: number; old: number }
  /** Every byte was already known, identical (a retransmission); `retained` false if some were below what is kept. */
  | { kind: 'duplicate'; retained: boolean }
  /** A byte differs from a copy already seen at the same sequence number; nothing was stored. */
  | { kind: 'conflict'; seq: number }
  /** Storing it would exceed a limit; nothing was stored. */
  | { kind: 'limit'; which: 'outOfOrder' | 'retained' };

interface Pending {
  seq: number;
  data: Uint8Array;
}

/** The segments past a hole and their bytes: made with the first such segment, dropped with the last. */
interface PendingSet {
  /** Sorted by seq, non-overlapping, never empty. */
  segs: Pending[];
  bytes: number;
}

/** Shared by every stream with nothing retained, so an idle stream costs no buffer. */
const EMPTY = new ArrayBuffer(0);
const NO_SEGS: readonly Pending[] = Object.freeze([]);

/** A reassembled byte stream for one direction. Bytes are copied in: inputs may be views over a batch. */
export class StreamReassembler {
  /**
   * Sequence number of the first retained byte, as a signed 32-bit integer (`seq | 0`): V8 keeps
   * that in the object, where an unsigned number of 2^31 or more costs a 16-byte box. seqDiff and
   * seqAdd give the same answers for either form.
   */
  private base: number;
  /**
   * Retained bytes; grown on demand (tens of thousands of flows each hold a partial hello). The
   * buffer alone, views made when read: a Uint8Array kept with it cost 96 bytes a flow.
   */
  private buf: ArrayBuffer = EMPTY;
  private len = 0;
  /** Segments past a hole, undefined when there are none (most streams, most of the time). */
  private pending: PendingSet | undefined = undefined;
  /**
   * The limits, the caller's object itself when it gives both (an engine passes one object to all
   * its streams: two fields of their own cost 8 bytes a stream more); not to be changed after.
   */
  private readonly limits: StreamLimits;
  /** Stream offset (bytes since the first byte) of `base`. */
  private baseOffset = 0;

  /** `limits` is kept, not copied: the engine shares one object among all its streams. */
  constructor(firstSeq: number, limits: StreamLimits = DEFAULT_STREAM_LIMITS) {
    this.base = firstSeq | 0;
    this.limits = limits;
  }

  /**
   * Next expected sequence number (one past the last contiguous byte), signed like `base`: always
   * `base + len`, so it is computed rather than kept.
   */
  private get nextSeq(): number {
    return (this.base + this.len) | 0;
  }

  /** Next expected sequence number. */
  get next(): number {
    return this.nextSeq >>> 0;
  }

  /** Stream offset of the next expected byte (bytes delivered in order so far). */
  get offset(): number {
    return this.baseOffset + this.len;
  }

  /** Stream offset of the first byte still retained. */
  get retainedFrom(): number {
    return this.baseOffset;
  }

  /** Bytes waiting past a hole. */
  get outOfOrderBytes(): number {
    return this.pending?.bytes ?? 0;
  }

  /** Bytes retained in order. */
  get retainedBytes(): number {
    return this.len;
  }

  /** Sequence number of the byte at stream offset `offset`. */
  seqAt(offset: number): number {
    return seqAdd(this.base, offset - this.baseOffset);
  }

  /** Stream offset of sequence number `seq` (relative to what is retained; may be negative or past the end). */
  offsetOf(seq: number): number {
    return this.baseOffset + seqDiff(seq, this.base);
  }

  /** The retained in-order bytes from stream offset `from` to the end (a view, valid until the next insert). */
  view(from = this.baseOffset): Uint8Array {
    const start = Math.min(Math.max(0, from - this.baseOffset), this.len);
    return new Uint8Array(this.buf, start, this.len - start);
  }

  /** Forgets retained bytes before stream offset `offset`; they can no longer be compared with retransmissions. */
  release(offset: number): void {
    const drop = Math.min(this.len, offset - this.baseOffset);
    if (drop <= 0) return;
    new Uint8Array(this.buf).copyWithin(0, drop, this.len);
    this.len -= drop;
    this.base = (this.base + drop) | 0;
    this.baseOffset += drop;
    if (this.len === 0 && this.buf.byteLength > 4096) this.buf = EMPTY;
  }

  /** Adds the payload of one segment starting at `seq`. */
  insert(seq: number, data: Uint8Array): InsertResult {
    if (data.length === 0) return { kind: 'duplicate', retained: true };
    let start = seqDiff(seq, this.nextSeq); // relative to next; negative = overlaps delivered bytes
    let old = 0;
    let retained = true;
    let piece = data;
    if (start < 0) {
      const overlap = Math.min(-start, piece.length);
      // Compare the part that overlaps retained bytes; the part below `base` cannot be checked.
      const relBase = seqDiff(seq, this.base); // offset of seq within buf (may be negative)
      const cmpFrom = Math.max(0, -relBase);
      const buf = new Uint8Array(this.buf);
      for (let i = cmpFrom; i < overlap; i++) {
        if (buf[relBase + i] !== piece[i]) return { kind: 'conflict', seq: seqAdd(seq, i) };
      }
      if (cmpFrom > 0) retained = false;
      old = overlap;
      piece = piece.subarray(overlap);
      start = 0;
      if (piece.length === 0) return { kind: 'duplicate', retained };
    }
    if (start === 0 && this.pending === undefined) {
      // In order with no hole: straight into the retained buffer (what the general path below ends up doing).
      if (this.len + piece.length > this.limits.maxRetainedBytes) return { kind: 'limit', which: 'retained' };
      this.append(piece);
      return { kind: 'ok', added: piece.length, buffered: 0, old };
    }
    // Check against pending segments and collect the new sub-ranges.
    const pieceStart = start;
    const pieceEnd = start + piece.length;
    const fresh: Array<[number, number]> = []; // [from, to) relative to next
    let cursor = pieceStart;
    for (const p of this.pending?.segs ?? NO_SEGS) {
      const ps = seqDiff(p.seq, this.nextSeq);
      const pe = ps + p.data.length;
      if (pe <= cursor) continue;
      if (ps >= pieceEnd) break;
      if (ps > cursor) fresh.push([cursor, ps]);
      const os = Math.max(ps, cursor);
      const oe = Math.min(pe, pieceEnd);
      for (let i = os; i < oe; i++) {
        if (p.data[i - ps] !== piece[i - pieceStart]) return { kind: 'conflict', seq: seqAdd(this.nextSeq, i) };
      }
      cursor = oe;
    }
    if (cursor < pieceEnd) fresh.push([cursor, pieceEnd]);
    if (fresh.length === 0) return { kind: 'duplicate', retained };

    let freshBytes = 0;
    for (const [a, b] of fresh) freshBytes += b - a;
    // A piece starting at `next` is contiguous all along (it fills any gaps between pending segments).
    if (pieceStart === 0) {
      if (this.len + pieceEnd > this.limits.maxRetainedBytes) return { kind: 'limit', which: 'retained' };
    } else if (this.outOfOrderBytes + freshBytes > this.limits.maxOutOfOrderBytes) {
      return { kind: 'limit', which: 'outOfOrder' };
    }
    for (const [a, b] of fresh) {
      this.addPending({ seq: seqAdd(this.nextSeq, a), data: piece.slice(a - pieceStart, b - pieceStart) });
    }
    const before = this.len;
    const buffered = this.drain();
    return { kind: 'ok', added: this.len - before, buffered, old };
  }

  private addPending(seg: Pending): void {
    const rel = seqDiff(seg.seq, this.nextSeq);
    const pending = (this.pending ??= { segs: [], bytes: 0 });
    const segs = pending.segs;
    let i = segs.length;
    while (i > 0 && seqDiff(segs[i - 1]!.seq, this.nextSeq) > rel) i--;
    segs.splice(i, 0, seg);
    pending.bytes += seg.data.length;
  }

  /** Moves pending segments that start at `next` into the retained buffer; returns bytes still pending. */
  private drain(): number {
    const pending = this.pending;
    if (pending === undefined) return 0;
    const segs = pending.segs;
    while (segs.length > 0 && seqDiff(segs[0]!.seq, this.nextSeq) === 0) {
      const seg = segs.shift()!;
      pending.bytes -= seg.data.length;
      this.append(seg.data);
    }
    if (segs.length > 0) return pending.bytes;
    this.pending = undefined;
    return 0;
  }

  private append(data: Uint8Array): void {
    let buf: Uint8Array;
    if (this.len + data.length > this.buf.byteLength) {
      // The first bytes get a buffer of their exact size; after that it doubles.
      const grown = new ArrayBuffer(Math.max(this.len + data.length, this.buf.byteLength * 2));
      buf = new Uint8Array(grown);
      if (this.len > 0) buf.set(new Uint8Array(this.buf, 0, this.len));
      this.buf = grown;
    } else {
      buf = new Uint8Array(this.buf);
    }
    buf.set(data, this.len);
    this.len += data.length;
  }
}

