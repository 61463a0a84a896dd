/**
 * Picks the analyzer for a client stream from its first bytes and turns parser results into the
 * units the engine decides: one for a TLS flow (its ClientHello), one per HTTP request, one for
 * a stream that is neither. After a CONNECT the tunnelled stream is read as TLS again.
 */
import { ClientHelloReader } from './tls/clienthello.js';
import { HttpRequestReader, looksLikeHttp } from './http/request.js';
import { SNIFF_MAX_LINE_BYTES } from './http/sniff.js';
import type { ClientHello } from './tls/types.js';
import type { HttpRequest } from './http/types.js';
import {
  DEFAULT_ANALYZER_LIMITS, type AnalyzerEvent, type AnalyzerLimits, type StreamAnalyzer, type UnitInfo,
} from './analyzer.js';

/** TLS record content type of a handshake: the first byte of every ClientHello stream. */
const TLS_HANDSHAKE = 0x16;
/** TLS record content type of ChangeCipherSpec. */
const TLS_CHANGE_CIPHER_SPEC = 0x14;
/** TLS record content type of application data. */
const TLS_APPLICATION_DATA = 0x17;
/** PostgreSQL SSLRequest and GSSENCRequest: length 8, code 80877103 / 80877104. */
const PG_SSL_REQUEST = Uint8Array.of(0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f);
const PG_GSSENC_REQUEST = Uint8Array.of(0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30);
/** The HTTP/2 connection preface: after an h2c Upgrade the server took, the client's first bytes. */
const H2_PREFACE = new TextEncoder().encode('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
/** The sniff buffer of every analyzer that has gathered nothing (never written to). */
const EMPTY = new Uint8Array(0);

/** Creates the analyzer for one flow's client stream. */
export function createAnalyzer(limits: Partial<AnalyzerLimits> = {}): StreamAnalyzer {
  return analyzerFactory(limits)();
}

/**
 * Makes analyzers that share one copy of the limits: what an engine uses, since a copy per flow
 * costs hundreds of bytes when the limits come from a larger options object.
 */
export function analyzerFactory(limits: Partial<AnalyzerLimits> = {}): () => StreamAnalyzer {
  const resolved: AnalyzerLimits = Object.freeze({
    maxHelloBytes: limits.maxHelloBytes ?? DEFAULT_ANALYZER_LIMITS.maxHelloBytes,
    maxRequestHeadBytes: limits.maxRequestHeadBytes ?? DEFAULT_ANALYZER_LIMITS.maxRequestHeadBytes,
  });
  return () => new FlowAnalyzer(resolved);
}

/**
 * Where a TLS unit's info keeps its hello, for withFingerprints. A symbol: JSON and Object.keys
 * skip it, while Object.assign copies it along to the objects built from the info.
 */
const HELLO = Symbol('hello');

type WithHello = { [HELLO]?: ClientHello };

/** The accessors withFingerprints defines: shared, so every object gets the same two functions. */
const JA3: PropertyDescriptor = {
  get(this: WithHello) {
    return this[HELLO]!.ja3Hash;
  },
  enumerable: true,
  configurable: true,
};
const JA4: PropertyDescriptor = {
  get(this: WithHello) {
    return this[HELLO]!.ja4;
  },
  enumerable: true,
  configurable: true,
};

/**
 * The policy's view of a ClientHello, but for the fingerprints: computing them is a quarter of a
 * hello's JavaScript, and most decisions never read them. The objects built from this info for
 * the policy and for events get them through withFingerprints, computed when first read.
 */
export function tlsInfo(h: ClientHello): UnitInfo {
  const info: UnitInfo & WithHello = { app: 'tls', sni: h.sni, alpn: h.alpn, ...(h.ech ? { ech: true } : {}) };
  info[HELLO] = h;
  return info;
}

/**
 * Gives `target`, built from a TLS unit's info with Object.assign (which copied the hello along,
 * not the fingerprints), the hello's `ja3` (hash) and `ja4`: enumerable properties computed when
 * first read, so the policy, JSON and spreads see them as values. Other targets are returned as they are.
 */
export function withFingerprints<T extends object>(target: T): T {
  if ((target as WithHello)[HELLO] === undefined) return target;
  Object.defineProperty(target, 'ja3', JA3);
  Object.defineProperty(target, 'ja4', JA4);
  return target;
}

/** The policy's view of an HTTP request head. */
export function httpInfo(r: HttpRequest): UnitInfo {
  return { app: 'http', host: r.host, method: r.method, path: r.path, target: r.target };
}

type Mode = 'detect' | 'tls' | 'afterHello' | 'http' | 'done';
/** Index 0 is the initial mode. */
const MODES: readonly Mode[] = ['detect', 'tls', 'afterHello', 'http', 'done'];

/** Layout of FlowAnalyzer.packed: the fields below in one integer, hellos from HELLOS_SHIFT up. */
const TUNNELLED = 1, FILL_SHIFT = 1, FILL_MASK = 7 << FILL_SHIFT, MODE_SHIFT = 4, MODE_MASK = 7 << MODE_SHIFT;
const LAST_CONNECT = 1 << 7, ANSWERED = 1 << 8, STAYS = 1 << 9, UPGRADED = 1 << 10, H2C = 1 << 11,
  LAST_H2C = 1 << 12, HELLOS_SHIFT = 13;

class FlowAnalyzer implements StreamAnalyzer {
  /**
   * The reader of the current unit: a ClientHelloReader in the TLS modes, an HttpRequestReader
   * in `http` (one field for both: an analyzer per flow under inspection, each field 8 bytes).
   */
  private reader: ClientHelloReader | HttpRequestReader | undefined = undefined;
  /**
   * In `detect` mode the bytes gathered while the protocol is still unclear; in `afterHello` a
   * record header being gathered (made with its first byte). One field for both: no analyzer is
   * in both modes at once, and a field costs 8 bytes a flow.
   */
  private scratch: Uint8Array = EMPTY;
  /** Start of the unit being gathered (Infinity while in a request body). */
  private unitStart = 0;
  /** Offset one past the last byte fed. */
  private end = 0;
  /**
   * mode, tunnelled, headerFill, lastConnect and hellos in one integer (an analyzer per flow under
   * inspection: each field is 8 bytes); layout in TUNNELLED .. HELLOS_SHIFT.
   */
  private packed = 0;
  /**
   * After the first hello: record bytes left to skip. In `http` mode: the stream offset where the
   * request reader started (0, or where the stream went on after an Upgrade), which its offsets
   * count from. One field for both, as for `scratch`.
   */
  private skip = 0;

  private get mode(): Mode {
    return MODES[(this.packed & MODE_MASK) >>> MODE_SHIFT]!;
  }

  private set mode(v: Mode) {
    this.packed = (this.packed & ~MODE_MASK) | (MODES.indexOf(v) << MODE_SHIFT);
  }

  /** The TLS modes' reader. */
  private get tls(): ClientHelloReader {
    return this.reader as ClientHelloReader;
  }

  /** The `http` mode's reader. */
  private get http(): HttpRequestReader {
    return this.reader as HttpRequestReader;
  }

  /** Set when the TLS reader reads the stream tunnelled by a CONNECT. */
  private get tunnelled(): boolean {
    return (this.packed & TUNNELLED) !== 0;
  }

  private set tunnelled(v: boolean) {
    this.packed = v ? this.packed | TUNNELLED : this.packed & ~TUNNELLED;
  }

  /** Bytes of `header` gathered (0 to 5). */
  private get headerFill(): number {
    return (this.packed & FILL_MASK) >>> FILL_SHIFT;
  }

  private set headerFill(v: number) {
    this.packed = (this.packed & ~FILL_MASK) | ((v << FILL_SHIFT) & FILL_MASK);
  }

  /** The last request head read was a CONNECT (what follows its head may be a tunnelled TLS stream). */
  private get lastConnect(): boolean {
    return (this.packed & LAST_CONNECT) !== 0;
  }

  private set lastConnect(v: boolean) {
    this.packed = v ? this.packed | LAST_CONNECT : this.packed & ~LAST_CONNECT;
  }

  /** See serverAnswered. */
  private get answered(): boolean {
    return (this.packed & ANSWERED) !== 0;
  }

  /**
   * Application data records after the hello never end inspection: the first hello offered early
   * data (0-RTT), or a second hello was read (after a HelloRetryRequest). See feedAfterHello.
   */
  private get stays(): boolean {
    return (this.packed & STAYS) !== 0;
  }

  /** ClientHellos read so far. */
  private get hellos(): number {
    return this.packed >>> HELLOS_SHIFT;
  }

  private set hellos(v: number) {
    this.packed = (this.packed & ((1 << HELLOS_SHIFT) - 1)) | (v << HELLOS_SHIFT);
  }

  constructor(private readonly limits: AnalyzerLimits) {}

  frontier(): number {
    return this.mode === 'done' ? Infinity : this.unitStart;
  }

  consumed(): number {
    return Number.isFinite(this.unitStart) ? this.unitStart : this.end;
  }

  recordBoundary(): number {
    return this.mode === 'afterHello' && !this.stays && this.headerFill === 0 && this.skip === 0 && this.end === this.unitStart
      ? this.unitStart : -1;
  }

  serverAnswered(): void {
    this.packed |= ANSWERED;
  }

  handshaking(): boolean {
    const mode = this.mode;
    return mode === 'afterHello' || (mode === 'tls' && this.hellos > 0 && !this.tunnelled);
  }

  feed(bytes: Uint8Array, offset: number, retained?: Uint8Array): AnalyzerEvent[] {
    this.end = offset + bytes.length;
    const out: AnalyzerEvent[] = [];
    if (this.mode === 'detect') {
      const all = this.scratch.length > 0 ? concat(this.scratch, bytes) : bytes;
      const start = offset - this.scratch.length;
      const upgraded = (this.packed & UPGRADED) !== 0;
      if (!upgraded && (startsWith(all, PG_SSL_REQUEST) || startsWith(all, PG_GSSENC_REQUEST))) {
        // PostgreSQL asks for TLS in plain text first; the ClientHello follows the server's answer.
        // Let the request through and keep looking.
        out.push({ kind: 'pass', start });
        this.unitStart = start + PG_SSL_REQUEST.length;
        this.scratch = EMPTY;
        const rest = all.subarray(PG_SSL_REQUEST.length);
        if (rest.length > 0) out.push(...this.feed(rest, this.unitStart, retained));
        return out;
      }
      if (!upgraded && all.length < PG_SSL_REQUEST.length && startsWith(PG_SSL_REQUEST, all)) {
        this.scratch = Uint8Array.from(all);
        return out;
      }
      if (upgraded && (this.packed & H2C) !== 0 && (startsWith(all, H2_PREFACE) || startsWith(H2_PREFACE, all))) {
        if (all.length < H2_PREFACE.length) {
          this.scratch = Uint8Array.from(all);
          return out;
        }
        // The h2c upgrade took: HTTP/2 from here on, which flowgate does not read.
        this.scratch = EMPTY;
        this.mode = 'done';
        out.push({ kind: 'end', start });
        return out;
      }
      const kind = all[0] === TLS_HANDSHAKE && !upgraded ? 'tls' : looksLikeHttp(all);
      // A start that may still become a request line waits for it (a server reads an extension
      // method or a long target split over segments as one request): the flow is not `unknown`
      // before its first line says so. Past SNIFF_MAX_LINE_BYTES it is read as HTTP, under the
      // request reader's limits.
      if (kind === 'maybe' && all.length < SNIFF_MAX_LINE_BYTES) {
        this.scratch = Uint8Array.from(all);
        return out;
      }
      this.scratch = EMPTY;
      this.packed &= ~(UPGRADED | H2C);
      if (kind === 'tls') {
        this.mode = 'tls';
        this.reader = new ClientHelloReader({ maxHelloBytes: this.limits.maxHelloBytes });
      } else if (kind !== 'no') {
        this.mode = 'http';
        this.reader = new HttpRequestReader({ maxHeadBytes: this.limits.maxRequestHeadBytes });
        this.skip = start;
      } else if (upgraded) {
        // Bytes no server reads as a request (a WebSocket frame, another protocol's): the upgrade
        // took, and its request's decision covers them.
        this.mode = 'done';
        out.push({ kind: 'end', start });
        return out;
      } else {
        this.mode = 'done';
        out.push({ kind: 'unit', start, info: { app: 'unknown' }, opaque: true });
        return out;
      }
      this.unitStart = start;
      bytes = all;
      offset = start;
    }
    if (this.mode === 'afterHello') {
      this.feedAfterHello(bytes, out);
    } else if (this.mode === 'tls' && this.hellos > 0 && !this.tunnelled) {
      this.feedSecondHello(bytes, offset, out);
    } else if (this.mode === 'tls') this.feedTls(bytes, offset, out, retained);
    else if (this.mode === 'http') this.feedHttp(bytes, offset, out, retained);
    return out;
  }

  /** `retained` (see StreamAnalyzer.feed) ends where `bytes` ends: the reader reads a partial hello there, uncopied. */
  private feedTls(bytes: Uint8Array, offset: number, out: AnalyzerEvent[], retained?: Uint8Array): void {
    const res = this.tls.feed(bytes, retained);
    const start = this.unitStart;
    switch (res.kind) {
      case 'needMore':
        return;
      case 'done':
        this.helloRead(res.hello, res.consumed, start, bytes, offset, out);
        return;
      case 'notTls':
        this.mode = 'done';
        out.push({ kind: 'unit', start, info: { app: 'unknown' }, opaque: true });
        return;
      case 'invalid':
        this.mode = 'done';
        out.push({ kind: 'invalid', start, reason: `tls:${slug(res.reason)}`, info: { app: 'tls' } });
        return;
    }
  }

  /**
   * The client's records after its first hello. A ChangeCipherSpec (sent for middlebox
   * compatibility) is skipped, and so is application data after a hello that offered early data
   * (0-RTT). Until the server has answered the hello (serverAnswered) nothing else may come: a
   * client sends its next flight, or a second hello after a HelloRetryRequest, only once it has
   * the server's, so anything else is a copy the server may have discarded (an old timestamp
   * behind an ACK flowgate never saw, EVASION.md 6) and gets `ambiguous`. Once the server has
   * answered, another ClientHello is read and decided, and anything else (Finished, application
   * data, TLS 1.2 key exchange) ends inspection, but for `stays`: after an early-data hello,
   * records written before a HelloRetryRequest arrived may still come ahead of the second hello,
   * and after a second hello flowgate cannot tell the server's answer to it from its answer to
   * the first (its packets bypass the queue), so application data is skipped for good there and
   * the hellos stay compared with any later copy of their bytes (the engine keeps them).
   */
  private feedAfterHello(bytes: Uint8Array, out: AnalyzerEvent[]): void {
    let i = 0;
    while (this.mode === 'afterHello' && i < bytes.length) {
      if (this.skip > 0) {
        const n = Math.min(this.skip, bytes.length - i);
        this.skip -= n;
        i += n;
        this.unitStart += n;
        continue;
      }
      // `scratch` was let go of (EMPTY) when detection ended: the first header byte gets it its 5 bytes.
      const header = this.scratch.length === 5 ? this.scratch : (this.scratch = new Uint8Array(5));
      header[this.headerFill++] = bytes[i++]!;
      if (this.headerFill === 1) {
        const type = header[0]!;
        const skipped = type === TLS_CHANGE_CIPHER_SPEC || (type === TLS_APPLICATION_DATA && this.stays);
        if (!skipped && !this.answered) {
          this.mode = 'done';
          out.push({ kind: 'ambiguous', start: this.unitStart, reason: 'before-server-answer', info: { app: 'tls' } });
          return;
        }
        if (!skipped && type !== TLS_HANDSHAKE) {
          this.mode = 'done';
          out.push({ kind: 'end', start: this.unitStart });
          return;
        }
      }
      if (this.headerFill < 5) continue;
      this.headerFill = 0;
      if (header[0] !== TLS_HANDSHAKE) {
        this.unitStart += 5;
        this.skip = (header[3]! << 8) | header[4]!;
        continue;
      }
      // A handshake record: read it with a fresh reader, header first.
      this.mode = 'tls';
      this.reader = new ClientHelloReader({ maxHelloBytes: this.limits.maxHelloBytes });
      this.tls.feed(header.subarray(0, 5));
    }
    // The chunk goes on right after the handshake record's 5-byte header, which began at unitStart.
    if (this.mode === 'tls' && i < bytes.length) this.feedSecondHello(bytes.subarray(i), this.unitStart + 5, out);
  }

  /** The rest of a second ClientHello (after a HelloRetryRequest); see helloRead. */
  private feedSecondHello(bytes: Uint8Array, offset: number, out: AnalyzerEvent[]): void {
    const start = this.unitStart;
    const res = this.tls.feed(bytes);
    if (res.kind === 'needMore') return;
    if (res.kind === 'done') {
      this.helloRead(res.hello, res.consumed, start, bytes, offset, out);
    } else {
      this.mode = 'done';
      out.push({ kind: 'end', start });
    }
  }

  /**
   * A ClientHello read, first or second (the reader started at unit start `start`; `consumed`
   * counts from there; `bytes` at stream offset `offset` ended it). A malformed or ambiguous name
   * is the flow's last unit, and so is a hello tunnelled by a CONNECT. Otherwise the flow stays
   * under inspection for the records after it (afterHelloRecord): a HelloRetryRequest makes the
   * client send a second hello, which must be read too; after an early-data hello or a second
   * hello, for good (`stays`).
   */
  private helloRead(hello: ClientHello, consumed: number, start: number, bytes: Uint8Array, offset: number,
    out: AnalyzerEvent[]): void {
    this.hellos++;
    const info = tlsInfo(hello);
    if (hello.sniError !== undefined || hello.sniAmbiguous !== undefined) {
      this.mode = 'done';
      out.push({ kind: 'ambiguous', start, reason: hello.sniError !== undefined ? 'bad-sni' : 'sni-ambiguous', info });
    } else if (this.tunnelled) {
      this.mode = 'done';
      out.push({ kind: 'unit', start, info, opaque: true });
    } else {
      out.push({ kind: 'unit', start, info, opaque: false });
      if (hello.earlyData || this.hellos > 1) this.packed |= STAYS;
      this.afterHelloRecord(start + consumed, bytes, offset, out);
    }
  }

  /**
   * After a hello read from `bytes` (at stream offset `offset`): the records after it are read
   * from `recordEnd` (the end of the record holding the hello's last byte; the reader's offsets
   * count from the unit start), skipping what of that record the chunk does not hold yet.
   */
  private afterHelloRecord(recordEnd: number, bytes: Uint8Array, offset: number, out: AnalyzerEvent[]): void {
    this.mode = 'afterHello';
    const chunkEnd = offset + bytes.length;
    if (recordEnd > chunkEnd) {
      this.unitStart = chunkEnd;
      this.skip = recordEnd - chunkEnd;
      return;
    }
    this.unitStart = recordEnd;
    const rest = bytes.subarray(Math.max(0, recordEnd - offset));
    if (rest.length > 0) this.feedAfterHello(rest, out);
  }

  private feedHttp(bytes: Uint8Array, offset: number, out: AnalyzerEvent[], retained?: Uint8Array): void {
    const base = this.skip;
    for (const ev of this.http.feed(bytes)) {
      switch (ev.kind) {
        case 'request':
          this.lastConnect = ev.request.method === 'CONNECT';
          this.packed = /\bh2c\b/i.test(ev.request.upgrade ?? '') ? this.packed | LAST_H2C : this.packed & ~LAST_H2C;
          out.push({ kind: 'unit', start: base + ev.headStart, info: httpInfo(ev.request), opaque: false });
          this.unitStart = Infinity;
          break;
        case 'bodyEnd':
          this.unitStart = base + ev.end;
          break;
        case 'ambiguous': {
          const info: UnitInfo = ev.request ? httpInfo(ev.request) : { app: 'http' };
          out.push({ kind: 'ambiguous', start: base + (ev.headStart ?? ev.offset), reason: ev.reason, info });
          if (ev.stop) this.mode = 'done';
          else this.unitStart = Infinity;
          break;
        }
        case 'invalid':
          this.mode = 'done';
          out.push({ kind: 'invalid', start: Number.isFinite(this.unitStart) ? this.unitStart : base + ev.offset,
            reason: `http:${slug(ev.reason)}`, info: { app: 'http' } });
          return;
        case 'tunnel':
          if (this.tunnelled) {
            this.mode = 'done';
            return;
          }
          if (!this.lastConnect) {
            // An Upgrade (WebSocket, h2c): the reader cannot see whether the server agreed (101).
            // If it did not and kept the connection, the client's next request goes to it like
            // any other: what the client sends next is sniffed as a stream's first bytes are. A
            // request is read and decided; the HTTP/2 preface after an h2c upgrade, or bytes no
            // server reads as a request, end inspection (the preface after another upgrade is h2c
            // with prior knowledge, as at a stream's start).
            this.packed |= UPGRADED | ((this.packed & LAST_H2C) !== 0 ? H2C : 0);
            this.mode = 'detect';
            this.unitStart = base + ev.offset;
            this.skip = 0;
            const rest = bytes.subarray(Math.max(0, base + ev.offset - offset));
            if (rest.length > 0) out.push(...this.feed(rest, base + ev.offset, retained));
            return;
          }
          // Bytes after a CONNECT head are the tunnelled stream: read its ClientHello too.
          this.tunnelled = true;
          this.mode = 'tls';
          this.unitStart = base + ev.offset;
          this.skip = 0;
          this.reader = new ClientHelloReader({ maxHelloBytes: this.limits.maxHelloBytes });
          {
            const rest = bytes.subarray(Math.max(0, base + ev.offset - offset));
            if (rest.length > 0) {
              if (rest[0] !== TLS_HANDSHAKE) {
                this.mode = 'done';
                out.push({ kind: 'unit', start: base + ev.offset, info: { app: 'unknown' }, opaque: true });
              } else this.feedTls(rest, base + ev.offset, out, retained);
            }
          }
          return;
      }
    }
  }
}

function startsWith(a: Uint8Array, prefix: Uint8Array): boolean {
  if (a.length < prefix.length) return false;
  for (let i = 0; i < prefix.length; i++) if (a[i] !== prefix[i]) return false;
  return true;
}

function concat(a: Uint8Array, b: Uint8Array): Uint8Array {
  const out = new Uint8Array(a.length + b.length);
  out.set(a);
  out.set(b, a.length);
  return out;
}

/** "bad chunk size" -> "bad-chunk-size": reasons travel as one token. */
function slug(reason: string): string {
  return reason.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '');
}
