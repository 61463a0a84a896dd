/**
 * Capture files as a packet source for `replay`: pcap (microsecond and nanosecond, either byte
 * order) and pcapng (SHB in either byte order, IDB with if_tsresol/if_tsoffset, EPB, SPB, OPB;
 * other blocks skipped). The file is read in large chunks and parsed in place: each frame is
 * a range of its chunk, and a chunk's frames come out in batches of at most `BATCH_RECORDS`.
 *
 * Lifecycle of a read:
 * 1. the format is detected from the magic number;
 * 2. each chunk's whole records are yielded, as offsets into the chunk (`readCaptureFrames`),
 *    in arrays of at most `BATCH_RECORDS` (`readCaptureBatches`) or one by one (`readCapture`),
 *    with `onProgress` called once per chunk, before its last batch; the next chunk is being
 *    read while that batch is consumed;
 * 3. at the end of the file, or at the first corrupt record, every good record has been yielded;
 *    then a truncated or corrupt file throws a `CaptureError`, and the file is closed in every case.
 */
import { open } from 'node:fs/promises';
import { FlowgateError } from '../errors.js';
import { FrameBatch } from './frames.js';

/**
 * One captured frame. `data` is a view into a read buffer that is never reused (unless
 * `reuseChunks` is set): it stays valid as long as it is referenced, and keeps its whole chunk
 * (`chunkBytes`) alive; copy it if it must be held for long.
 */
export interface CaptureRecord {
  /** 1-based frame number, as tshark counts them. */
  index: number;
  /** Capture time in whole microseconds since the Unix epoch (finer resolutions are truncated). */
  tsMicros: number;
  /** LINKTYPE_* of the interface the frame was captured on (see linktype.ts). */
  linktype: number;
  /** The captured bytes (at most the snap length). */
  data: Uint8Array;
  /** The frame's length on the wire. */
  origLen: number;
}

/** Options of `readCapture`, `readCaptureBatches` and `readCaptureFrames`. */
export interface ReadCaptureOptions {
  /** Called after every chunk read, with bytes read so far and the file size. */
  onProgress?(bytesRead: number, totalBytes: number): void;
  /** Bytes read per read call. Default 1 MiB (`DEFAULT_CHUNK_BYTES`). */
  chunkBytes?: number;
  /** Largest record (pcap captured length, pcapng block) before the file is called corrupt. Default 16 MiB. */
  maxRecordBytes?: number;
  /**
   * Read into two buffers in turn rather than a fresh one per chunk: a record's `data` is then
   * only valid until the next batch is asked for (`readCaptureBatches`, `readCaptureFrames`). For
   * consumers that copy what they keep, as the engine does: a fresh megabyte per chunk is new
   * memory for the kernel to zero and external memory that makes V8 collect more often.
   */
  reuseChunks?: boolean;
}

/** Default `chunkBytes` (bytes). */
export const DEFAULT_CHUNK_BYTES = 1 << 20;
/** Default `maxRecordBytes` (bytes). */
export const DEFAULT_MAX_RECORD_BYTES = 16 << 20;
/**
 * Most records in one batch of `readCaptureFrames` / `readCaptureBatches` (records). A chunk is parsed a batch at a
 * time, so the records not yet consumed do not pile up (and survive garbage collections).
 */
export const BATCH_RECORDS = 512;

/** Error codes of `CaptureError`. */
export type CaptureErrorCode = 'ERR_CAPTURE_TRUNCATED' | 'ERR_CAPTURE_CORRUPT';

/** A capture file that ends early or holds a corrupt record; every record before it was yielded. */
export class CaptureError extends FlowgateError {
  /** Frames yielded before the problem. */
  readonly framesRead: number;
  /** File offset (bytes) of the record or block that could not be read. */
  readonly offset: number;
  constructor(code: CaptureErrorCode, message: string, framesRead: number, offset: number) {
    super(code, message);
    this.name = 'CaptureError';
    this.framesRead = framesRead;
    this.offset = offset;
  }
}

