/**
 * Helpers for the evasion tests (EVASION.md): a TCP conversation with full control over every
 * header field the techniques play with (TTL, checksum, seq/ack, options, flags, IPv6 extension
 * headers, urgent pointer), ClientHello / HTTP request builders with the name's offset, TLS
 * record re-framing, and a harness around a real Engine that tags each packet as real (carries
 * bytes the server keeps), fake (the server discards it) or control, and checks the outcome:
 * blocked with nothing leaked, or allowed with everything released, every packet settled once.
 */
import { Engine } from '../../src/filter/engine.js';
import type { DecideFn, DecisionEvent, FlowgateEvent } from '../../src/filter/types.js';
import type { EngineOptions } from '../../src/filter/options.js';
import { NF_ACCEPT, NF_DROP, NF_REPEAT } from '../../src/verdict/sink.js';
import { buildTcpPacket, type TcpOptionsSpec } from '../../src/packet/build.js';
import { computeTcpChecksum } from '../../src/packet/checksum.js';
import { ACK, FIN, PSH, RST, SYN } from '../../src/packet/types.js';
import { ManualScheduler, RecordingSink, clientHello } from './tcp.js';

/** Names used throughout: all three have 12 bytes, so a fake and the real message have the same length. */
export const BLOCKED = 'blocked.test';
export const ALLOWED = 'allowed.test';
export const DECOY = 'decoyyy.test';

/** Blocks BLOCKED (by SNI or Host), allows everything else, unknown protocols included. */
export const byName: DecideFn = (info) =>
  (info.sni ?? info.host) === BLOCKED ? { verdict: 'block', reason: 'rule:test' } : { verdict: 'allow', reason: 'default' };

const enc = (s: string) => new TextEncoder().encode(s);

/** Offset of `needle` in `hay`, -1 when absent. */
export function indexOf(hay: Uint8Array, needle: Uint8Array | string): number {
  const n = typeof needle === 'string' ? enc(needle) : needle;
  outer: for (let i = 0; i + n.length <= hay.length; i++) {
    for (let j = 0; j < n.length; j++) if (hay[i + j] !== n[j]) continue outer;
    return i;
  }
  return -1;
}

/** Concatenates byte arrays. */
export function cat(...parts: Array<Uint8Array | string | number[]>): Uint8Array {
  const bs = parts.map((p) => (typeof p === 'string' ? enc(p) : Uint8Array.from(p)));
  const out = new Uint8Array(bs.reduce((n, b) => n + b.length, 0));
  let o = 0;
  for (const b of bs) {
    out.set(b, o);
    o += b.length;
  }
  return out;
}

/** The protocols a message can be written in. */
export type Kind = 'tls' | 'http';

/** A message naming `name`, with the offsets the techniques cut at. */
export interface Msg {
  kind: Kind;
  name: string;
  bytes: Uint8Array;
  /** Offset of the name's first byte. */
  nameAt: number;
  /** Offset of the SNI extension (TLS) or of the `Host:` header line (HTTP). */
  fieldAt: number;
}

/** A ClientHello (SNI + ALPN, one record; early_data if asked) or an HTTP/1.1 GET head naming `name`. */
export function message(kind: Kind, name: string, o: { pad?: number; earlyData?: boolean } = {}): Msg {
  if (kind === 'tls') {
    const bytes = clientHello({ sni: name, alpn: ['h2', 'http/1.1'], pad: o.pad, earlyData: o.earlyData });
    const nameAt = indexOf(bytes, name);
    // type(2) length(2) list length(2) name type(1) name length(2), then the name.
    return { kind, name, bytes, nameAt, fieldAt: nameAt - 9 };
  }
  const padding = o.pad ? `X-Pad: ${'p'.repeat(o.pad)}\r\n` : '';
  const bytes = enc(`GET /index.html HTTP/1.1\r\nUser-Agent: test/1.0\r\n${padding}Host: ${name}\r\nAccept: */*\r\n\r\n`);
  return { kind, name, bytes, nameAt: indexOf(bytes, name), fieldAt: indexOf(bytes, 'Host:') };
}

