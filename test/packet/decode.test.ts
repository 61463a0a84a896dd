import t from 'tap';
import { buildIpv4Fragments, buildIpv6Fragments, buildTcpPacket, type TcpPacketSpec } from '../../src/packet/build.js';
import { tcpChecksumOk } from '../../src/packet/checksum.js';
import { decodeIp, parseTcpOptions } from '../../src/packet/decode.js';
import { ACK, FIN, PSH, RST, SYN, URG, type DecodeResult, type TcpPacket } from '../../src/packet/types.js';

function tcp(r: DecodeResult): TcpPacket {
  if (r.kind !== 'tcp') throw new Error(`expected tcp, got ${JSON.stringify(r)}`);
  return r.packet;
}

const text = (b: Uint8Array) => Buffer.from(b).toString('utf8');

const v4: TcpPacketSpec = {
  src: '10.0.1.2',
  dst: '10.0.2.2',
  sport: 51234,
  dport: 443,
  seq: 0xfffffff0,
  ack: 0x80000001,
  flags: ACK | PSH,
  window: 502,
  ttl: 63,
  payload: 'hello world',
};
const v6: TcpPacketSpec = { ...v4, src: 'fd00::2', dst: '2001:db8::1:0:0:1', ttl: 17 };

t.test('IPv4 round trip', async (t) => {
  const bytes = buildTcpPacket({ ...v4, urgentPointer: 3, flags: ACK | PSH | URG });
  const p = tcp(decodeIp(bytes));
  t.equal(p.family, 4);
  t.equal(p.src, '10.0.1.2');
  t.equal(p.dst, '10.0.2.2');
  t.equal(p.sport, 51234);
  t.equal(p.dport, 443);
  t.equal(p.seq, 0xfffffff0);
  t.equal(p.ack, 0x80000001);
  t.equal(p.flags, ACK | PSH | URG);
  t.equal(p.window, 502);
  t.equal(p.urgentPointer, 3);
  t.equal(p.ttl, 63);
  t.equal(text(p.payload), 'hello world');
  t.equal(p.tcpOffset, 20);
  t.equal(p.extHeaders, 0);
  t.equal(p.hopByHopCount, 0);
  t.equal(p.hopByHopMisplaced, false);
  t.equal(p.ip.length, bytes.length);
  t.ok(tcpChecksumOk(p));
  // views, not copies
  t.equal(p.payload.buffer, bytes.buffer);
  t.equal(p.ip.buffer, bytes.buffer);
});

t.test('IPv6 round trip', async (t) => {
  const bytes = buildTcpPacket(v6);
  const p = tcp(decodeIp(bytes));
  t.equal(p.family, 6);
  t.equal(p.src, 'fd00::2');
  t.equal(p.dst, '2001:db8::1:0:0:1');
  t.equal(p.ttl, 17);
  t.equal(p.tcpOffset, 40);
  t.equal(text(p.payload), 'hello world');
  t.ok(tcpChecksumOk(p));
});

t.test('Ethernet padding after the IP total length is ignored', async (t) => {
  for (const spec of [v4, v6]) {
    const bytes = buildTcpPacket({ ...spec, payload: 'x' });
    const padded = new Uint8Array(bytes.length + 6);
    padded.set(bytes);
    padded.fill(0xee, bytes.length);
    const p = tcp(decodeIp(padded));
    t.equal(text(p.payload), 'x');
    t.equal(p.ip.length, bytes.length);
    t.ok(tcpChecksumOk(p), `IPv${spec.src.includes(':') ? 6 : 4} checksum over the unpadded packet`);
  }
});

t.test('zero IPv4 total length / IPv6 payload length means the whole buffer (offload)', async (t) => {
  const a = buildTcpPacket(v4);
  a[2] = 0;
  a[3] = 0;
  t.equal(text(tcp(decodeIp(a)).payload), 'hello world');
  const b = buildTcpPacket(v6);
  b[4] = 0;
  b[5] = 0;
  t.equal(text(tcp(decodeIp(b)).payload), 'hello world');
});

