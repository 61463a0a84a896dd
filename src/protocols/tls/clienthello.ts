/**
 * Incremental TLS ClientHello reader: takes the client-to-server byte stream in chunks of any
 * size and answers the parsed hello once its last byte has arrived (EVASION.md G2, 11, 19, 20).
 *
 * Lifecycle of a ClientHelloReader:
 *  1. Created (or reset()) at stream offset 0; the first bytes decide whether this is TLS at all.
 *  2. feed(chunk) 0..n times with the stream bytes in order: needMore until the hello is complete.
 *  3. done once: the hello, and `consumed`, the stream offset of the end of the record holding
 *     its last byte. Bytes of that chunk after the hello's last byte were not read; their count
 *     is `unread`.
 *  4. Optionally (after a HelloRetryRequest, the caller's choice) feed on, starting with the last
 *     `unread` bytes of that chunk: the reader looks for the next ClientHello, skipping
 *     change_cipher_spec and application_data (0-RTT) records between hellos, and answers done
 *     again with offsets still counted from step 1.
 *  invalid and notTls are final: every later feed() repeats them until reset().
 *
 * A caller that keeps the stream's bytes itself (the engine's reassembler does, until the hello is
 * decided) passes them as `history` with every chunk: then a hello spread over chunks is read in
 * place there instead of being copied, as long as it sits in one record.
 */
import { FlowgateError } from '../../errors.js';
import { parseClientHelloBody } from './hello.js';
import {
  ContentType,
  DEFAULT_MAX_HELLO_BYTES,
  HANDSHAKE_CLIENT_HELLO,
  MAX_RECORD_LENGTH,
  type ClientHelloReaderOptions,
  type TlsResult,
} from './types.js';

export * from './types.js';
export { parseClientHelloBody, type HelloFraming, type HelloParse } from './hello.js';
export { ja3Hash, ja3String, ja4, ja4Raw, type FingerprintInput } from './fingerprints.js';

const RECORD_HEADER = 5;
const HANDSHAKE_HEADER = 4;

const RECORD_NAMES: Readonly<Record<number, string>> = {
  [ContentType.changeCipherSpec]: 'change_cipher_spec',
  [ContentType.alert]: 'alert',
  [ContentType.applicationData]: 'application_data',
  [ContentType.heartbeat]: 'heartbeat',
};

const NEED_MORE: TlsResult = { kind: 'needMore' };
const NOT_TLS: TlsResult = { kind: 'notTls' };

/** Reads ClientHellos from one client-to-server TCP stream; see the lifecycle above. */
/** Layout of ClientHelloReader.packed. */
const FILL_MASK = 7, HS_FILL_SHIFT = 3, AFTER_HELLO = 1 << 6, RECORD_COUNTED = 1 << 7, TYPE_SHIFT = 8;

export class ClientHelloReader {
  private readonly maxHelloBytes: number;
  /** Final invalid/notTls result, repeated until reset(). */
  private final: TlsResult | null = null;
  /** Stream offset of the next byte fed. */
  private offset = 0;
  /**
   * The small fields below in one integer (a reader per flow under inspection: each field is 8
   * bytes): record and handshake header fill (3 bits each), afterHello, currentRecordCounted,
   * record type (a byte).
   */
  private packed = 0;

  /** A hello was already answered: records between hellos are tolerated, no notTls any more. */
  private get afterHello(): boolean {
    return (this.packed & AFTER_HELLO) !== 0;
  }

  private set afterHello(v: boolean) {
    this.packed = v ? this.packed | AFTER_HELLO : this.packed & ~AFTER_HELLO;
  }

  /**
   * The record header is gathered into its fields as its bytes arrive (a reader per flow: no
   * buffer for five bytes): type, then version, then length, each complete once the header is.
   */
  private get recordHeaderFill(): number {
    return this.packed & FILL_MASK;
  }