/**
 * A fake of `m`: the same kind of message naming another name (DECOY, same length), with other
 * bytes changed too (the TLS client random, the HTTP path), as the evasion tools' fakes are.
 * Same length as `m` unless padded.
 */
export function fakeOf(m: Msg, name = DECOY, o: { pad?: number } = {}): Uint8Array {
  const f = message(m.kind, name, o).bytes.slice();
  if (m.kind === 'tls') f.fill(0xaa, 11, 43); // record header 5, handshake header 4, version 2, then the random
  else f.set(enc('/xxxxx'), 4); // GET /index.html -> GET /xxxxx.html
  return f;
}

/** The handshake bytes of a ClientHello written as one or more TLS records. */
export function handshakeBytes(records: Uint8Array): Uint8Array {
  const parts: Uint8Array[] = [];
  for (let i = 0; i + 5 <= records.length;) {
    const len = (records[i + 3]! << 8) | records[i + 4]!;
    parts.push(records.subarray(i + 5, i + 5 + len));
    i += 5 + len;
  }
  return cat(...parts);
}

/**
 * Re-frames a ClientHello into records carrying `sizes[i % sizes.length]` handshake bytes each,
 * record versions taken in turn from `versions` (EVASION.md 11).
 */
export function reframe(hello: Uint8Array, sizes: number[], versions: number[] = [0x0301]): Uint8Array {
  const hs = handshakeBytes(hello);
  const out: Array<Uint8Array | number[]> = [];
  for (let i = 0, r = 0; i < hs.length; r++) {
    const n = Math.min(sizes[r % sizes.length]!, hs.length - i);
    const v = versions[r % versions.length]!;
    out.push([0x16, v >> 8, v & 0xff, n >> 8, n & 0xff], hs.subarray(i, i + n));
    i += n;
  }
  return cat(...out);
}

/** Header fields of one crafted segment; anything absent takes the conversation's value. */
export interface SegSpec {
  flags?: number;
  /** Absolute sequence number (overrides the offset). */
  seq?: number;
  ack?: number;
  ttl?: number;
  window?: number;
  /** Timestamp value (only with a conversation that uses timestamps, or forced here). */
  tsVal?: number;
  md5?: boolean;
  badChecksum?: boolean;
  hopByHop?: number;
  extHeaders?: number[];
  destOpts?: boolean;
  urgentPointer?: number;
  options?: TcpOptionsSpec;
}

/** How a conversation is set up. */
export interface ConnInit {
  family?: 4 | 6;
  sport?: number;
  dport?: number;
  cisn?: number;
  sisn?: number;
  /** TTL / hop limit of every client packet unless a segment says otherwise. Default 64. */
  ttl?: number;
  /** RFC 7323 timestamps on every packet (handshake included). Default false. */
  timestamps?: boolean;
  /** Window scale both sides announce. Default 7. */
  wscale?: number;
  /** Window field of the client's packets after its SYN (scaled by `wscale`). Default 502 (64 KB at scale 7, as Linux starts). */
  window?: number;
}

let nextPort = 20000;

/** A client-server TCP conversation whose packets are built by the real packet builder. */
export class Conn {
  readonly family: 4 | 6;
  readonly client: string;
  readonly server: string;
  readonly sport: number;
  readonly dport: number;
  readonly isn: number;
  readonly sisn: number;
  /** Next client sequence number (start of the next message). */
  cseq: number;
  /** Next server sequence number. */
  sseq: number;
  readonly ttl: number;
  readonly timestamps: boolean;
  readonly wscale: number;
  readonly window: number;
  /** Last client / server timestamp values sent. */
  cts = 100_000;
  sts = 900_000;

  constructor(o: ConnInit = {}) {
    this.family = o.family ?? 4;
    this.client = this.family === 4 ? '10.0.1.2' : 'fd00:1::2';
    this.server = this.family === 4 ? '10.0.2.2' : 'fd00:2::2';
    this.sport = o.sport ?? nextPort++;
    if (nextPort > 60000) nextPort = 20000;
    this.dport = o.dport ?? 443;
    this.isn = (o.cisn ?? 1000) >>> 0;
    this.sisn = (o.sisn ?? 5000) >>> 0;
    this.cseq = this.isn;
    this.sseq = this.sisn;
    this.ttl = o.ttl ?? 64;
    this.timestamps = o.timestamps ?? false;
    this.wscale = o.wscale ?? 7;
    this.window = o.window ?? 502;
  }