t.test('TCP options', async (t) => {
  const syn = buildTcpPacket({
    ...v4,
    flags: SYN,
    payload: undefined,
    options: { mss: 1460, sackPermitted: true, tsVal: 0xdeadbeef, tsEcr: 7, wscale: 7 },
  });
  const o = tcp(decodeIp(syn)).options;
  t.equal(o.mss, 1460);
  t.equal(o.sackPermitted, true);
  t.equal(o.tsVal, 0xdeadbeef);
  t.equal(o.tsEcr, 7);
  t.equal(o.wscale, 7);
  t.equal(o.md5, undefined);
  t.equal(o.fastOpen, undefined);
  t.equal(o.malformed, undefined);

  const md5 = tcp(decodeIp(buildTcpPacket({ ...v4, options: { md5: true, tsVal: 1 } }))).options;
  t.equal(md5.md5, true);
  t.equal(md5.tsVal, 1);

  const tfo = tcp(decodeIp(buildTcpPacket({ ...v6, flags: SYN, options: { fastOpenCookie: new Uint8Array(8) } })));
  t.equal(tfo.options.fastOpen, true);
  t.equal(text(tfo.payload), 'hello world', 'TFO data in the SYN');

  // A malformed option list still decodes as TCP.
  const bad = tcp(decodeIp(buildTcpPacket({ ...v4, options: { mss: 536, raw: Uint8Array.of(8, 0) } })));
  t.equal(bad.options.mss, 536);
  t.equal(bad.options.malformed, true);
  t.equal(text(bad.payload), 'hello world');
});

t.test('parseTcpOptions edge cases', async (t) => {
  const parse = (...b: number[]) => parseTcpOptions(Uint8Array.from(b), 0, b.length);
  t.equal(parse(2, 4, 5, 0xb4).mss, 1460);
  t.equal(parse(1, 1, 1, 2, 4, 5, 0xb4).mss, 1460, 'after NOPs');
  t.equal(parse(0, 2, 4, 5, 0xb4).mss, undefined, 'after end of list');
  t.equal(parse(2, 4, 5).malformed, true, 'length past the header');
  t.equal(parse(2).malformed, true, 'kind without length');
  t.equal(parse(2, 0, 0, 0).malformed, true, 'zero length');
  t.equal(parse(2, 1, 0, 0).malformed, true, 'length 1');
  t.equal(parse(2, 3, 5, 1).mss, undefined, 'wrong length for MSS is ignored');
  t.equal(parse(2, 3, 5, 1).malformed, undefined);
  t.equal(parse(19, 10, 0, 0, 0, 0, 0, 0, 0, 0).md5, undefined, 'MD5 only in its 18-byte form');
  t.equal(parse(254, 4, 0xf9, 0x89).fastOpen, true, 'experimental TFO option');
  t.equal(parse(254, 4, 0x12, 0x34).fastOpen, undefined);
  t.equal(parse(99, 2, 3, 3, 9).wscale, 9, 'unknown kinds skipped');
});

t.test('IPv6 extension header chains', async (t) => {
  for (const ext of [[43], [60], [51], [135], [139], [140], [44], [43, 60, 51, 44, 135]]) {
    const p = tcp(decodeIp(buildTcpPacket({ ...v6, hopByHop: 1, extHeaders: ext, destOpts: true })));
    t.equal(p.extHeaders, ext.length + 2, `chain ${ext}`);
    t.equal(p.hopByHopCount, 1);
    t.equal(p.hopByHopMisplaced, false);
    t.equal(text(p.payload), 'hello world');
    t.ok(tcpChecksumOk(p));
  }
  const two = tcp(decodeIp(buildTcpPacket({ ...v6, hopByHop: 2 })));
  t.equal(two.hopByHopCount, 2);
  t.equal(two.hopByHopMisplaced, true, 'a second hop-by-hop header is not first');
  const late = tcp(decodeIp(buildTcpPacket({ ...v6, extHeaders: [60, 0] })));
  t.equal(late.hopByHopCount, 1);
  t.equal(late.hopByHopMisplaced, true);

  t.same(decodeIp(buildTcpPacket({ ...v6, extHeaders: [60] }).fill(50, 40, 41)), { kind: 'other', family: 6, proto: 50 }, 'ESP');
  const nnh = buildTcpPacket({ ...v6, extHeaders: [60] });
  nnh[40] = 59;
  t.same(decodeIp(nnh), { kind: 'other', family: 6, proto: 59 }, 'no next header');

  const many = buildTcpPacket({ ...v6, extHeaders: new Array<number>(17).fill(60) });
  t.same(decodeIp(many), { kind: 'invalid', reason: 'too many IPv6 extension headers' });
  t.equal(tcp(decodeIp(many, { maxExtHeaders: 17 })).extHeaders, 17);
  t.equal(tcp(decodeIp(buildTcpPacket({ ...v6, extHeaders: new Array<number>(16).fill(60) }))).extHeaders, 16);
});