const PCAP_US = 0xa1b2c3d4;
const PCAP_NS = 0xa1b23c4d;
const PCAPNG_SHB = 0x0a0d0d0a;
const PCAPNG_BOM = 0x1a2b3c4d;
const BLOCK_IDB = 1;
const BLOCK_OPB = 2;
const BLOCK_SPB = 3;
const BLOCK_EPB = 6;

/** Per-interface timestamp conversion of a pcapng section. */
interface Iface {
  linktype: number;
  snaplen: number;
  /** Microseconds per unit when the resolution is 10^-k, k <= 6; else 0. */
  mul: number;
  /** Units per microsecond when the resolution is 10^-k, 6 < k <= 9; else 0. */
  div: number;
  /** Units per second otherwise (10^-k with k > 9, or 2^-n). */
  unitsPerSec: bigint;
  offsetMicros: number;
}

/**
 * Incremental parser of a whole capture file, fed consecutive buffers. No I/O: it reports what
 * it consumed, what it still needs, and the first corruption it met.
 */
class CaptureParser {
  private format: 'unknown' | 'pcap' | 'pcapng' = 'unknown';
  private le = true;
  private pcapNano = false;
  private pcapLinktype = 0;
  private ifaces: Iface[] = [];
  private lastTs = 0;
  /** Frames parsed so far. */
  frames = 0;
  /** File offset of the first byte not yet consumed. */
  offset = 0;
  /** Size of the incomplete record at `offset`, when known (bytes). */
  pending = 0;
  /** Set when parsing stopped at a corrupt record. */
  error: CaptureError | null = null;

  constructor(
    private readonly name: string,
    private readonly maxRecord: number,
  ) {}

  /**
   * Parses the whole records of `buf` (which starts at file offset `offset`) into `out`, emptied
   * first, until it is full; returns bytes consumed.
   */
  parse(buf: Uint8Array, out: FrameBatch): number {
    out.reset(buf, this.frames + 1);
    const dv = new DataView(buf.buffer, buf.byteOffset, buf.byteLength);
    let p = 0;
    if (this.format === 'unknown') {
      if (buf.length < 4) return 0;
      const magicBe = dv.getUint32(0, false);
      const magicLe = dv.getUint32(0, true);
      if (magicBe === PCAPNG_SHB) {
        this.format = 'pcapng';
      } else if (magicBe === PCAP_US || magicBe === PCAP_NS || magicLe === PCAP_US || magicLe === PCAP_NS) {
        if (buf.length < 24) return 0;
        this.format = 'pcap';
        this.le = magicLe === PCAP_US || magicLe === PCAP_NS;
        this.pcapNano = (this.le ? magicLe : magicBe) === PCAP_NS;
        const major = dv.getUint16(4, this.le);
        if (major !== 2) {
          this.fail('ERR_CAPTURE_CORRUPT', `unsupported pcap version ${major}`);
          return 0;
        }
        this.pcapLinktype = dv.getUint32(20, this.le) & 0xffff;
        p = 24;
      } else {
        this.fail('ERR_CAPTURE_CORRUPT', 'not a pcap or pcapng file (unknown magic number)');
        return 0;
      }
    }
    p = this.format === 'pcap' ? this.parsePcap(buf, dv, p, out) : this.parsePcapng(buf, dv, p, out);
    this.offset += p;
    return p;
  }

  /** True once the format is known (the pcap file header or pcapng magic was read). */
  headerDone(): boolean {
    return this.format !== 'unknown';
  }

  /** Records the first corruption, at file offset `offset` + `at`. */
  fail(code: CaptureErrorCode, what: string, at = 0): void {
    const off = this.offset + at;
    this.error = new CaptureError(
      code,
      `${this.name}: ${what} at byte ${off}; ${this.frames} frames read`,
      this.frames,
      off,
    );
  }