  private tsOpts(fromClient: boolean, tsVal?: number): TcpOptionsSpec {
    if (!this.timestamps && tsVal === undefined) return {};
    if (fromClient) {
      const v = tsVal ?? ++this.cts;
      return { tsVal: v >>> 0, tsEcr: this.sts };
    }
    return { tsVal: ++this.sts, tsEcr: this.cts };
  }

  /** A client packet; `payload` starts at `seq`. */
  client_(payload: Uint8Array | undefined, seq: number, s: SegSpec = {}): Uint8Array {
    const options: TcpOptionsSpec = { ...this.tsOpts(true, s.tsVal), ...(s.md5 ? { md5: true } : {}), ...s.options };
    return buildTcpPacket({
      src: this.client, dst: this.server, sport: this.sport, dport: this.dport,
      seq: (s.seq ?? seq) >>> 0, ack: (s.ack ?? this.sseq) >>> 0, flags: s.flags ?? (ACK | PSH),
      payload, window: s.window ?? this.window, ttl: s.ttl ?? this.ttl, options, badChecksum: s.badChecksum,
      hopByHop: s.hopByHop, extHeaders: s.extHeaders, destOpts: s.destOpts, urgentPointer: s.urgentPointer,
    });
  }

  /** The client's SYN (with data: TCP Fast Open, cookie included). Sets cseq to ISN + 1. */
  syn(payload?: Uint8Array, s: SegSpec = {}): Uint8Array {
    const options: TcpOptionsSpec = { mss: 1460, sackPermitted: true, wscale: this.wscale, ...this.tsOpts(true) };
    if (this.timestamps) options.tsEcr = 0;
    if (payload !== undefined) options.fastOpenCookie = Uint8Array.of(1, 2, 3, 4, 5, 6, 7, 8);
    const p = buildTcpPacket({ src: this.client, dst: this.server, sport: this.sport, dport: this.dport,
      seq: s.seq ?? this.isn, flags: s.flags ?? SYN, window: 64240, ttl: s.ttl ?? this.ttl, payload, options,
      hopByHop: s.hopByHop, extHeaders: s.extHeaders });
    this.cseq = (this.isn + 1) >>> 0;
    return p;
  }

  /** The server's SYN-ACK acknowledging `acked` bytes of SYN data. */
  synAck(acked = 0): Uint8Array {
    const options: TcpOptionsSpec = { mss: 1460, sackPermitted: true, wscale: this.wscale, ...this.tsOpts(false) };
    const p = buildTcpPacket({ src: this.server, dst: this.client, sport: this.dport, dport: this.sport,
      seq: this.sisn, ack: (this.isn + 1 + acked) >>> 0, flags: SYN | ACK, window: 65160, options });
    this.sseq = (this.sisn + 1) >>> 0;
    return p;
  }

  /** A pure ACK from the client at cseq. */
  ack(s: SegSpec = {}): Uint8Array {
    return this.client_(undefined, this.cseq, { flags: ACK, ...s });
  }

  /** SYN, SYN-ACK, ACK. */
  handshake(): Uint8Array[] {
    return [this.syn(), this.synAck(), this.ack()];
  }

  /** A client data segment carrying `payload` at `at` bytes past cseq (the start of the current message). */
  seg(payload: Uint8Array, at = 0, s: SegSpec = {}): Uint8Array {
    return this.client_(payload, (this.cseq + at) >>> 0, s);
  }

  /** Moves cseq past a message of `n` bytes. */
  advance(n: number): void {
    this.cseq = (this.cseq + n) >>> 0;
  }

  /** A client RST (or RST|ACK) at cseq. */
  rst(s: SegSpec = {}): Uint8Array {
    return this.client_(undefined, this.cseq, { flags: RST | ACK, ...s });
  }