  private set recordHeaderFill(v: number) {
    this.packed = (this.packed & ~FILL_MASK) | (v & FILL_MASK);
  }

  private get recordType(): number {
    return (this.packed >>> TYPE_SHIFT) & 0xff;
  }

  private set recordType(v: number) {
    this.packed = (this.packed & ~(0xff << TYPE_SHIFT)) | ((v & 0xff) << TYPE_SHIFT);
  }

  private recordVersion = 0;
  /** Payload bytes of the current record not yet read; 0 while reading a record header. */
  private recordRemaining = 0;
  /**
   * Stream offset just past the current record. While a record header is read, its length bytes
   * gathered so far (a field of their own cost 8 bytes a reader, one per flow under inspection).
   */
  private recordEnd = 0;

  private get handshakeHeaderFill(): number {
    return (this.packed >>> HS_FILL_SHIFT) & FILL_MASK;
  }

  private set handshakeHeaderFill(v: number) {
    this.packed = (this.packed & ~(FILL_MASK << HS_FILL_SHIFT)) | ((v & FILL_MASK) << HS_FILL_SHIFT);
  }

  /** Declared body length of the hello being read; -1 until its handshake header is complete. */
  private helloLength = -1;
  private body: Uint8Array | null = null;
  /**
   * Body bytes gathered. While the handshake header is read (no body yet), the bytes of its
   * length field gathered so far, as they arrive (no field of their own: 8 bytes a reader).
   */
  private bodyFill = 0;
  /** Reader offset of the first body byte while the body is left in the caller's history (not copied); -1 otherwise. */
  private bodyAt = -1;
  /** Records that carried bytes of the hello being read, and the version of the first one. */
  private helloRecords = 0;
  private helloRecordVersion = 0;

  private get currentRecordCounted(): boolean {
    return (this.packed & RECORD_COUNTED) !== 0;
  }

  private set currentRecordCounted(v: boolean) {
    this.packed = v ? this.packed | RECORD_COUNTED : this.packed & ~RECORD_COUNTED;
  }

  /** After done: bytes at the end of the last chunk that come after the hello and were not read. */
  unread = 0;

  constructor(options: ClientHelloReaderOptions = {}) {
    const max = options.maxHelloBytes ?? DEFAULT_MAX_HELLO_BYTES;
    if (!Number.isInteger(max) || max < 1 || max > 0xffffff) {
      throw new FlowgateError('ERR_INVALID_OPTION', `maxHelloBytes must be an integer from 1 to 16777215, got ${max}`);
    }
    this.maxHelloBytes = max;
  }

  /** Forgets everything: the next byte fed is offset 0 of a new stream. */
  reset(): void {
    this.final = null;
    this.offset = 0;
    this.afterHello = false;
    this.recordHeaderFill = 0;
    this.recordRemaining = 0;
    this.recordEnd = 0;
    this.unread = 0;
    this.resetHello();
  }