  private parsePcap(buf: Uint8Array, dv: DataView, p: number, out: FrameBatch): number {
    const le = this.le;
    for (;;) {
      if (out.length >= out.capacity) return p;
      if (buf.length - p < 16) {
        this.pending = 16;
        return p;
      }
      const caplen = dv.getUint32(p + 8, le);
      if (caplen > this.maxRecord) {
        this.fail('ERR_CAPTURE_CORRUPT', `record captured length ${caplen} too large`, p);
        return p;
      }
      if (buf.length - p < 16 + caplen) {
        this.pending = 16 + caplen;
        return p;
      }
      const sec = dv.getUint32(p, le);
      const frac = dv.getUint32(p + 4, le);
      this.frames++;
      out.add(sec * 1e6 + (this.pcapNano ? Math.floor(frac / 1000) : frac), this.pcapLinktype, p + 16, caplen,
        dv.getUint32(p + 12, le));
      p += 16 + caplen;
    }
  }

  private parsePcapng(buf: Uint8Array, dv: DataView, p: number, out: FrameBatch): number {
    for (;;) {
      if (out.length >= out.capacity) return p;
      if (buf.length - p < 12) {
        this.pending = 12;
        return p;
      }
      const type = dv.getUint32(p, this.le);
      if (type === PCAPNG_SHB) {
        // A new section: its byte-order magic decides how everything in it is read.
        const bom = dv.getUint32(p + 8, true);
        if (bom === PCAPNG_BOM) this.le = true;
        else if (bom === 0x4d3c2b1a) this.le = false;
        else return this.corrupt('bad pcapng byte-order magic', p);
        this.ifaces = [];
      }
      const len = dv.getUint32(p + 4, this.le);
      if (len < 12 || len % 4 !== 0) return this.corrupt(`bad pcapng block length ${len}`, p);
      if (len > this.maxRecord) return this.corrupt(`pcapng block length ${len} too large`, p);
      if (buf.length - p < len) {
        this.pending = len;
        return p;
      }
      if (dv.getUint32(p + len - 4, this.le) !== len) return this.corrupt('pcapng block lengths differ', p);
      const body = p + 8;
      const bodyEnd = p + len - 4;
      let why: string | null = null;
      if (type === PCAPNG_SHB) {
        if (bodyEnd - body < 16) why = 'section header block too short';
        else if (dv.getUint16(body + 4, this.le) !== 1) why = 'unsupported pcapng version';
      } else if (type === BLOCK_IDB) {
        why = this.interfaceBlock(dv, body, bodyEnd);
      } else if (type === BLOCK_EPB || type === BLOCK_OPB || type === BLOCK_SPB) {
        why = this.packetBlock(type, dv, body, bodyEnd, out);
      }
      if (why !== null) return this.corrupt(why, p);
      p += len;
    }
  }

  private corrupt(what: string, p: number): number {
    this.fail('ERR_CAPTURE_CORRUPT', what, p);
    return p;
  }

  /** Reads an interface description block; returns why it is corrupt, or null. */
  private interfaceBlock(dv: DataView, body: number, end: number): string | null {
    if (end - body < 8) return 'interface description block too short';
    const iface: Iface = {
      linktype: dv.getUint16(body, this.le),
      snaplen: dv.getUint32(body + 4, this.le),
      mul: 1,
      div: 0,
      unitsPerSec: 0n,
      offsetMicros: 0,
    };
    for (let q = body + 8; q + 4 <= end; ) {
      const code = dv.getUint16(q, this.le);
      const olen = dv.getUint16(q + 2, this.le);
      if (code === 0) break; // opt_endofopt
      if (q + 4 + olen > end) return 'interface option overruns its block';
      if (code === 9 && olen >= 1) {
        // if_tsresol: 10^-v, or 2^-v when the top bit is set
        const v = dv.getUint8(q + 4);
        iface.mul = 0;
        if ((v & 0x80) === 0 && v <= 6) iface.mul = 10 ** (6 - v);
        else if ((v & 0x80) === 0 && v <= 9) iface.div = 10 ** (v - 6);
        else iface.unitsPerSec = (v & 0x80) === 0 ? 10n ** BigInt(v) : 1n << BigInt(v & 0x7f);
      } else if (code === 14 && olen >= 8) {
        // if_tsoffset: seconds to add to every timestamp (signed 64-bit)
        const hi = dv.getInt32(q + 4 + (this.le ? 4 : 0), this.le);
        const lo = dv.getUint32(q + 4 + (this.le ? 0 : 4), this.le);
        iface.offsetMicros = (hi * 0x100000000 + lo) * 1e6;
      }
      q += 4 + ((olen + 3) & ~3);
    }
    this.ifaces.push(iface);
    return null;
  }