  /** A client FIN at cseq. */
  fin(): Uint8Array {
    return this.client_(undefined, this.cseq, { flags: FIN | ACK });
  }

  /** A server data segment at sseq acknowledging everything the client sent; advances sseq. */
  reply(payload: Uint8Array): Uint8Array {
    const p = buildTcpPacket({ src: this.server, dst: this.client, sport: this.dport, dport: this.sport,
      seq: this.sseq, ack: this.cseq, flags: ACK | PSH, window: 502, payload, options: this.tsOpts(false) });
    this.sseq = (this.sseq + payload.length) >>> 0;
    return p;
  }

  /** A pure ACK from the server acknowledging everything the client sent. */
  serverAck(): Uint8Array {
    return buildTcpPacket({ src: this.server, dst: this.client, sport: this.dport, dport: this.sport,
      seq: this.sseq, ack: this.cseq, flags: ACK, window: 502, options: this.tsOpts(false) });
  }
}

/** How a fake piece is made to be discarded by the server (zapret --dpi-desync-fooling and friends). */
export const FOOLINGS: Record<string, { spec: (c: Conn, at: number) => SegSpec; v6only?: boolean }> = {
  ttl: { spec: () => ({ ttl: 4 }) },
  badsum: { spec: () => ({ badChecksum: true }) },
  md5sig: { spec: () => ({ md5: true }) },
  badseq: { spec: (c, at) => ({ seq: c.cseq + at - 10000 }) },
  noack: { spec: () => ({ flags: PSH }) },
  ts: { spec: (c) => ({ tsVal: c.cts - 600 }) },
  badack: { spec: (c) => ({ ack: c.sseq - 66000 }) },
  synflag: { spec: (c, at) => ({ flags: SYN | ACK, seq: c.cseq + at - 1 }) },
  hopbyhop2: { spec: () => ({ hopByHop: 2 }), v6only: true },
};

/** The message cut at `cuts` (stream offsets), as [from, to) ranges. */
export function ranges(length: number, cuts: number[]): Array<[number, number]> {
  const points = [0, ...[...new Set(cuts)].filter((c) => c > 0 && c < length).sort((a, b) => a - b), length];
  const out: Array<[number, number]> = [];
  for (let i = 0; i + 1 < points.length; i++) out.push([points[i]!, points[i + 1]!]);
  return out;
}

/** What a packet is, for the checks: real bytes the server keeps, a fake it discards, or control (handshake, ACKs). */
export type Role = 'real' | 'fake' | 'ctl';

/** A real Engine with a recording sink, manual timers and a role per packet. */
export class Harness {
  readonly sink = new RecordingSink();
  readonly events: FlowgateEvent[] = [];
  readonly sched = new ManualScheduler();
  readonly engine: Engine;
  readonly roles = new Map<number, Role>();
  private nextId = 1;

  constructor(options: Partial<EngineOptions> = {}, decide: DecideFn = byName) {
    this.engine = new Engine({ decide, sink: this.sink, scheduler: this.sched, now: () => this.sched.now,
      onEvent: (e) => this.events.push(e), options: { verifyChecksums: true, ...options } });
  }

  /** Feeds one packet; returns its id. `skbInfo` 1 = the kernel has not computed the checksum yet. */
  feed(data: Uint8Array, role: Role = 'ctl', skbInfo = 0): number {
    const id = this.nextId++;
    this.roles.set(id, role);
    this.engine.handle({ id, mark: 0, data, skbInfo });
    return id;
  }

  /** Feeds packets in order with the same role. */
  feedAll(packets: Uint8Array[], role: Role = 'ctl'): number[] {
    return packets.map((p) => this.feed(p, role));
  }

  decisions(): DecisionEvent[] {
    return this.events.filter((e): e is DecisionEvent => e.type === 'decision');
  }

  ids(role: Role): number[] {
    return [...this.roles].filter(([, r]) => r === role).map(([id]) => id);
  }

  counter(name: string): number {
    return this.engine.stats.events.get(name) ?? 0;
  }