  /**
   * Reads the next chunk of the stream; never throws on any input. `history`, if given, holds the
   * stream bytes up to the end of `chunk` (a view valid for this call), reaching back at least to
   * where this reader started; give it with every chunk or with none.
   */
  feed(chunk: Uint8Array, history?: Uint8Array): TlsResult {
    if (this.final !== null) return this.final;
    this.unread = 0;
    const chunkEnd = this.offset + chunk.length;
    let i = 0;
    while (i < chunk.length) {
      if (this.recordRemaining === 0) {
        const byte = chunk[i++]!;
        this.offset++;
        const problem = this.onRecordHeaderByte(byte);
        if (problem !== null) return this.fail(problem);
        continue;
      }
      const available = Math.min(this.recordRemaining, chunk.length - i);
      if (this.recordType !== ContentType.handshake) {
        i += available;
        this.offset += available;
        this.recordRemaining -= available;
        continue;
      }
      this.countRecord();
      if (this.helloLength < 0) {
        const byte = chunk[i++]!;
        this.offset++;
        this.recordRemaining--;
        const problem = this.onHandshakeHeaderByte(byte);
        if (problem !== null) return this.fail(problem);
        if (this.helloLength !== 0) continue;
        return this.complete(new Uint8Array(0), chunk.length - i);
      }
      const wanted = this.helloLength - this.bodyFill;
      const take = Math.min(available, wanted);
      const start = i;
      i += take;
      this.offset += take;
      this.recordRemaining -= take;
      if (this.bodyFill === 0 && take === wanted) {
        return this.complete(chunk.subarray(start, i), chunk.length - i); // whole body in view: no copy
      }
      if (this.bodyAt >= 0 || (this.bodyFill === 0 && history !== undefined)) {
        if (this.bodyFill === 0) this.bodyAt = this.offset - take;
        if (history !== undefined && this.offset - take === this.bodyAt + this.bodyFill) {
          this.bodyFill += take; // still one run of bytes in the caller's history
        } else {
          // The body goes on in another record: from here on it is copied, starting with what it has.
          const sofar = this.inHistory(history, chunkEnd);
          if (sofar === null) return this.fail(invalid('hello bytes no longer in the history given'));
          this.bodyAt = -1;
          this.bodyFill = 0;
          this.appendBody(sofar);
          this.appendBody(chunk.subarray(start, i));
        }
      } else this.appendBody(chunk.subarray(start, i));
      if (this.bodyFill === this.helloLength) {
        const body = this.bodyAt >= 0 ? this.inHistory(history, chunkEnd) : this.body!.subarray(0, this.bodyFill);
        if (body === null) return this.fail(invalid('hello bytes no longer in the history given'));
        return this.complete(body, chunk.length - i);
      }
    }
    return NEED_MORE;
  }

  /** Handles one more record header byte; answers a final result when the stream must stop here. */
  private onRecordHeaderByte(byte: number): TlsResult | null {
    const fill = ++this.recordHeaderFill;
    if (fill === 1) {
      this.recordType = byte;
      this.recordVersion = 0;
      this.recordEnd = 0;
    } else if (fill <= 3) this.recordVersion = (this.recordVersion << 8) | byte;
    else this.recordEnd = (this.recordEnd << 8) | byte;
    if (this.offset === fill && !this.afterHello) {
      const verdict = classifyStreamStart(this.recordType, this.recordVersion, this.recordEnd, fill);
      if (verdict !== null) return verdict;
    }
    if (fill < RECORD_HEADER) return null;
    this.recordHeaderFill = 0;
    const length = this.recordEnd;
    this.recordEnd = this.offset + length;
    this.currentRecordCounted = false;
    if (length > MAX_RECORD_LENGTH) return invalid(`record length ${length} exceeds ${MAX_RECORD_LENGTH}`);
    const name = RECORD_NAMES[this.recordType];
    if (this.recordType === ContentType.handshake) {
      if (length === 0) return invalid('empty handshake record');
    } else if (name === undefined) {
      return invalid(`unknown record type ${this.recordType}`);
    } else if (this.midHello()) {
      return invalid(`${name} record inside ClientHello`);
    } else if (!this.afterHello) {
      return invalid(`${name} record before ClientHello`);
    } else if (this.recordType === ContentType.alert || this.recordType === ContentType.heartbeat) {
      return invalid(`${name} record after ClientHello`);
    }
    this.recordRemaining = length;
    return null;
  }

  /** Handles one byte of the hello's handshake header. */
  private onHandshakeHeaderByte(byte: number): TlsResult | null {
    const fill = ++this.handshakeHeaderFill;
    if (fill === 1) {
      if (byte !== HANDSHAKE_CLIENT_HELLO) return invalid(`handshake type ${byte} is not client_hello`);
      this.bodyFill = 0;
      return null;
    }
    this.bodyFill = (this.bodyFill << 8) | byte;
    if (fill < HANDSHAKE_HEADER) return null;
    const length = this.bodyFill;
    this.bodyFill = 0;
    if (length > this.maxHelloBytes) return invalid('hello too large');
    this.helloLength = length;
    return null;
  }