  /** Reads an EPB, OPB or SPB into `out`; returns why it is corrupt, or null. */
  private packetBlock(type: number, dv: DataView, body: number, end: number, out: FrameBatch): string | null {
    const le = this.le;
    let ifid: number;
    let caplen: number;
    let origLen: number;
    let data: number;
    let ts: number;
    if (type === BLOCK_SPB) {
      if (end - body < 4) return 'simple packet block too short';
      ifid = 0;
      if (this.ifaces.length === 0) return 'simple packet block without an interface';
      origLen = dv.getUint32(body, le);
      const snap = this.ifaces[0].snaplen;
      caplen = Math.min(origLen, end - body - 4, snap === 0 ? origLen : snap);
      data = body + 4;
      ts = this.lastTs; // an SPB has no timestamp: keep capture time from going backwards
    } else {
      if (end - body < 20) return 'packet block too short';
      ifid = type === BLOCK_EPB ? dv.getUint32(body, le) : dv.getUint16(body, le);
      if (ifid >= this.ifaces.length) return `packet block for unknown interface ${ifid}`;
      caplen = dv.getUint32(body + 12, le);
      origLen = dv.getUint32(body + 16, le);
      data = body + 20;
      if (caplen > end - data) return 'packet data overruns its block';
      ts = toMicros(this.ifaces[ifid], dv.getUint32(body + 4, le), dv.getUint32(body + 8, le));
    }
    this.lastTs = ts;
    this.frames++;
    out.add(ts, this.ifaces[ifid].linktype, data, caplen, origLen);
    return null;
  }
}

/** A pcapng timestamp (64-bit count of the interface's units) in microseconds since the epoch. */
function toMicros(iface: Iface, hi: number, lo: number): number {
  if (iface.mul !== 0) return (hi * 0x100000000 + lo) * iface.mul + iface.offsetMicros;
  if (iface.div !== 0) {
    // Exact integer arithmetic: hi * 2^32 / div split into quotient and remainder parts.
    const d = iface.div;
    const q = Math.floor(0x100000000 / d);
    const r = 0x100000000 - q * d;
    return hi * q + Math.floor((hi * r + lo) / d) + iface.offsetMicros;
  }
  const units = (BigInt(hi) << 32n) | BigInt(lo);
  return Number((units * 1000000n) / iface.unitsPerSec) + iface.offsetMicros;
}

/**
 * Reads a pcap or pcapng file, yielding the frames of each chunk in batches of at most
 * `BATCH_RECORDS` (never empty). The batch is one object refilled for each yield: what it holds
 * is valid until the next batch is asked for (and, with `reuseChunks`, so are its bytes).
 * Throws a `CaptureError` after the last good batch when the file is truncated or corrupt; the
 * file is closed when the iteration ends, also early.
 */