t.test('IPv6 extension headers the receiver drops the packet for', async (t) => {
  const kept = (spec: Partial<TcpPacketSpec>, edit?: (p: Uint8Array) => void) => {
    const p = buildTcpPacket({ ...v6, ...spec });
    edit?.(p);
    return tcp(decodeIp(p)).discardedByReceiver;
  };
  t.equal(kept({}), false, 'no extension header');
  t.equal(kept({ hopByHop: 1, extHeaders: [43, 44], destOpts: true }), false, 'padding-only options, routing, fragment');
  for (const type of [135, 139, 140]) t.equal(kept({ extHeaders: [type] }), true, `next header ${type} has no handler`);
  // The builder writes PadN (type 1, length 4) at offset 42 of the first header.
  for (const [type, want] of [[0x3e, false], [0x7e, true], [0xbe, true], [0xfe, true], [0xc9, false]] as const) {
    t.equal(kept({ destOpts: true }, (p) => { p[42] = type; }), want, `destination option 0x${type.toString(16)}`);
  }
  t.equal(kept({ hopByHop: 1 }, (p) => { p[42] = 0x05; p[43] = 2; p[46] = 1; p[47] = 0; }), false, 'router alert then PadN');
  t.equal(kept({ hopByHop: 1 }, (p) => { p[42] = 0x4f; }), true, 'unknown hop-by-hop option, action discard');
  t.equal(kept({ destOpts: true }, (p) => { p[45] = 7; }), true, 'PadN with a non-zero byte');
  t.equal(kept({ destOpts: true }, (p) => { p[43] = 9; }), true, 'option overrunning the header');
});

t.test('non-TCP', async (t) => {
  const udp4 = buildTcpPacket(v4);
  udp4[9] = 17;
  t.same(decodeIp(udp4), { kind: 'other', family: 4, proto: 17 });
  const icmp6 = buildTcpPacket(v6);
  icmp6[6] = 58;
  t.same(decodeIp(icmp6), { kind: 'other', family: 6, proto: 58 });
});

t.test('fragments are never TCP', async (t) => {
  const whole = buildTcpPacket({ ...v4, payload: 'x'.repeat(100) });
  const frags = buildIpv4Fragments(whole, 40);
  t.equal(frags.length, 3); // 120 bytes of TCP in 40-byte pieces
  t.same(decodeIp(frags[0]), { kind: 'fragment', family: 4, first: true });
  for (const f of frags.slice(1)) t.same(decodeIp(f), { kind: 'fragment', family: 4, first: false });
  // The last fragment alone (offset != 0, MF clear) is still a fragment.
  t.equal(frags[2][6] & 0x20, 0);

  const whole6 = buildTcpPacket({ ...v6, hopByHop: 1, payload: 'y'.repeat(100) });
  const frags6 = buildIpv6Fragments(whole6, 48);
  t.equal(frags6.length, 3);
  t.same(decodeIp(frags6[0]), { kind: 'fragment', family: 6, first: true });
  t.same(decodeIp(frags6[2]), { kind: 'fragment', family: 6, first: false });
  // An atomic fragment (RFC 6946) is a whole packet and is decoded.
  const atomic = tcp(decodeIp(buildTcpPacket({ ...v6, extHeaders: [44] })));
  t.equal(text(atomic.payload), 'hello world');
});

t.test('invalid headers', async (t) => {
  const reason = (b: Uint8Array) => {
    const r = decodeIp(b);
    return r.kind === 'invalid' ? r.reason : r.kind;
  };
  t.equal(reason(new Uint8Array(0)), 'empty packet');
  t.equal(reason(Uint8Array.of(0x55)), 'IP version 5');
  const a = buildTcpPacket(v4);
  t.equal(reason(a.slice(0, 19)), 'IPv4 header truncated');
  t.equal(reason(Uint8Array.from(a).fill(0x44, 0, 1)), 'IPv4 header length below 20');
  const long = Uint8Array.from(a);
  long[3] += 1;
  t.equal(reason(long), 'IPv4 total length beyond the packet');
  const short = Uint8Array.from(a);
  short[2] = 0;
  short[3] = 10;
  t.equal(reason(short), 'IPv4 total length below the header length');
  const trunc = Uint8Array.from(a);
  trunc[2] = 0;
  trunc[3] = 30; // 10 bytes of TCP header
  t.equal(reason(trunc), 'TCP header truncated');
  const doff = Uint8Array.from(a);
  doff[20 + 12] = 0x40;
  t.equal(reason(doff), 'TCP data offset below 20');
  doff[20 + 12] = 0xf0;
  t.equal(reason(doff), 'TCP data offset beyond the packet');
  const b = buildTcpPacket({ ...v6, payload: undefined });
  t.equal(reason(b.slice(0, 39)), 'IPv6 header truncated');
  const plen = Uint8Array.from(b);
  plen[5] += 1;
  t.equal(reason(plen), 'IPv6 payload length beyond the packet');
  const ext = buildTcpPacket({ ...v6, payload: undefined, destOpts: true });
  ext[41] = 5; // 48-byte destination options header in a 28-byte payload
  t.equal(reason(ext), 'IPv6 extension header truncated');
});

