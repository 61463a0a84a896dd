/**
 * Picks the analyzer for a client stream from its first bytes and turns parser results into the
 * units the engine decides: one for a TLS flow (its ClientHello), one per HTTP request, one for
 * a stream that is neither. After a CONNECT the tunnelled stream is read as TLS again.
 */
import { ClientHelloReader } from './tls/clienthello.js';
import { HttpRequestReader, looksLikeHttp } from './http/request.js';
import type { ClientHello } from './tls/types.js';
import type { HttpRequest } from './http/types.js';
import {
  DEFAULT_ANALYZER_LIMITS, type AnalyzerEvent, type AnalyzerLimits, type StreamAnalyzer, type UnitInfo,
} from './analyzer.js';

/** TLS record content type of a handshake: the first byte of every ClientHello stream. */
const TLS_HANDSHAKE = 0x16;
/** TLS record content type of ChangeCipherSpec. */
const TLS_CHANGE_CIPHER_SPEC = 0x14;
/** PostgreSQL SSLRequest and GSSENCRequest: length 8, code 80877103 / 80877104. */
const PG_SSL_REQUEST = Uint8Array.of(0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x2f);
const PG_GSSENC_REQUEST = Uint8Array.of(0, 0, 0, 8, 0x04, 0xd2, 0x16, 0x30);
/** Bytes of an unrecognised start gathered before calling the stream `unknown`. */
const SNIFF_BYTES = 16;
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
const LAST_CONNECT = 1 << 7, HELLOS_SHIFT = 8;

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
  /** After the first hello: record bytes left to skip. */
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
    return this.mode === 'afterHello' && this.headerFill === 0 && this.skip === 0 && this.end === this.unitStart
      ? this.unitStart : -1;
  }

  feed(bytes: Uint8Array, offset: number, retained?: Uint8Array): AnalyzerEvent[] {
    this.end = offset + bytes.length;
    const out: AnalyzerEvent[] = [];
    if (this.mode === 'detect') {
      const all = this.scratch.length > 0 ? concat(this.scratch, bytes) : bytes;
      const start = offset - this.scratch.length;
      if (startsWith(all, PG_SSL_REQUEST) || startsWith(all, PG_GSSENC_REQUEST)) {
        // PostgreSQL asks for TLS in plain text first; the ClientHello follows the server's answer.
        // Let the request through and keep looking.
        out.push({ kind: 'pass', start });
        this.unitStart = start + PG_SSL_REQUEST.length;
        this.scratch = EMPTY;
        const rest = all.subarray(PG_SSL_REQUEST.length);
        if (rest.length > 0) out.push(...this.feed(rest, this.unitStart, retained));
        return out;
      }
      if (all.length < PG_SSL_REQUEST.length && PG_SSL_REQUEST.subarray(0, all.length).every((b, i) => b === all[i])) {
        this.scratch = Uint8Array.from(all);
        return out;
      }
      const kind = all[0] === TLS_HANDSHAKE ? 'tls' : looksLikeHttp(all);
      if (kind === 'maybe' && all.length < SNIFF_BYTES) {
        this.scratch = Uint8Array.from(all);
        return out;
      }
      this.scratch = EMPTY;
      if (kind === 'tls') {
        this.mode = 'tls';
        this.reader = new ClientHelloReader({ maxHelloBytes: this.limits.maxHelloBytes });
      } else if (kind === 'yes') {
        this.mode = 'http';
        this.reader = new HttpRequestReader({ maxHeadBytes: this.limits.maxRequestHeadBytes });
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
      this.feedSecondHello(bytes, out);
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
      case 'done': {
        const info = tlsInfo(res.hello);
        const second = this.hellos++ > 0;
        if (res.hello.sniError !== undefined) {
          this.mode = 'done';
          out.push({ kind: 'ambiguous', start, reason: 'bad-sni', info });
        } else if (res.hello.sniAmbiguous !== undefined) {
          this.mode = 'done';
          out.push({ kind: 'ambiguous', start, reason: 'sni-ambiguous', info });
        } else if (second || this.tunnelled) {
          this.mode = 'done';
          out.push({ kind: 'unit', start, info, opaque: true });
        } else {
          // A HelloRetryRequest makes the client send a second ClientHello, which must be read
          // too: the flow stays under inspection until the client's next record shows which.
          out.push({ kind: 'unit', start, info, opaque: false });
          this.mode = 'afterHello';
          // The reader's offsets count from where it started reading (the unit start).
          this.unitStart = start + res.consumed;
          const rest = bytes.subarray(Math.max(0, this.unitStart - offset));
          if (rest.length > 0) this.feedAfterHello(rest, out);
        }
        return;
      }
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
   * compatibility) is skipped; then another ClientHello (after a HelloRetryRequest) is read and
   * decided, and anything else (Finished, application data, TLS 1.2 key exchange) ends inspection.
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
      if (this.headerFill === 1 && header[0] !== TLS_CHANGE_CIPHER_SPEC && header[0] !== TLS_HANDSHAKE) {
        this.mode = 'done';
        out.push({ kind: 'end', start: this.unitStart });
        return;
      }
      if (this.headerFill < 5) continue;
      this.headerFill = 0;
      if (header[0] === TLS_CHANGE_CIPHER_SPEC) {
        this.unitStart += 5;
        this.skip = (header[3]! << 8) | header[4]!;
        continue;
      }
      // A handshake record: read it with a fresh reader, header first.
      this.mode = 'tls';
      this.reader = new ClientHelloReader({ maxHelloBytes: this.limits.maxHelloBytes });
      this.tls.feed(header.subarray(0, 5));
    }
    if (this.mode === 'tls' && i < bytes.length) this.feedSecondHello(bytes.subarray(i), out);
  }

  /** The rest of a second ClientHello; its decision is the flow's last. */
  private feedSecondHello(bytes: Uint8Array, out: AnalyzerEvent[]): void {
    const res = this.tls.feed(bytes);
    if (res.kind === 'needMore') return;
    this.mode = 'done';
    if (res.kind === 'done') {
      const info = tlsInfo(res.hello);
      out.push(res.hello.sniError === undefined && res.hello.sniAmbiguous === undefined
        ? { kind: 'unit', start: this.unitStart, info, opaque: true }
        : { kind: 'ambiguous', start: this.unitStart, reason: res.hello.sniError ? 'bad-sni' : 'sni-ambiguous', info });
    } else out.push({ kind: 'end', start: this.unitStart });
  }

  private feedHttp(bytes: Uint8Array, offset: number, out: AnalyzerEvent[], retained?: Uint8Array): void {
    for (const ev of this.http.feed(bytes)) {
      switch (ev.kind) {
        case 'request':
          this.lastConnect = ev.request.method === 'CONNECT';
          out.push({ kind: 'unit', start: ev.headStart, info: httpInfo(ev.request), opaque: false });
          this.unitStart = Infinity;
          break;
        case 'bodyEnd':
          this.unitStart = ev.end;
          break;
        case 'ambiguous': {
          const info: UnitInfo = ev.request ? httpInfo(ev.request) : { app: 'http' };
          out.push({ kind: 'ambiguous', start: ev.headStart ?? ev.offset, reason: ev.reason, info });
          if (ev.stop) this.mode = 'done';
          else this.unitStart = Infinity;
          break;
        }
        case 'invalid':
          this.mode = 'done';
          out.push({ kind: 'invalid', start: Number.isFinite(this.unitStart) ? this.unitStart : ev.offset,
            reason: `http:${slug(ev.reason)}`, info: { app: 'http' } });
          return;
        case 'tunnel':
          if (this.tunnelled || !this.lastConnect) {
            // An Upgrade (WebSocket): the request was decided; what follows is not inspected.
            this.mode = 'done';
            return;
          }
          // Bytes after a CONNECT head are the tunnelled stream: read its ClientHello too.
          this.tunnelled = true;
          this.mode = 'tls';
          this.unitStart = ev.offset;
          this.reader = new ClientHelloReader({ maxHelloBytes: this.limits.maxHelloBytes });
          {
            const rest = bytes.subarray(Math.max(0, ev.offset - offset));
            if (rest.length > 0) {
              if (rest[0] !== TLS_HANDSHAKE) {
                this.mode = 'done';
                out.push({ kind: 'unit', start: ev.offset, info: { app: 'unknown' }, opaque: true });
              } else this.feedTls(rest, ev.offset, out, retained);
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
