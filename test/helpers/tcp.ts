/**
 * Test helpers: a scripted TCP conversation that produces real IP packets (through the packet
 * builder), a verdict recorder, timers run by hand, and a minimal ClientHello builder. For unit tests only.
 */
import { buildTcpPacket, type TcpPacketSpec } from '../../src/packet/build.js';
import { ACK, FIN, PSH, RST, SYN } from '../../src/packet/types.js';
import type { VerdictSink, VerdictValue } from '../../src/verdict/sink.js';
import type { RawPacket } from '../../src/filter/engine.js';
import type { Scheduler } from '../../src/filter/types.js';

export type Extra = Partial<Omit<TcpPacketSpec, 'src' | 'dst' | 'sport' | 'dport' | 'payload'>>;

/** A client-server conversation with sequence numbers tracked on both sides. */
export class Conversation {
  cseq: number;
  sseq: number;
  readonly client: string;
  readonly server: string;
  readonly sport: number;
  readonly dport: number;

  constructor(o: { client?: string; server?: string; sport?: number; dport?: number; cisn?: number; sisn?: number } = {}) {
    this.client = o.client ?? '10.0.1.2';
    this.server = o.server ?? '10.0.2.2';
    this.sport = o.sport ?? 40000 + Math.floor(Math.random() * 20000);
    this.dport = o.dport ?? 443;
    this.cseq = o.cisn ?? 1000;
    this.sseq = o.sisn ?? 5000;
  }

  private c(flags: number, payload: Uint8Array | string | undefined, seq: number, extra: Extra = {}): Uint8Array {
    return buildTcpPacket({ src: this.client, dst: this.server, sport: this.sport, dport: this.dport, seq,
      ack: this.sseq, flags, payload, window: 64240, ...extra });
  }

  private s(flags: number, payload: Uint8Array | string | undefined, seq: number, extra: Extra = {}): Uint8Array {
    return buildTcpPacket({ src: this.server, dst: this.client, sport: this.dport, dport: this.sport, seq,
      ack: this.cseq, flags, payload, window: 65160, ...extra });
  }

  /** SYN, SYN-ACK, ACK. */
  handshake(): Uint8Array[] {
    const syn = buildTcpPacket({ src: this.client, dst: this.server, sport: this.sport, dport: this.dport,
      seq: this.cseq, flags: SYN, window: 64240, options: { mss: 1460, wscale: 7, sackPermitted: true } });
    this.cseq = (this.cseq + 1) >>> 0;
    const synAck = buildTcpPacket({ src: this.server, dst: this.client, sport: this.dport, dport: this.sport,
      seq: this.sseq, ack: this.cseq, flags: SYN | ACK, window: 65160, options: { mss: 1460, wscale: 7 } });
    this.sseq = (this.sseq + 1) >>> 0;
    return [syn, synAck, this.c(ACK, undefined, this.cseq)];
  }

  /** A SYN carrying data (TCP Fast Open); the data takes sequence numbers after the SYN. */
  synWithData(payload: Uint8Array | string): Uint8Array {
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    const syn = buildTcpPacket({ src: this.client, dst: this.server, sport: this.sport, dport: this.dport,
      seq: this.cseq, flags: SYN, window: 64240, payload: bytes, options: { mss: 1460, fastOpenCookie: Uint8Array.of(1, 2, 3, 4) } });
    this.cseq = (this.cseq + 1) >>> 0;
    return syn;
  }

  /** The server's SYN-ACK, acknowledging `acked` bytes of SYN data (0: the data was refused). */
  synAck(acked = 0): Uint8Array {
    const p = buildTcpPacket({ src: this.server, dst: this.client, sport: this.dport, dport: this.sport,
      seq: this.sseq, ack: (this.cseq + acked) >>> 0, flags: SYN | ACK, window: 65160, options: { mss: 1460 } });
    this.sseq = (this.sseq + 1) >>> 0;
    return p;
  }

  /** A pure ACK from the client. */
  clientAck(): Uint8Array {
    return this.c(ACK, undefined, this.cseq);
  }

  /** One client data segment at the current seq (or `at` bytes from it); advances unless told not to. */
  send(payload: Uint8Array | string, o: { at?: number; advance?: boolean; extra?: Extra } = {}): Uint8Array {
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    const seq = (this.cseq + (o.at ?? 0)) >>> 0;
    const pkt = this.c(ACK | PSH, bytes, seq, o.extra);
    if (o.advance ?? true) this.cseq = (seq + bytes.length) >>> 0;
    return pkt;
  }

  /** The client's bytes cut at the given offsets, one packet each, in order (not advancing until the end). */
  split(payload: Uint8Array | string, cuts: number[], extra?: Extra): Uint8Array[] {
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    const points = [0, ...cuts.filter((c) => c > 0 && c < bytes.length).sort((a, b) => a - b), bytes.length];
    const pkts: Uint8Array[] = [];
    for (let i = 0; i + 1 < points.length; i++) {
      pkts.push(this.send(bytes.subarray(points[i], points[i + 1]), { at: points[i], advance: false, extra }));
    }
    this.cseq = (this.cseq + bytes.length) >>> 0;
    return pkts;
  }