t.test('every strict prefix of a packet is invalid, and never throws', async (t) => {
  const packets = [
    buildTcpPacket({ ...v4, options: { mss: 1460, tsVal: 5 } }),
    buildTcpPacket({ ...v6, hopByHop: 1, extHeaders: [43, 51], destOpts: true, options: { wscale: 3 } }),
  ];
  for (const p of packets) {
    for (let n = 0; n < p.length; n++) t.equal(decodeIp(p.subarray(0, n)).kind, 'invalid', `prefix ${n}`);
  }
});

/** Deterministic PRNG (mulberry32) so a failing case can be replayed. */
function prng(seed: number): () => number {
  return () => {
    seed = (seed + 0x6d2b79f5) | 0;
    let x = Math.imul(seed ^ (seed >>> 15), 1 | seed);
    x = (x + Math.imul(x ^ (x >>> 7), 61 | x)) ^ x;
    return ((x ^ (x >>> 14)) >>> 0) / 4294967296;
  };
}

t.test('fuzz: mutated and truncated packets never throw and stay in bounds', async (t) => {
  const rnd = prng(20261126);
  const seeds = [
    buildTcpPacket({ ...v4, flags: SYN, options: { mss: 1460, sackPermitted: true, tsVal: 9, wscale: 7 } }),
    buildTcpPacket({ ...v4, flags: RST | ACK, payload: undefined }),
    buildTcpPacket({ ...v6, flags: FIN | ACK, options: { md5: true } }),
    buildTcpPacket({ ...v6, hopByHop: 2, extHeaders: [43, 44, 51, 60, 135], options: { fastOpenCookie: new Uint8Array(4) } }),
    ...buildIpv4Fragments(buildTcpPacket({ ...v4, payload: 'z'.repeat(64) }), 32),
  ];
  const kinds: Record<string, number> = {};
  const iterations = 20000;
  for (let i = 0; i < iterations; i++) {
    const base = seeds[Math.floor(rnd() * seeds.length)];
    const len = rnd() < 0.3 ? Math.floor(rnd() * (base.length + 8)) : base.length;
    const buf = new Uint8Array(len);
    buf.set(base.subarray(0, Math.min(len, base.length)));
    const flips = 1 + Math.floor(rnd() * 4);
    for (let f = 0; f < flips && len > 0; f++) {
      // Bias toward the headers, where the interesting fields are.
      const at = rnd() < 0.8 ? Math.floor(rnd() * Math.min(len, 120)) : Math.floor(rnd() * len);
      buf[at] = rnd() < 0.5 ? Math.floor(rnd() * 256) : buf[at] ^ (1 << Math.floor(rnd() * 8));
    }
    let r: DecodeResult;
    try {
      r = decodeIp(buf);
    } catch (e) {
      t.fail(`iteration ${i} threw: ${String(e)}`);
      return;
    }
    kinds[r.kind] = (kinds[r.kind] ?? 0) + 1;
    if (r.kind === 'tcp') {
      const p = r.packet;
      const ok =
        p.ip.buffer === buf.buffer &&
        p.ip.byteOffset === 0 &&
        p.ip.length <= len &&
        p.tcpOffset + 20 <= p.ip.length &&
        p.payload.byteOffset >= p.tcpOffset + 20 &&
        p.payload.byteOffset + p.payload.length === p.ip.length &&
        p.seq >= 0 && p.seq <= 0xffffffff && p.ack >= 0 && p.ack <= 0xffffffff &&
        typeof p.src === 'string' && typeof p.dst === 'string';
      if (!ok) {
        t.fail(`iteration ${i}: tcp result out of bounds`);
        return;
      }
      tcpChecksumOk(p); // must not throw either
    }
  }
  t.ok((kinds.tcp ?? 0) > 1000 && (kinds.invalid ?? 0) > 1000, `mix of results: ${JSON.stringify(kinds)}`);
});