  /** 'accept' | 'allow' | 'inspect' | 'block' | 'drop' | 'none' */
  fate(id: number): string {
    const v = this.sink.verdicts.get(id);
    if (v === undefined) return 'none';
    if (v.verdict === NF_DROP) return 'drop';
    if (v.verdict === NF_ACCEPT) return 'accept';
    if (v.verdict === NF_REPEAT) {
      const m = (v.mark ?? 0) & 0x300;
      return m === 0x100 ? 'allow' : m === 0x200 ? 'block' : m === 0x300 ? 'inspect' : `mark:${m}`;
    }
    return `verdict:${v.verdict}`;
  }

  /** Let promise-based decisions settle. */
  async settle(): Promise<void> {
    await new Promise((r) => setImmediate(r));
  }
}

/** True when the packet went on toward the server. */
export function passed(fate: string): boolean {
  return fate === 'accept' || fate === 'allow' || fate === 'inspect';
}

/** Every packet got exactly one verdict, the counters agree, and nothing is held. */
export function settledProblems(h: Harness): string[] {
  const p: string[] = [];
  const s = h.engine.stats;
  if (s.received !== s.verdicts + s.held) p.push(`received ${s.received} != verdicts ${s.verdicts} + held ${s.held}`);
  if (h.sink.duplicates !== 0) p.push(`${h.sink.duplicates} packets got a second verdict`);
  if (h.engine.heldPackets !== 0) p.push(`${h.engine.heldPackets} packets still held`);
  const missing = [...h.roles.keys()].filter((id) => !h.sink.verdicts.has(id));
  if (missing.length > 0) p.push(`no verdict for packets ${missing.join(',')}`);
  if (s.events.get('internal_error')) p.push(`internal error: ${s.lastInternalError}`);
  return p;
}

/** Why the outcome is not "blocked, no real byte released, everything settled" (empty when it is). */
export function blockProblems(h: Harness, o: { reason?: string | RegExp } = {}): string[] {
  const p = settledProblems(h);
  const d = h.decisions();
  const last = d[d.length - 1];
  if (last === undefined) p.push('no decision');
  else {
    if (last.verdict !== 'block') p.push(`last decision is ${last.verdict} (${last.reason}, ${last.sni ?? last.host ?? last.app})`);
    const reason = o.reason;
    if (reason !== undefined && !(typeof reason === 'string' ? last.reason === reason : reason.test(last.reason))) {
      p.push(`reason ${last.reason}, wanted ${String(reason)}`);
    }
  }
  for (const e of d) {
    if (e.verdict === 'allow' && (e.sni ?? e.host) === BLOCKED) p.push(`the blocked name was allowed (${e.reason})`);
  }
  for (const id of h.ids('real')) {
    const f = h.fate(id);
    if (passed(f)) p.push(`real packet ${id} passed (${f})`);
  }
  return p;
}

/** Why the outcome is not "allowed, every real packet released, every fake dropped, everything settled". */
export function allowProblems(h: Harness): string[] {
  const p = settledProblems(h);
  const d = h.decisions();
  if (d.length === 0) p.push('no decision');
  for (const e of d) if (e.verdict !== 'allow') p.push(`decision ${e.verdict} (${e.reason}, ${e.sni ?? e.host ?? e.app})`);
  for (const id of h.ids('real')) {
    const f = h.fate(id);
    if (!passed(f)) p.push(`real packet ${id} did not pass (${f})`);
  }
  for (const id of h.ids('fake')) {
    const f = h.fate(id);
    if (passed(f)) p.push(`fake packet ${id} passed (${f})`);
  }
  return p;
}

/** Recomputes the TCP checksum of a packet edited after building (TCP header at `tcpOffset`). */
export function fixTcpChecksum(p: Uint8Array, family: 4 | 6, tcpOffset: number): void {
  p[tcpOffset + 16] = 0;
  p[tcpOffset + 17] = 0;
  const sum = computeTcpChecksum(p, family, tcpOffset);
  p[tcpOffset + 16] = sum >> 8;
  p[tcpOffset + 17] = sum & 0xff;
}