  /** A server data segment; advances the server seq. */
  reply(payload: Uint8Array | string): Uint8Array {
    const bytes = typeof payload === 'string' ? new TextEncoder().encode(payload) : payload;
    const pkt = this.s(ACK | PSH, bytes, this.sseq);
    this.sseq = (this.sseq + bytes.length) >>> 0;
    return pkt;
  }

  /**
   * The server's answer to what the client sent, not fed to the engine (once a hello is allowed
   * the server's packets bypass the queue): the client's next packets acknowledge it.
   */
  serverFlight(bytes = 1200): void {
    this.sseq = (this.sseq + bytes) >>> 0;
  }

  /** A pure ACK from the server (acknowledging everything the client sent). */
  serverAck(): Uint8Array {
    return this.s(ACK, undefined, this.sseq);
  }

  clientFin(): Uint8Array {
    const p = this.c(FIN | ACK, undefined, this.cseq);
    this.cseq = (this.cseq + 1) >>> 0;
    return p;
  }

  clientRst(): Uint8Array {
    return this.c(RST | ACK, undefined, this.cseq);
  }
}

/** Records every verdict; checks there is exactly one per id. */
export class RecordingSink implements VerdictSink {
  readonly verdicts = new Map<number, { verdict: VerdictValue; mark?: number; order: number }>();
  readonly order: number[] = [];
  readonly raw: Uint8Array[] = [];
  duplicates = 0;

  verdict(id: number, verdict: VerdictValue, mark?: number): void {
    if (this.verdicts.has(id)) this.duplicates++;
    this.verdicts.set(id, { verdict, mark, order: this.order.length });
    this.order.push(id);
  }

  sendRaw(packet: Uint8Array): void {
    this.raw.push(packet);
  }
}

/** Numbers packets as a queue would and hands them to a handler. */
export class Feeder {
  private nextId = 1;
  constructor(private readonly handle: (p: RawPacket) => void) {}

  /** Feeds packets; returns their ids. */
  feed(...packets: Uint8Array[]): number[] {
    return packets.map((data) => {
      const id = this.nextId++;
      this.handle({ id, mark: 0, data, skbInfo: 0 });
      return id;
    });
  }
}

/** A minimal but valid TLS 1.3-style ClientHello record carrying `sni` and `alpn` (and early_data, offering 0-RTT). */
export function clientHello(o: { sni?: string; alpn?: string[]; pad?: number; recordSize?: number; earlyData?: boolean } = {}): Uint8Array {
  const exts: number[][] = [];
  const u16 = (n: number) => [(n >> 8) & 0xff, n & 0xff];
  const ext = (type: number, body: number[]) => exts.push([...u16(type), ...u16(body.length), ...body]);
  if (o.sni !== undefined) {
    const name = [...new TextEncoder().encode(o.sni)];
    ext(0, [...u16(name.length + 3), 0, ...u16(name.length), ...name]);
  }
  ext(10, [...u16(4), 0x00, 0x1d, 0x00, 0x17]);
  ext(43, [4, 0x03, 0x04, 0x03, 0x03]);
  ext(13, [...u16(4), 0x04, 0x03, 0x08, 0x04]);
  if (o.alpn) {
    const list = o.alpn.flatMap((p) => [p.length, ...new TextEncoder().encode(p)]);
    ext(16, [...u16(list.length), ...list]);
  }
  ext(51, [...u16(36), 0x00, 0x1d, ...u16(32), ...new Array(32).fill(7)]);
  if (o.earlyData) ext(42, []);
  if (o.pad) ext(21, new Array(o.pad).fill(0));
  const extBytes = exts.flat();
  const body = [0x03, 0x03, ...new Array(32).fill(1), 32, ...new Array(32).fill(2), ...u16(4), 0x13, 0x01, 0x13, 0x02,
    1, 0, ...u16(extBytes.length), ...extBytes];
  const hs = [1, (body.length >> 16) & 0xff, ...u16(body.length & 0xffff), ...body];
  const size = o.recordSize ?? hs.length;
  const out: number[] = [];
  for (let i = 0; i < hs.length; i += size) {
    const chunk = hs.slice(i, i + size);
    out.push(0x16, 0x03, 0x01, ...u16(chunk.length), ...chunk);
  }
  return Uint8Array.from(out);
}

/** Timers that run only when the test says so. */
export class ManualScheduler implements Scheduler {
  private timers: Array<{ at: number; fn: () => void; live: boolean }> = [];
  now = 0;
  setTimeout(fn: () => void, ms: number): unknown {
    const h = { at: this.now + ms, fn, live: true };
    this.timers.push(h);
    return h;
  }
  clearTimeout(h: unknown): void {
    (h as { live: boolean }).live = false;
  }
  advance(ms: number): void {
    this.now += ms;
    for (const h of this.timers) if (h.live && h.at <= this.now) {
      h.live = false;
      h.fn();
    }
    this.timers = this.timers.filter((h) => h.live);
  }
}
