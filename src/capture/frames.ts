/**
 * Frames of a capture file as offsets into the buffer they were read into: one set of typed
 * arrays per batch instead of an object and a view per frame (`readCaptureFrames`). A consumer
 * that only looks at each frame once, as replay does, makes the one view it needs itself.
 */
import type { CaptureRecord } from './pcapfile.js';

const EMPTY = new Uint8Array(0);

/**
 * Up to `capacity` consecutive frames. Frame `i` is `bytes[start[i], start[i] + caplen[i])`,
 * captured at `tsMicros[i]` on a link of type `linktype[i]`; its number is `first + i`. The
 * batch is filled in place: what it holds is valid until the reader is asked for the next one.
 */
export class FrameBatch {
  /** The buffer the frames are in (a view into a read chunk). */
  bytes: Uint8Array = EMPTY;
  /** Frames held (at most `capacity`). */
  length = 0;
  /** 1-based number of frame 0, as tshark counts them. */
  first = 0;
  /** Capture time in whole microseconds since the Unix epoch. */
  readonly tsMicros: Float64Array;
  /** LINKTYPE_* of the interface each frame was captured on (see linktype.ts). */
  readonly linktype: Int32Array;
  /** Offset of each frame's captured bytes in `bytes`. */
  readonly start: Int32Array;
  /** Captured bytes of each frame (at most the snap length). */
  readonly caplen: Int32Array;
  /** Length of each frame on the wire. */
  readonly origLen: Uint32Array;

  constructor(readonly capacity: number) {
    this.tsMicros = new Float64Array(capacity);
    this.linktype = new Int32Array(capacity);
    this.start = new Int32Array(capacity);
    this.caplen = new Int32Array(capacity);
    this.origLen = new Uint32Array(capacity);
  }

  /** Empties the batch for frames in `bytes`, the first of them numbered `first`. */
  reset(bytes: Uint8Array, first: number): void {
    this.bytes = bytes;
    this.first = first;
    this.length = 0;
  }

  /** Appends a frame (the caller checks `length < capacity`). */
  add(tsMicros: number, linktype: number, start: number, caplen: number, origLen: number): void {
    const i = this.length++;
    this.tsMicros[i] = tsMicros;
    this.linktype[i] = linktype;
    this.start[i] = start;
    this.caplen[i] = caplen;
    this.origLen[i] = origLen;
  }

  /** Frame `i` as a record whose `data` is a view into `bytes`. */
  record(i: number): CaptureRecord {
    const start = this.start[i]!;
    return {
      index: this.first + i,
      tsMicros: this.tsMicros[i]!,
      linktype: this.linktype[i]!,
      data: this.bytes.subarray(start, start + this.caplen[i]!),
      origLen: this.origLen[i]!,
    };
  }
}