export async function* readCaptureFrames(
  path: string,
  opts: ReadCaptureOptions = {},
): AsyncGenerator<FrameBatch, void, undefined> {
  const chunkBytes = Math.max(opts.chunkBytes ?? DEFAULT_CHUNK_BYTES, 64);
  const parser = new CaptureParser(path, opts.maxRecordBytes ?? DEFAULT_MAX_RECORD_BYTES);
  const batch = new FrameBatch(BATCH_RECORDS);
  const fh = await open(path, 'r');
  // The next chunk is read while the consumer works on this one (the read runs on libuv's
  // thread pool). The outcome is caught at once: a failed read must not go unhandled meanwhile.
  let next: Promise<{ buf: Uint8Array; from: number; bytesRead: number } | { err: unknown }> | undefined;
  // With reuseChunks: the buffer read into two chunks ago, free again once that chunk's records
  // were consumed (the next read starts while the current chunk's last batch is still out).
  let spare: Uint8Array | null = null;
  let inUse: Uint8Array | null = null;
  const readNext = (carry: Uint8Array, pos: number): void => {
    // At least a chunk of new bytes, and all of the record cut at the end of this one.
    let want = Math.max(chunkBytes, parser.pending - carry.length);
    let buf: Uint8Array;
    if (spare !== null && spare.length >= carry.length + Math.max(want >> 1, parser.pending - carry.length)) {
      // The spare buffer is as large as the first chunk: fill it, less what is carried over.
      buf = spare;
      want = spare.length - carry.length;
    } else {
      // A fresh buffer each time (unless reuseChunks): records handed out earlier keep pointing at
      // valid bytes. Not zero-filled (the read overwrites it), and a plain Uint8Array: views of it are cheaper.
      const mem = Buffer.allocUnsafeSlow(carry.length + want);
      buf = new Uint8Array(mem.buffer, mem.byteOffset, mem.length);
    }
    if (opts.reuseChunks === true) {
      spare = inUse;
      inUse = buf;
    }
    buf.set(carry, 0);
    next = fh.read(buf, carry.length, want, pos).then(
      ({ bytesRead }) => ({ buf, from: carry.length, bytesRead }),
      (err: unknown) => ({ err }),
    );
  };
  try {
    const size = (await fh.stat()).size;
    let pos = 0;
    readNext(new Uint8Array(0), 0);
    for (;;) {
      const got = await next!;
      next = undefined;
      if ('err' in got) throw got.err;
      const { buf, from, bytesRead } = got;
      pos += bytesRead;
      const avail = buf.subarray(0, from + bytesRead);
      let used = 0;
      for (;;) {
        parser.pending = 0;
        used += parser.parse(used === 0 ? avail : avail.subarray(used), batch);
        if (batch.length < BATCH_RECORDS || parser.error !== null) break;
        yield batch;
      }
      // The chunk's last batch (maybe empty).
      opts.onProgress?.(pos, size);
      const carry = avail.subarray(used);
      if (parser.error === null && bytesRead > 0) readNext(carry, pos);
      if (batch.length > 0) yield batch;
      if (parser.error !== null) throw parser.error;
      if (bytesRead === 0) {
        if (carry.length > 0 || pos === 0) {
          const what =
            pos === 0
              ? 'empty file'
              : parser.headerDone()
                ? `file ends inside a record (${carry.length} bytes of it present)`
                : 'file ends inside the file header';
          parser.fail('ERR_CAPTURE_TRUNCATED', what);
          throw parser.error;
        }
        return;
      }
    }
  } finally {
    if (next !== undefined) await next;
    await fh.close();
  }
}

/**
 * Reads a pcap or pcapng file, yielding the records of each chunk in arrays of at most
 * `BATCH_RECORDS` (never empty): `readCaptureFrames` with an object and a view per frame.
 * One await per batch rather than per record. Throws a `CaptureError` after the last good
 * batch when the file is truncated or corrupt; the file is closed when the iteration ends, also early.
 */
export async function* readCaptureBatches(
  path: string,
  opts: ReadCaptureOptions = {},
): AsyncGenerator<CaptureRecord[], void, undefined> {
  for await (const batch of readCaptureFrames(path, opts)) {
    const records = new Array<CaptureRecord>(batch.length);
    for (let i = 0; i < batch.length; i++) records[i] = batch.record(i);
    yield records;
  }
}

/**
 * Reads a pcap or pcapng file record by record (see `readCaptureBatches`, which is faster when
 * the consumer can take arrays). Throws a `CaptureError` after the last good record when the
 * file is truncated or corrupt.
 */
export async function* readCapture(
  path: string,
  opts?: ReadCaptureOptions,
): AsyncGenerator<CaptureRecord, void, undefined> {
  for await (const batch of readCaptureBatches(path, opts)) yield* batch;
}