  private midHello(): boolean {
    return this.handshakeHeaderFill > 0;
  }

  private countRecord(): void {
    if (this.currentRecordCounted) return;
    this.currentRecordCounted = true;
    if (this.helloRecords === 0) this.helloRecordVersion = this.recordVersion;
    this.helloRecords++;
  }

  /** The body bytes gathered so far, read from `history` (which ends at reader offset `end`). */
  private inHistory(history: Uint8Array | undefined, end: number): Uint8Array | null {
    if (history === undefined) return null;
    const from = history.length - (end - this.bodyAt);
    return from < 0 ? null : history.subarray(from, from + this.bodyFill);
  }

  private appendBody(bytes: Uint8Array): void {
    const needed = this.bodyFill + bytes.length;
    if (this.body === null || this.body.length < needed) {
      // Sized to what has arrived, doubling up to the declared length: a flow waiting for the
      // rest of its hello keeps only the bytes it has.
      const capacity = Math.min(this.helloLength, Math.max(needed, (this.body?.length ?? 0) * 2));
      const grown = new Uint8Array(capacity);
      if (this.body !== null) grown.set(this.body.subarray(0, this.bodyFill));
      this.body = grown;
    }
    this.body.set(bytes, this.bodyFill);
    this.bodyFill = needed;
  }

  private complete(body: Uint8Array, unread: number): TlsResult {
    const parsed = parseClientHelloBody(body, {
      recordVersion: this.helloRecordVersion,
      recordCount: this.helloRecords,
    });
    if (!parsed.ok) return this.fail(invalid(parsed.reason));
    const consumed = this.recordEnd;
    this.resetHello();
    this.afterHello = true;
    // Bytes left in this record belong to the next handshake message, which would start here.
    this.currentRecordCounted = false;
    this.unread = unread;
    return { kind: 'done', hello: parsed.hello, consumed };
  }

  private resetHello(): void {
    this.handshakeHeaderFill = 0;
    this.helloLength = -1;
    this.body = null;
    this.bodyFill = 0;
    this.bodyAt = -1;
    this.helloRecords = 0;
    this.helloRecordVersion = 0;
    this.currentRecordCounted = false;
  }

  private fail(result: TlsResult): TlsResult {
    this.final = result;
    this.body = null;
    return result;
  }
}

function invalid(reason: string): TlsResult {
  return { kind: 'invalid', reason };
}

/**
 * Looks at the first `fill` bytes of the stream: null while they may start a TLS handshake
 * record, notTls when they clearly do not, invalid for a TLS record a server rejects before the
 * hello (alert, change_cipher_spec, ...) or an SSLv2-format hello (no extensions, so no SNI).
 * `version` holds header bytes 1-2 and `length` bytes 3-4, as far as `fill` has reached.
 */
function classifyStreamStart(first: number, version: number, length: number, fill: number): TlsResult | null {
  if (first === ContentType.handshake) return null;
  const name = RECORD_NAMES[first];
  if (name !== undefined) {
    if (fill < 2) return null;
    const major = fill === 2 ? version : version >> 8;
    return major === 3 ? invalid(`${name} record before ClientHello`) : NOT_TLS;
  }
  if ((first & 0x80) !== 0) {
    // SSLv2 CLIENT-HELLO: 2-byte length with the top bit set, msg type 1, version major 0, 2 or 3.
    if (fill < 4) return null;
    const type = version & 0xff;
    const major = fill === 4 ? length : length >> 8;
    return type === 1 && (major === 0 || major === 2 || major === 3) ? invalid('SSLv2-format ClientHello') : NOT_TLS;
  }
  return NOT_TLS;
}
